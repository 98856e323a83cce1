// The Llama training pass: forward to per-token log-probabilities, backward from their gradients.
extension Llama {
    /// Training pass. tokens, targets: (B,T) row-major; returns log q(target) and entropy per position, each (B*T), where q
    /// is `distribution` over the logits (the sampler's: tempered, top-k/top-p cut, renormalised).
    /// A negative target marks a position without a target: its logprob is 0 and it gets no gradient.
    public func forward(tokens: [Int32], targets: [Int32], batch B: Int, time T: Int, distribution: TokenDistribution) -> (logprobs: [Float], entropy: [Float]) {
        checkTrainingBatch(tokens: tokens, targets: targets, B: B, T: T, contextLength: config.contextLength, vocabSize: config.vocabSize)

        let a = prepareActivations(B: B, T: T)
        lastTokens = tokens
        lastTargets = targets
        tokens.withUnsafeBufferPointer { runForward(a, tokens: $0.baseAddress!) }
        lmHeadForward(a.probs, a.lnf, B * T)
        let head = logprobsAndEntropy(a.probs, targets: targets, B * T, config.vocabSize, distribution: distribution)
        lastLogitScale = head.logitScale
        return (head.logprobs, head.entropy)
    }

    /// dLogprobs: dLoss/dlogprob per position (B*T); mask 0/1 per position (masked positions contribute nothing).
    /// Adds into the gradients; call once after each `forward` (it consumes that pass's activations).
    public func backward(dLogprobs: [Float], mask: [Float]) {
        guard let a = acts else { preconditionFailure("backward needs a forward pass first (one backward per forward)") }
        defer { acts = nil }  // the probabilities were overwritten by their gradients
        let c = config, B = a.B, T = a.T, C = c.channels, L = c.layers, NH = c.heads, NKV = c.kvHeads, hd = c.headDim
        let V = c.vocabSize, BT = B * T, QKV = c.qkvWidth, I = c.intermediateSize, A = NH * hd
        precondition(dLogprobs.count == BT && mask.count == BT, "backward: need B*T = \(BT) gradients and mask entries")
        scratchBuffer.reserve(LlamaGradientScratch.floatCount(c, B: B, T: T))
        let s = LlamaGradientScratch(base: scratchBuffer.pointer, config: c, B: B, T: T)
        let P = params, G = grads, lay = layout

        dLogprobs.withUnsafeBufferPointer { dl in
            mask.withUnsafeBufferPointer { mk in
                lastTargets.withUnsafeBufferPointer { tg in
                    logprobBackward(a.probs, dl.baseAddress!, mk.baseAddress!, tg.baseAddress!, BT, V, scale: lastLogitScale)
                }
            }
        }
        // head: dlnf (B,T,C) = dlogits @ lm_head ; dlm_head += dlogits^T @ lnf
        linearBackward(s.dbtc, G + lay.lmHead, nil, a.probs, a.lnf, P + lay.lmHead, BT, C, V, ones: s.ones)
        s.dresidual.update(repeating: 0, count: BT * C)
        rmsnormBackward(s.dresidual, G + lay.norm, s.dbtc, a.residual3 + (L - 1) * BT * C, P + lay.norm, a.lnfRstd, BT, C)

        for l in stride(from: L - 1, through: 0, by: -1) {
            let w = lay.blocks[l]
            let residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * C
            let ln1 = a.ln1 + l * BT * C, qkv = a.qkv + l * BT * QKV, atty = a.atty + l * BT * A
            let att = a.att + l * B * NH * T * T, residual2 = a.residual2 + l * BT * C, ln2 = a.ln2 + l * BT * C
            let gateUp = a.gateUp + l * BT * 2 * I, swiglu = a.swiglu + l * BT * I
            // MLP: residual3 = residual2 + down(swiglu(gateUp(ln2(residual2))))
            linearBackward(s.dswiglu, G + w.downw, nil, s.dresidual, swiglu, P + w.downw, BT, I, C, ones: s.ones)
            swigluBackward(s.dgateUp, s.dswiglu, gateUp, BT, I)
            linearBackward(s.dbtc, G + w.gateUpw, nil, s.dgateUp, ln2, P + w.gateUpw, BT, C, 2 * I, ones: s.ones)
            rmsnormBackward(s.dresidual, G + w.postNorm, s.dbtc, residual2, P + w.postNorm, a.ln2Rstd + l * BT, BT, C)
            // attention: residual2 = residual + o(attention(rope(qkv(ln1(residual)))))
            linearBackward(s.datty, G + w.ow, nil, s.dresidual, atty, P + w.ow, BT, A, C, ones: s.ones)
            gqaAttentionBackward(s.dqkv, s.datt, s.datty, qkv, att, B, T, NH, NKV, hd)
            ropeBackward(s.dqkv, stride: QKV, BT, heads: NH + NKV, hd, a.cos, a.sin, T)
            linearBackward(s.dbtc, G + w.qkvw, w.qkvb.map { G + $0 }, s.dqkv, ln1, P + w.qkvw, BT, C, QKV, ones: s.ones)
            rmsnormBackward(s.dresidual, G + w.inputNorm, s.dbtc, residual, P + w.inputNorm, a.ln1Rstd + l * BT, BT, C)
        }
        lastTokens.withUnsafeBufferPointer { tk in
            embeddingBackward(G + lay.embed, s.dresidual, tk.baseAddress!, BT, C)
        }
    }

