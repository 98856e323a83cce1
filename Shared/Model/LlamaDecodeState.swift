/// Incremental decoding of several prompt groups at once for `Llama`, as `DecodeState` does for GPT: each group's prompt
/// is prefilled once and its (rotated) keys and values are read by all the group's samples; each sample keeps its own
/// cache for the tokens it generates. Sample s belongs to group s / perGroup.
final class LlamaDecodeState: IncrementalDecoder {
    let model: Llama
    let count: Int, perGroup: Int, maxSteps: Int
    let promptLengths: [Int]
    /// Number of tokens fed so far after the prompts (all active samples advance together).
    private(set) var step = 0

    private let promptOffsets: [Int]  // row of each group's first position in the prompt caches
    private let totalPrompt: Int
    private let scoreStride: Int       // longest context: the longest prompt plus maxSteps
    private let buffer = FloatBuffer()
    private let x, xn, qkv, y, gateUp, h, scores, logits, rstd, cos, sin: UnsafeMutablePointer<Float>
    private let promptK, promptV: UnsafeMutablePointer<Float>  // (L, totalPrompt, NKV*hd) each
    private let genK, genV: UnsafeMutablePointer<Float>        // (L, count, maxSteps, NKV*hd) each

    /// Logits (count,V) for the next token of every sample; after `advance`, row i belongs to the i-th active sample.
    var currentLogits: UnsafeMutablePointer<Float> { logits }
    /// The final block's output (count,C) that produced each row of `currentLogits` (the residual stream before the
    /// final RMSNorm, which writes elsewhere): what the sampler commits to in its proofs.
    var currentHidden: UnsafeMutablePointer<Float> { x }

    convenience init(model: Llama, prompt: [Int32], count: Int, maxSteps: Int) {
        self.init(model: model, prompts: [prompt], perGroup: count, maxSteps: maxSteps)
    }

    /// maxSteps: how many tokens may be fed after the prompts; a sample must not be fed past its context.
    init(model: Llama, prompts: [[Int32]], perGroup: Int, maxSteps: Int) {
        let c = model.config
        precondition(!prompts.isEmpty && perGroup >= 1 && prompts.allSatisfy { !$0.isEmpty && $0.count <= c.contextLength },
                     "LlamaDecodeState: prompts must be non-empty and fit the context")
        self.model = model
        self.perGroup = perGroup
        count = prompts.count * perGroup
        promptLengths = prompts.map(\.count)
        self.maxSteps = max(maxSteps, 0)
        var offsets: [Int] = [], total = 0
        for p in prompts { offsets.append(total); total += p.count }
        promptOffsets = offsets
        totalPrompt = total
        let maxPrompt = promptLengths.max()!
        scoreStride = maxPrompt + self.maxSteps
        let C = c.channels, V = c.vocabSize, L = c.layers, NH = c.heads, I = c.intermediateSize
        let KVW = c.kvHeads * c.headDim, half = c.headDim / 2
        let sizes = [count * C, count * C, count * c.qkvWidth, count * NH * c.headDim, count * 2 * I, count * I,
                     count * NH * scoreStride, count * V, count, count * half, count * half,
                     L * total * KVW, L * total * KVW, L * count * self.maxSteps * KVW, L * count * self.maxSteps * KVW]
        buffer.reserve(sizes.reduce(0, +))
        var p = buffer.pointer
        var views: [UnsafeMutablePointer<Float>] = []
        for s in sizes { views.append(p); p += s }
        (x, xn, qkv, y, gateUp, h, scores, logits) = (views[0], views[1], views[2], views[3], views[4], views[5], views[6], views[7])
        (rstd, cos, sin, promptK, promptV, genK, genV) = (views[8], views[9], views[10], views[11], views[12], views[13], views[14])

        // prefill each prompt with the full forward pass (one activation buffer, reused), keep its rotated keys and
        // values, and start every sample of the group from the last position's logits
        let prefillBuffer = FloatBuffer()
        prefillBuffer.reserve(LlamaActivations.floatCount(c, B: 1, T: maxPrompt))
        let QKV = c.qkvWidth, kOff = NH * c.headDim, vOff = kOff + KVW
        for (g, prompt) in prompts.enumerated() {
            let P = prompt.count
            let a = LlamaActivations(base: prefillBuffer.pointer, config: c, B: 1, T: P)
            ropeTables(a.cos, a.sin, positions: Array(0..<P), invFreq: model.invFreq)
            prompt.withUnsafeBufferPointer { model.runForward(a, tokens: $0.baseAddress!) }
            for l in 0..<L {
                for t in 0..<P {
                    let src = a.qkv + (l * P + t) * QKV, dst = (l * total + offsets[g] + t) * KVW
                    (promptK + dst).update(from: src + kOff, count: KVW)
                    (promptV + dst).update(from: src + vOff, count: KVW)
                }
            }
            let first = logits + g * perGroup * V
            model.lmHeadForward(first, a.lnf + (P - 1) * C, 1)
            for k in 1..<perGroup { (first + k * V).update(from: first, count: V) }
            let last = a.residual3 + ((L - 1) * P + P - 1) * C
            for k in 0..<perGroup { (x + (g * perGroup + k) * C).update(from: last, count: C) }
        }
    }

