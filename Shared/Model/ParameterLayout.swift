/// Where each parameter tensor lives in the model's single parameter allocation, under its Hugging Face GPT-2 name.
/// Matrices are stored as Hugging Face stores them (Conv1D: (in, out)), so checkpoints are plain copies.
struct ParameterLayout: Sendable {
    struct Entry: Sendable {
        var name: String
        var shape: [Int]
        var offset: Int
        var count: Int { shape.reduce(1, *) }
        /// Weight decay applies to matrices and embeddings, not to biases and LayerNorm parameters.
        var decays: Bool { shape.count == 2 }
    }

    /// Offsets of one transformer block's tensors.
    struct Block: Sendable {
        var ln1w = 0, ln1b = 0   // (C), (C)
        var qkvw = 0, qkvb = 0   // (C,3C), (3C)
        var attprojw = 0, attprojb = 0  // (C,C), (C)
        var ln2w = 0, ln2b = 0   // (C), (C)
        var fcw = 0, fcb = 0     // (C,4C), (4C)
        var fcprojw = 0, fcprojb = 0    // (4C,C), (C)
    }

    var entries: [Entry] = []
    var wte = 0   // (V,C)
    var wpe = 0   // (maxT,C)
    var blocks: [Block] = []
    var lnfw = 0, lnfb = 0  // (C), (C)
    var count = 0

    init(_ config: GPTConfig) {
        let C = config.channels, V = config.vocabSize, maxT = config.contextLength
        func add(_ name: String, _ shape: [Int]) -> Int {
            let e = Entry(name: name, shape: shape, offset: count)
            entries.append(e)
            count += e.count
            return e.offset
        }
        wte = add("transformer.wte.weight", [V, C])
        wpe = add("transformer.wpe.weight", [maxT, C])
        for l in 0..<config.layers {
            let p = "transformer.h.\(l)."
            var b = Block()
            b.ln1w = add(p + "ln_1.weight", [C])
            b.ln1b = add(p + "ln_1.bias", [C])
            b.qkvw = add(p + "attn.c_attn.weight", [C, 3 * C])
            b.qkvb = add(p + "attn.c_attn.bias", [3 * C])
            b.attprojw = add(p + "attn.c_proj.weight", [C, C])
            b.attprojb = add(p + "attn.c_proj.bias", [C])
            b.ln2w = add(p + "ln_2.weight", [C])
            b.ln2b = add(p + "ln_2.bias", [C])
            b.fcw = add(p + "mlp.c_fc.weight", [C, 4 * C])
            b.fcb = add(p + "mlp.c_fc.bias", [4 * C])
            b.fcprojw = add(p + "mlp.c_proj.weight", [4 * C, C])
            b.fcprojb = add(p + "mlp.c_proj.bias", [C])
            blocks.append(b)
        }
        lnfw = add("transformer.ln_f.weight", [C])
        lnfb = add("transformer.ln_f.bias", [C])
    }
}

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
    var fch: UnsafeMutablePointer<Float>       // (L,B,T,4C)
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

/// A growable float buffer, 64-byte aligned; contents are not kept when it grows.
final class FloatBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(capacity: Int = 0) {
        self.capacity = capacity
        pointer = FloatBuffer.allocate(capacity)
    }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
    }

    /// Ensures room for n floats.
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        pointer.deallocate()
        pointer = FloatBuffer.allocate(n)
        capacity = n
    }

    deinit { pointer.deallocate() }
}
