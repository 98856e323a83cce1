/// Forward activations of one (B,T) Llama training pass: named views into one allocation.
struct LlamaActivations {
    let B: Int, T: Int
    var cos: UnsafeMutablePointer<Float>       // (T,hd/2) rotary tables for positions 0..<T
    var sin: UnsafeMutablePointer<Float>       // (T,hd/2)
    var encoded: UnsafeMutablePointer<Float>   // (B,T,C)
    var ln1: UnsafeMutablePointer<Float>       // (L,B,T,C)
    var ln1Rstd: UnsafeMutablePointer<Float>   // (L,B,T)
    var qkv: UnsafeMutablePointer<Float>       // (L,B,T,QKV) q and k after the rotation
    var atty: UnsafeMutablePointer<Float>      // (L,B,T,NH*hd)
    var att: UnsafeMutablePointer<Float>       // (L,B,NH,T,T)
    var residual2: UnsafeMutablePointer<Float> // (L,B,T,C)
    var ln2: UnsafeMutablePointer<Float>       // (L,B,T,C)
    var ln2Rstd: UnsafeMutablePointer<Float>   // (L,B,T)
    var gateUp: UnsafeMutablePointer<Float>    // (L,B,T,2I)
    var swiglu: UnsafeMutablePointer<Float>    // (L,B,T,I)
    var residual3: UnsafeMutablePointer<Float> // (L,B,T,C)
    var lnf: UnsafeMutablePointer<Float>       // (B,T,C)
    var lnfRstd: UnsafeMutablePointer<Float>   // (B,T)
    var probs: UnsafeMutablePointer<Float>     // (B,T,V): logits, then probabilities, then dlogits

    static func floatCount(_ c: LlamaConfig, B: Int, T: Int) -> Int {
        let L = c.layers, C = c.channels, BT = B * T, I = c.intermediateSize
        let perLayer = C + 1 + c.qkvWidth + c.heads * c.headDim + C + C + 1 + 2 * I + I + C
        return T * c.headDim + BT * C + L * BT * perLayer + L * B * c.heads * T * T + BT * (C + 1) + BT * c.vocabSize
    }

    init(base: UnsafeMutablePointer<Float>, config c: LlamaConfig, B: Int, T: Int) {
        self.B = B; self.T = T
        let L = c.layers, C = c.channels, BT = B * T, I = c.intermediateSize
        var p = base
        func take(_ n: Int) -> UnsafeMutablePointer<Float> { defer { p += n }; return p }
        cos = take(T * c.headDim / 2); sin = take(T * c.headDim / 2)
        encoded = take(BT * C)
        ln1 = take(L * BT * C); ln1Rstd = take(L * BT)
        qkv = take(L * BT * c.qkvWidth)
        atty = take(L * BT * c.heads * c.headDim)
        att = take(L * B * c.heads * T * T)
        residual2 = take(L * BT * C)
        ln2 = take(L * BT * C); ln2Rstd = take(L * BT)
        gateUp = take(L * BT * 2 * I); swiglu = take(L * BT * I)
        residual3 = take(L * BT * C)
        lnf = take(BT * C); lnfRstd = take(BT)
        probs = take(BT * c.vocabSize)
        assert(p - base == LlamaActivations.floatCount(c, B: B, T: T))
    }
}

/// Llama backward scratch: gradients of one layer's activations at a time, reused across layers.
struct LlamaGradientScratch {
    var dresidual: UnsafeMutablePointer<Float> // (B,T,C) gradient along the residual stream
    var dbtc: UnsafeMutablePointer<Float>      // (B,T,C)
    var datty: UnsafeMutablePointer<Float>     // (B,T,NH*hd)
    var dqkv: UnsafeMutablePointer<Float>      // (B,T,QKV)
    var dgateUp: UnsafeMutablePointer<Float>   // (B,T,2I)
    var dswiglu: UnsafeMutablePointer<Float>   // (B,T,I)
    var datt: UnsafeMutablePointer<Float>      // (pieces,T,T)
    var ones: UnsafeMutablePointer<Float>      // (B*T) all ones, for bias gradients as products

    static func floatCount(_ c: LlamaConfig, B: Int, T: Int) -> Int {
        let BT = B * T
        return BT * (2 * c.channels + c.heads * c.headDim + c.qkvWidth + 3 * c.intermediateSize) + Parallel.maxPieces * T * T + BT
    }

    init(base: UnsafeMutablePointer<Float>, config c: LlamaConfig, B: Int, T: Int) {
        let BT = B * T
        var p = base
        func take(_ n: Int) -> UnsafeMutablePointer<Float> { defer { p += n }; return p }
        dresidual = take(BT * c.channels); dbtc = take(BT * c.channels)
        datty = take(BT * c.heads * c.headDim); dqkv = take(BT * c.qkvWidth)
        dgateUp = take(BT * 2 * c.intermediateSize); dswiglu = take(BT * c.intermediateSize)
        datt = take(Parallel.maxPieces * T * T)
        ones = take(BT)
        ones.update(repeating: 1, count: BT)
    }
}