    /// Feeds one token per active sample (`samples[i]` is the sample index of row i, increasing) and computes their
    /// next logits.
    func advance(tokens: [Int32], samples: [Int]) {
        precondition(step < maxSteps, "LlamaDecodeState: no room left in the cache")
        precondition(tokens.count == samples.count && !tokens.isEmpty)
        precondition(samples.allSatisfy { promptLengths[$0 / perGroup] + step < model.config.contextLength },
                     "LlamaDecodeState: a sample is at the end of its context")
        let n = tokens.count
        // rotary tables of each row's position, shared by every layer
        ropeTables(cos, sin, positions: samples.map { promptLengths[$0 / perGroup] + step }, invFreq: model.invFreq)
        tokens.withUnsafeBufferPointer { tk in
            samples.withUnsafeBufferPointer { sm in
                if n >= 2 && Parallel.workers > 1 {
                    // samples are independent: each worker runs the whole network for its rows
                    Parallel.chunksCallingBLAS(n, balanced: false) { _, rows in
                        forward(rows: rows, tokens: tk.baseAddress!, samples: sm.baseAddress!, parallelProducts: false)
                    }
                } else {
                    forward(rows: 0..<n, tokens: tk.baseAddress!, samples: sm.baseAddress!, parallelProducts: true)
                }
            }
        }
        step += 1
    }

