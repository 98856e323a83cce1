/// Forward activations of one (B,T) training pass: named views into one allocation.
struct Activations {
    let B: Int, T: Int
    var encoded: UnsafeMutablePointer<Float>   // (B,T,C)
    var ln1: UnsafeMutablePointer<Float>       // (L,B,T,C)
    var ln1Mean: UnsafeMutablePointer<Float>   // (L,B,T)
    var ln1Rstd: UnsafeMutablePointer<Float>   // (L,B,T)
    var qkv: UnsafeMutablePointer<Float>       // (L,B,T,3C)
    var atty: UnsafeMutablePointer<Float>      // (L,B,T,C)
    var att: UnsafeMutablePointer<Float>       // (L,B,NH,T,T)
    var residual2: UnsafeMutablePointer<Float> // (L,B,T,C)
    var ln2: UnsafeMutablePointer<Float>       // (L,B,T,C)
    var ln2Mean: UnsafeMutablePointer<Float>   // (L,B,T)
    var ln2Rstd: UnsafeMutablePointer<Float>   // (L,B,T)
    var fch: UnsafeMutablePointer<Float>       // (L,B,T,4C) fc output, then GELU's derivative there (for backward)
    var fchGelu: UnsafeMutablePointer<Float>   // (L,B,T,4C)
    var residual3: UnsafeMutablePointer<Float> // (L,B,T,C)
    var lnf: UnsafeMutablePointer<Float>       // (B,T,C)
    var lnfMean: UnsafeMutablePointer<Float>   // (B,T)
    var lnfRstd: UnsafeMutablePointer<Float>   // (B,T)
    var probs: UnsafeMutablePointer<Float>     // (B,T,V): logits, then probabilities, then dlogits

    static func floatCount(_ c: GPTConfig, B: Int, T: Int) -> Int {
        let L = c.layers, C = c.channels, BT = B * T
        return BT * C + L * BT * (C + 2 + 3 * C + C + C + C + 2 + 4 * C + 4 * C + C) + L * B * c.heads * T * T
            + BT * (C + 2) + BT * c.vocabSize
    }

    init(base: UnsafeMutablePointer<Float>, config c: GPTConfig, B: Int, T: Int) {
        self.B = B; self.T = T
        let L = c.layers, C = c.channels, BT = B * T
        var p = base
        func take(_ n: Int) -> UnsafeMutablePointer<Float> { defer { p += n }; return p }
        encoded = take(BT * C)
        ln1 = take(L * BT * C); ln1Mean = take(L * BT); ln1Rstd = take(L * BT)
        qkv = take(L * BT * 3 * C)
        atty = take(L * BT * C)
        att = take(L * B * c.heads * T * T)
        residual2 = take(L * BT * C)
        ln2 = take(L * BT * C); ln2Mean = take(L * BT); ln2Rstd = take(L * BT)
        fch = take(L * BT * 4 * C); fchGelu = take(L * BT * 4 * C)
        residual3 = take(L * BT * C)
        lnf = take(BT * C); lnfMean = take(BT); lnfRstd = take(BT)
        probs = take(BT * c.vocabSize)
        assert(p - base == Activations.floatCount(c, B: B, T: T))
    }
}
