/// Where each Llama parameter tensor lives in the single parameter allocation, under its Hugging Face name and shape.
/// Linear weights are (out, in) as Hugging Face stores them. q, k, v (and their biases) sit back to back so they form one
/// (NH+2NKV)*hd x C matrix, and gate, up one 2I x C matrix: one product each.
struct LlamaParameterLayout: Sendable {
    /// Offsets of one decoder layer's tensors.
    struct Block: Sendable {
        var inputNorm = 0            // (C)
        var qkvw = 0                 // (QKV,C): q_proj (NH*hd,C), k_proj (NKV*hd,C), v_proj (NKV*hd,C)
        var qkvb: Int? = nil         // (QKV) when the config has q/k/v biases
        var ow = 0                   // (C,NH*hd)
        var postNorm = 0             // (C)
        var gateUpw = 0              // (2I,C): gate_proj (I,C), up_proj (I,C)
        var downw = 0                // (C,I)
    }

    var entries: [ParameterLayout.Entry] = []
    var embed = 0                    // (V,C)
    var blocks: [Block] = []
    var norm = 0                     // (C)
    var lmHead = 0                   // (V,C): embed when tied
    var count = 0

    init(_ c: LlamaConfig) {
        let C = c.channels, V = c.vocabSize, I = c.intermediateSize, hd = c.headDim
        func add(_ name: String, _ shape: [Int]) -> Int {
            let e = ParameterLayout.Entry(name: name, shape: shape, offset: count)
            entries.append(e)
            count += e.count
            return e.offset
        }
        embed = add("model.embed_tokens.weight", [V, C])
        for l in 0..<c.layers {
            let p = "model.layers.\(l)."
            var b = Block()
            b.inputNorm = add(p + "input_layernorm.weight", [C])
            b.qkvw = add(p + "self_attn.q_proj.weight", [c.heads * hd, C])
            _ = add(p + "self_attn.k_proj.weight", [c.kvHeads * hd, C])
            _ = add(p + "self_attn.v_proj.weight", [c.kvHeads * hd, C])
            if c.qkvBias {
                b.qkvb = add(p + "self_attn.q_proj.bias", [c.heads * hd])
                _ = add(p + "self_attn.k_proj.bias", [c.kvHeads * hd])
                _ = add(p + "self_attn.v_proj.bias", [c.kvHeads * hd])
            }
            b.ow = add(p + "self_attn.o_proj.weight", [C, c.heads * hd])
            b.postNorm = add(p + "post_attention_layernorm.weight", [C])
            b.gateUpw = add(p + "mlp.gate_proj.weight", [I, C])
            _ = add(p + "mlp.up_proj.weight", [I, C])
            b.downw = add(p + "mlp.down_proj.weight", [C, I])
            blocks.append(b)
        }
        norm = add("model.norm.weight", [C])
        lmHead = c.tiedEmbeddings ? embed : add("lm_head.weight", [V, C])
    }
}
