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