    /// The network for rows r0..<r1 of the active batch; row i is at position promptLength(its group) + step.
    private func forward(rows: Range<Int>, tokens: UnsafePointer<Int32>, samples: UnsafePointer<Int>, parallelProducts: Bool) {
        guard !rows.isEmpty else { return }
        let c = model.config, m = model
        let C = c.channels, NH = c.heads, NKV = c.kvHeads, hd = c.headDim, L = c.layers, V = c.vocabSize
        let QKV = c.qkvWidth, KVW = NKV * hd, A = NH * hd, I = c.intermediateSize, qPerKV = c.groupSize, half = hd / 2
        let j = step, S = scoreStride, eps = c.rmsNormEps
        let scale = 1 / Float(hd).squareRoot()
        let W = m.params, lay = m.layout
        let r0 = rows.lowerBound, n = rows.count
        // this worker's rows of every buffer
        let x = self.x + r0 * C, xn = self.xn + r0 * C, qkv = self.qkv + r0 * QKV, y = self.y + r0 * A
        let gateUp = self.gateUp + r0 * 2 * I, h = self.h + r0 * I, scores = self.scores + r0 * NH * S
        let logits = self.logits + r0 * V, rstd = self.rstd + r0, cos = self.cos + r0 * half, sin = self.sin + r0 * half
        let samples = samples + r0
        func group(_ i: Int) -> Int { samples[i] / perGroup }
        embeddingForward(x, tokens + r0, W + lay.embed, n, C)
        for l in 0..<L {
            let b = lay.blocks[l]
            let pk = promptK + l * totalPrompt * KVW, pv = promptV + l * totalPrompt * KVW
            let cacheK = genK + l * count * maxSteps * KVW, cacheV = genV + l * count * maxSteps * KVW
            rmsnormForward(xn, rstd, x, W + b.inputNorm, n, C, eps: eps)
            linearForward(qkv, xn, W + b.qkvw, b.qkvb.map { W + $0 }, n, C, QKV, parallel: parallelProducts)
            ropeForward(qkv, stride: QKV, n, heads: NH + NKV, hd, cos, sin, n)
            for i in 0..<n {
                let slot = (samples[i] * maxSteps + j) * KVW
                (cacheK + slot).update(from: qkv + i * QKV + A, count: KVW)
                (cacheV + slot).update(from: qkv + i * QKV + A + KVW, count: KVW)
            }
            // scores (n, NH, S): the group's prompt keys for all its rows in one product per head, then each sample's
            // own keys; softmax over the row's context; then the same for the values
            var i0 = 0
            while i0 < n {
                let g = group(i0)
                var i1 = i0 + 1
                while i1 < n && group(i1) == g { i1 += 1 }
                let P = promptLengths[g], pOff = promptOffsets[g] * KVW
                for hh in 0..<NH {
                    sgemm(transA: false, transB: true, m: i1 - i0, n: P, k: hd, alpha: scale, a: qkv + i0 * QKV + hh * hd, lda: QKV,
                          b: pk + pOff + (hh / qPerKV) * hd, ldb: KVW, beta: 0, c: scores + (i0 * NH + hh) * S, ldc: NH * S)
                }
                i0 = i1
            }
            for i in 0..<n {
                let own = cacheK + samples[i] * maxSteps * KVW, P = promptLengths[group(i)]
                for hh in 0..<NH {
                    sgemm(transA: false, transB: true, m: 1, n: j + 1, k: hd, alpha: scale, a: qkv + i * QKV + hh * hd, lda: QKV,
                          b: own + (hh / qPerKV) * hd, ldb: KVW, beta: 0, c: scores + (i * NH + hh) * S + P, ldc: S)
                }
                let ctx = P + j + 1
                for hh in 0..<NH {
                    let row = scores + (i * NH + hh) * S
                    let mx = vmax(row, ctx)
                    let s = vexpShiftSum(row, ctx, shift: mx)
                    vscale(row, ctx, 1 / s)
                }
            }
            i0 = 0
            while i0 < n {
                let g = group(i0)
                var i1 = i0 + 1
                while i1 < n && group(i1) == g { i1 += 1 }
                let P = promptLengths[g], pOff = promptOffsets[g] * KVW
                for hh in 0..<NH {
                    sgemm(transA: false, transB: false, m: i1 - i0, n: hd, k: P, a: scores + (i0 * NH + hh) * S, lda: NH * S,
                          b: pv + pOff + (hh / qPerKV) * hd, ldb: KVW, beta: 0, c: y + i0 * A + hh * hd, ldc: A)
                }
                i0 = i1
            }
            for i in 0..<n {
                let own = cacheV + samples[i] * maxSteps * KVW, P = promptLengths[group(i)]
                for hh in 0..<NH {
                    sgemm(transA: false, transB: false, m: 1, n: hd, k: j + 1, a: scores + (i * NH + hh) * S + P, lda: S,
                          b: own + (hh / qPerKV) * hd, ldb: KVW, beta: 1, c: y + i * A + hh * hd, ldc: A)
                }
            }
            linearForward(x, y, W + b.ow, nil, n, A, C, accumulate: true, parallel: parallelProducts)
            rmsnormForward(xn, rstd, x, W + b.postNorm, n, C, eps: eps)
            linearForward(gateUp, xn, W + b.gateUpw, nil, n, C, 2 * I, parallel: parallelProducts)
            swigluForward(h, gateUp, n, I)
            linearForward(x, h, W + b.downw, nil, n, I, C, accumulate: true, parallel: parallelProducts)
        }
        rmsnormForward(xn, rstd, x, W + lay.norm, n, C, eps: eps)
        m.lmHeadForward(logits, xn, n, parallel: parallelProducts)
    }
}
