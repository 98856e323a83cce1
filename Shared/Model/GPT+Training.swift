// The training pass: forward to per-token log-probabilities, backward from their gradients.
extension GPT {
    /// Training pass. tokens, targets: (B,T) row-major; returns log q(target) and entropy per position, each (B*T), where q
    /// is `distribution` over the logits (the sampler's: tempered, top-k/top-p cut, renormalised).
    /// A negative target marks a position without a target: its logprob is 0 and it gets no gradient.
    public func forward(tokens: [Int32], targets: [Int32], batch B: Int, time T: Int, distribution: TokenDistribution) -> (logprobs: [Float], entropy: [Float]) {
        checkTrainingBatch(tokens: tokens, targets: targets, B: B, T: T, contextLength: config.contextLength, vocabSize: config.vocabSize)

        let a = prepareActivations(B: B, T: T)
        lastTokens = tokens
        lastTargets = targets
        tokens.withUnsafeBufferPointer { runForward(a, tokens: $0.baseAddress!) }
        // head: logits (B,T,V) = lnf @ wte^T, then log-softmax of the sampling distribution in place
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
        let B = a.B, T = a.T, C = config.channels, L = config.layers, NH = config.heads
        let V = config.vocabSize, BT = B * T
        precondition(dLogprobs.count == BT && mask.count == BT, "backward: need B*T = \(BT) gradients and mask entries")
        scratchBuffer.reserve(GradientScratch.floatCount(config, B: B, T: T))
        let s = GradientScratch(base: scratchBuffer.pointer, config: config, B: B, T: T)
        let P = params, G = grads, lay = layout

        dLogprobs.withUnsafeBufferPointer { dl in
            mask.withUnsafeBufferPointer { mk in
                lastTargets.withUnsafeBufferPointer { tg in
                    logprobBackward(a.probs, dl.baseAddress!, mk.baseAddress!, tg.baseAddress!, BT, V, scale: lastLogitScale)
                }
            }
        }
        // head: dlnf (B,T,C) = dlogits @ wte ; dwte += dlogits^T @ lnf
        sgemm(transA: false, transB: false, m: BT, n: C, k: V, a: a.probs, lda: V, b: P + lay.wte, ldb: C, beta: 0, c: s.dbtc, ldc: C)
        sgemm(transA: true, transB: false, m: V, n: C, k: BT, a: a.probs, lda: V, b: a.lnf, ldb: C, beta: 1, c: G + lay.wte, ldc: C)
        s.dresidual.update(repeating: 0, count: BT * C)
        layernormBackward(s.dresidual, G + lay.lnfw, G + lay.lnfb, s.dbtc, a.residual3 + (L - 1) * BT * C, P + lay.lnfw,
                          a.lnfMean, a.lnfRstd, BT, C)

        for l in stride(from: L - 1, through: 0, by: -1) {
            let w = lay.blocks[l]
            let residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * C
            let ln1 = a.ln1 + l * BT * C, qkv = a.qkv + l * BT * 3 * C, atty = a.atty + l * BT * C
            let att = a.att + l * B * NH * T * T, residual2 = a.residual2 + l * BT * C, ln2 = a.ln2 + l * BT * C
            let fch = a.fch + l * BT * 4 * C, fchGelu = a.fchGelu + l * BT * 4 * C
            // MLP: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
            matmulBackward(s.dbt4c, G + w.fcprojw, G + w.fcprojb, s.dresidual, fchGelu, P + w.fcprojw, BT, 4 * C, C, ones: s.ones)
            geluBackward(s.dbt4c, fch, s.dbt4c, BT * 4 * C)
            matmulBackward(s.dbtc, G + w.fcw, G + w.fcb, s.dbt4c, ln2, P + w.fcw, BT, C, 4 * C, ones: s.ones)
            layernormBackward(s.dresidual, G + w.ln2w, G + w.ln2b, s.dbtc, residual2, P + w.ln2w,
                              a.ln2Mean + l * BT, a.ln2Rstd + l * BT, BT, C)
            // attention: residual2 = residual + attproj(attention(qkv(ln1(residual))))
            matmulBackward(s.dbtc, G + w.attprojw, G + w.attprojb, s.dresidual, atty, P + w.attprojw, BT, C, C, ones: s.ones)
            attentionBackward(s.dqkv, s.datt, s.dbtc, qkv, att, B, T, C, NH)
            matmulBackward(s.dbtc, G + w.qkvw, G + w.qkvb, s.dqkv, ln1, P + w.qkvw, BT, C, 3 * C, ones: s.ones)
            layernormBackward(s.dresidual, G + w.ln1w, G + w.ln1b, s.dbtc, residual, P + w.ln1w,
                              a.ln1Mean + l * BT, a.ln1Rstd + l * BT, BT, C)
        }
        lastTokens.withUnsafeBufferPointer { tk in
            encoderBackward(G + lay.wte, G + lay.wpe, s.dresidual, tk.baseAddress!, B, T, C)
        }
    }

