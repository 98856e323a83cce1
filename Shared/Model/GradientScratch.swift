/// Backward scratch: gradients of one layer's activations at a time, reused across layers.
struct GradientScratch {
    var dresidual: UnsafeMutablePointer<Float> // (B,T,C) gradient along the residual stream
    var dbtc: UnsafeMutablePointer<Float>      // (B,T,C)
    var dqkv: UnsafeMutablePointer<Float>      // (B,T,3C)
    var dbt4c: UnsafeMutablePointer<Float>     // (B,T,4C)
    var datt: UnsafeMutablePointer<Float>      // (pieces,T,T), one attention matrix per parallel piece

    var ones: UnsafeMutablePointer<Float>      // (B*T) all ones, for bias gradients as products

    static func floatCount(_ c: GPTConfig, B: Int, T: Int) -> Int {
        B * T * c.channels * 9 + Parallel.maxPieces * T * T + B * T
    }

    init(base: UnsafeMutablePointer<Float>, config c: GPTConfig, B: Int, T: Int) {
        let BTC = B * T * c.channels
        dresidual = base
        dbtc = base + BTC
        dqkv = base + 2 * BTC
        dbt4c = base + 5 * BTC
        datt = base + 9 * BTC
        ones = datt + Parallel.maxPieces * T * T
        ones.update(repeating: 1, count: B * T)
    }
}
