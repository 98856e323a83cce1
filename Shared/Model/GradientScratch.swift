/// Backward scratch: gradients of one layer's activations at a time, reused across layers.
struct GradientScratch {
    var dresidual: UnsafeMutablePointer<Float> // (B,T,C) gradient along the residual stream
    var dbtc: UnsafeMutablePointer<Float>      // (B,T,C)
    var dqkv: UnsafeMutablePointer<Float>      // (B,T,3C)
    var dbt4c: UnsafeMutablePointer<Float>     // (B,T,4C)
    var datt: UnsafeMutablePointer<Float>      // (workers,T,T), one attention matrix per worker

    static func floatCount(_ c: GPTConfig, B: Int, T: Int) -> Int {
        B * T * c.channels * 9 + max(1, Parallel.workers) * T * T
    }

    init(base: UnsafeMutablePointer<Float>, config c: GPTConfig, B: Int, T: Int) {
        let BTC = B * T * c.channels
        dresidual = base
        dbtc = base + BTC
        dqkv = base + 2 * BTC
        dbt4c = base + 5 * BTC
        datt = base + 9 * BTC
    }
}