    /// Views for a (B,T) pass in the activation buffer, grown if needed.
    func prepareActivations(B: Int, T: Int) -> Activations {
        activationBuffer.reserve(Activations.floatCount(config, B: B, T: T))
        let a = Activations(base: activationBuffer.pointer, config: config, B: B, T: T)
        acts = a
        return a
    }

    /// The transformer up to the final LayerNorm: fills every activation of `a` except `probs`.
    func runForward(_ a: Activations, tokens: UnsafePointer<Int32>) {
        let B = a.B, T = a.T, C = config.channels, L = config.layers, NH = config.heads, BT = B * T
        let P = params, lay = layout
        encoderForward(a.encoded, tokens, P + lay.wte, P + lay.wpe, B, T, C)
        for l in 0..<L {
            let w = lay.blocks[l]
            let residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * BT * C
            let ln1 = a.ln1 + l * BT * C, qkv = a.qkv + l * BT * 3 * C, atty = a.atty + l * BT * C
            let att = a.att + l * B * NH * T * T, residual2 = a.residual2 + l * BT * C, ln2 = a.ln2 + l * BT * C
            let fch = a.fch + l * BT * 4 * C, fchGelu = a.fchGelu + l * BT * 4 * C, residual3 = a.residual3 + l * BT * C
            layernormForward(ln1, a.ln1Mean + l * BT, a.ln1Rstd + l * BT, residual, P + w.ln1w, P + w.ln1b, BT, C)
            matmulForward(qkv, ln1, P + w.qkvw, P + w.qkvb, BT, C, 3 * C)
            attentionForward(atty, att, qkv, B, T, C, NH)
            parallelCopy(residual2, residual, BT * C)
            matmulForward(residual2, atty, P + w.attprojw, P + w.attprojb, BT, C, C, accumulate: true)
            layernormForward(ln2, a.ln2Mean + l * BT, a.ln2Rstd + l * BT, residual2, P + w.ln2w, P + w.ln2b, BT, C)
            matmulForward(fch, ln2, P + w.fcw, P + w.fcb, BT, C, 4 * C)
            geluForward(fchGelu, fch, BT * 4 * C, derivative: fch)  // fch now holds gelu'
            parallelCopy(residual3, residual2, BT * C)
            matmulForward(residual3, fchGelu, P + w.fcprojw, P + w.fcprojb, BT, 4 * C, C, accumulate: true)
        }
        layernormForward(a.lnf, a.lnfMean, a.lnfRstd, a.residual3 + (L - 1) * BT * C, P + lay.lnfw, P + lay.lnfb, BT, C)
    }

    /// logits (N,V) = x (N,C) @ wte^T, the output layer tied to the token embedding.
    func lmHeadForward(_ logits: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ N: Int, parallel: Bool = true) {
        let C = config.channels, V = config.vocabSize, wte = params + layout.wte
        if N <= skinnyRows {
            // few rows (decoding): blocks of vocabulary rows over the workers, as in skinnyMatmulForward
            let width = skinnyBlockWidth(rows: N, depth: C), blocks = (V + width - 1) / width
            let body = { (range: Range<Int>) in
                for blk in range {
                    let v0 = blk * width, n = min(width, V - v0)
                    sgemm(transA: false, transB: true, m: N, n: n, k: C, a: x, lda: C, b: wte + v0 * C, ldb: C, beta: 0, c: logits + v0, ldc: V)
                }
            }
            if parallel { Parallel.chunksCallingBLAS(blocks) { _, range in body(range) } } else { body(0..<blocks) }
            return
        }
        sgemm(transA: false, transB: true, m: N, n: V, k: C, a: x, lda: C, b: wte, ldb: C, beta: 0, c: logits, ldc: V)
    }

    /// Logits (T,V) of every position of one sequence by the full forward pass (reference for the KV cache).
    public func logits(tokens: [Int32]) -> [Float] {
        let T = tokens.count
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