    /// Views for a (B,T) pass in the activation buffer, grown if needed, with the rotary tables for positions 0..<T.
    func prepareActivations(B: Int, T: Int) -> LlamaActivations {
        activationBuffer.reserve(LlamaActivations.floatCount(config, B: B, T: T))
        let a = LlamaActivations(base: activationBuffer.pointer, config: config, B: B, T: T)
        ropeTables(a.cos, a.sin, positions: Array(0..<T), invFreq: invFreq)
        acts = a
        return a
    }

    /// The transformer up to the final RMSNorm: fills every activation of `a` except `probs`.
    func runForward(_ a: LlamaActivations, tokens: UnsafePointer<Int32>) {
        let c = config, B = a.B, T = a.T, C = c.channels, L = c.layers, NH = c.heads, NKV = c.kvHeads, hd = c.headDim
        let BT = B * T, QKV = c.qkvWidth, I = c.intermediateSize, A = NH * hd, eps = c.rmsNormEps
        let P = params, lay = layout
        embeddingForward(a.encoded, tokens, P + lay.embed, BT, C)
        for l in 0..<L {
            let w = lay.blocks[l]
            let residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * C
            let ln1 = a.ln1 + l * BT * C, qkv = a.qkv + l * BT * QKV, atty = a.atty + l * BT * A
            let att = a.att + l * B * NH * T * T, residual2 = a.residual2 + l * BT * C, ln2 = a.ln2 + l * BT * C
            let gateUp = a.gateUp + l * BT * 2 * I, swiglu = a.swiglu + l * BT * I, residual3 = a.residual3 + l * BT * C
            rmsnormForward(ln1, a.ln1Rstd + l * BT, residual, P + w.inputNorm, BT, C, eps: eps)
            linearForward(qkv, ln1, P + w.qkvw, w.qkvb.map { P + $0 }, BT, C, QKV)
            ropeForward(qkv, stride: QKV, BT, heads: NH + NKV, hd, a.cos, a.sin, T)
            gqaAttentionForward(atty, att, qkv, B, T, NH, NKV, hd)
            parallelCopy(residual2, residual, BT * C)
            linearForward(residual2, atty, P + w.ow, nil, BT, A, C, accumulate: true)
            rmsnormForward(ln2, a.ln2Rstd + l * BT, residual2, P + w.postNorm, BT, C, eps: eps)
            linearForward(gateUp, ln2, P + w.gateUpw, nil, BT, C, 2 * I)
            swigluForward(swiglu, gateUp, BT, I)
            parallelCopy(residual3, residual2, BT * C)
            linearForward(residual3, swiglu, P + w.downw, nil, BT, I, C, accumulate: true)
        }
        rmsnormForward(a.lnf, a.lnfRstd, a.residual3 + (L - 1) * BT * C, P + lay.norm, BT, C, eps: eps)
    }

    /// logits (N,V) = x (N,C) @ lm_head^T (the embedding when tied).
    func lmHeadForward(_ logits: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ N: Int, parallel: Bool = true) {
        linearForward(logits, x, params + layout.lmHead, nil, N, config.channels, config.vocabSize, parallel: parallel)
    }

    /// Logits (T,V) of every position of one sequence by the full forward pass (reference for the KV cache).
    public func logits(tokens: [Int32]) -> [Float] {
        let T = tokens.count
        precondition(T >= 1 && T <= config.contextLength, "logits: need 1 <= T <= contextLength, got \(T)")
        let a = prepareActivations(B: 1, T: T)
        tokens.withUnsafeBufferPointer { runForward(a, tokens: $0.baseAddress!) }
        lmHeadForward(a.probs, a.lnf, T)
        acts = nil
        return Array(UnsafeBufferPointer(start: a.probs, count: T * config.vocabSize))
    }

    /// Logits (B·T,V) and hidden states (B·T,C) of B sequences of T tokens each (row-major (B,T)) from one full forward
    /// pass.
    public func logitsAndHiddenStates(tokens: [Int32], batch B: Int, time T: Int) -> (logits: [Float], hidden: [Float]) {
        let C = config.channels
        precondition(B >= 1 && T >= 1 && T <= config.contextLength && tokens.count == B * T,
                     "logitsAndHiddenStates: need B >= 1, 1 <= T <= contextLength and B*T tokens, got B=\(B) T=\(T) \(tokens.count) tokens")
        let a = prepareActivations(B: B, T: T)
        tokens.withUnsafeBufferPointer { runForward(a, tokens: $0.baseAddress!) }
        lmHeadForward(a.probs, a.lnf, B * T)
        acts = nil
        return (Array(UnsafeBufferPointer(start: a.probs, count: B * T * config.vocabSize)),
                Array(UnsafeBufferPointer(start: a.residual3 + (config.layers - 1) * B * T * C, count: B * T * C)))
    }
}
