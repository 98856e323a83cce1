/// Incremental decoding of several prompt groups at once. Each group's prompt is prefilled once and its keys and
/// values are read by all the group's samples; each sample keeps its own cache for the tokens it generates.
/// Sample s belongs to group s / perGroup.
final class DecodeState {
    let model: GPT
    let count: Int, perGroup: Int, maxSteps: Int
    let promptLengths: [Int]
    /// Number of tokens fed so far after the prompts (all active samples advance together).
    private(set) var step = 0

    private let promptOffsets: [Int]  // row of each group's first position in the prompt caches
    private let totalPrompt: Int
    private let scoreStride: Int       // longest context: the longest prompt plus maxSteps
    private let buffer = FloatBuffer()
    private let x, xn, qkv, y, h, hg, scores, logits, mean, rstd: UnsafeMutablePointer<Float>
    private let promptK, promptV: UnsafeMutablePointer<Float>  // (L, totalPrompt, C) each
    private let genK, genV: UnsafeMutablePointer<Float>        // (L, count, maxSteps, C) each

    /// Logits (count,V) for the next token of every sample; after `advance`, row i belongs to the i-th active sample.
    var currentLogits: UnsafeMutablePointer<Float> { logits }
    /// The final block's output (count,C) that produced each row of `currentLogits` (the residual stream before the
    /// final LayerNorm, which writes elsewhere): what the sampler commits to in its proofs.
    var currentHidden: UnsafeMutablePointer<Float> { x }

    convenience init(model: GPT, prompt: [Int32], count: Int, maxSteps: Int) {
        self.init(model: model, prompts: [prompt], perGroup: count, maxSteps: maxSteps)
    }

    /// maxSteps: how many tokens may be fed after the prompts; a sample must not be fed past its context.
    init(model: GPT, prompts: [[Int32]], perGroup: Int, maxSteps: Int) {
        let c = model.config
        precondition(!prompts.isEmpty && perGroup >= 1 && prompts.allSatisfy { !$0.isEmpty && $0.count <= c.contextLength },
                     "DecodeState: prompts must be non-empty and fit the context")
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
        let C = c.channels, V = c.vocabSize, L = c.layers, NH = c.heads
        let sizes = [count * C, count * C, count * 3 * C, count * C, count * 4 * C, count * 4 * C,
                     count * NH * scoreStride, count * V, count, count, L * total * C, L * total * C,
                     L * count * self.maxSteps * C, L * count * self.maxSteps * C]
        buffer.reserve(sizes.reduce(0, +))
        var p = buffer.pointer
        var views: [UnsafeMutablePointer<Float>] = []
        for s in sizes { views.append(p); p += s }
        (x, xn, qkv, y, h, hg, scores) = (views[0], views[1], views[2], views[3], views[4], views[5], views[6])
        (logits, mean, rstd, promptK, promptV, genK, genV) = (views[7], views[8], views[9], views[10], views[11], views[12], views[13])

        // prefill each prompt with the full forward pass (one activation buffer, reused), keep its keys and values,
        // and start every sample of the group from the last position's logits
        let prefillBuffer = FloatBuffer()
        prefillBuffer.reserve(Activations.floatCount(c, B: 1, T: maxPrompt))
        for (g, prompt) in prompts.enumerated() {
            let P = prompt.count
            let a = Activations(base: prefillBuffer.pointer, config: c, B: 1, T: P)
            prompt.withUnsafeBufferPointer { model.runForward(a, tokens: $0.baseAddress!) }
            for l in 0..<L {
                for t in 0..<P {
                    let src = a.qkv + (l * P + t) * 3 * C, dst = (l * total + offsets[g] + t) * C
                    (promptK + dst).update(from: src + C, count: C)
                    (promptV + dst).update(from: src + 2 * C, count: C)
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
        precondition(step < maxSteps, "DecodeState: no room left in the cache")
        precondition(tokens.count == samples.count && !tokens.isEmpty)
        precondition(samples.allSatisfy { promptLengths[$0 / perGroup] + step < model.config.contextLength },
                     "DecodeState: a sample is at the end of its context")
        let n = tokens.count
        tokens.withUnsafeBufferPointer { tk in
            samples.withUnsafeBufferPointer { sm in
                if n >= 2 && Parallel.workers > 1 {
                    // samples are independent: each worker runs the whole network for its rows, one region per step
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
        let C = c.channels, NH = c.heads, hs = C / NH, L = c.layers, V = c.vocabSize, C3 = 3 * C
        let j = step, S = scoreStride
        let scale = 1 / Float(hs).squareRoot()
        let W = m.params, lay = m.layout
        let r0 = rows.lowerBound, n = rows.count
        // this worker's rows of every buffer
        let x = self.x + r0 * C, xn = self.xn + r0 * C, qkv = self.qkv + r0 * C3, y = self.y + r0 * C
        let h = self.h + r0 * 4 * C, hg = self.hg + r0 * 4 * C, scores = self.scores + r0 * NH * S
        let logits = self.logits + r0 * V, mean = self.mean + r0, rstd = self.rstd + r0
        let samples = samples + r0
        func group(_ i: Int) -> Int { samples[i] / perGroup }
        for i in 0..<n {
            let w = W + lay.wte + Int(tokens[r0 + i]) * C, pe = W + lay.wpe + (promptLengths[group(i)] + j) * C, o = x + i * C
            for k in 0..<C { o[k] = w[k] + pe[k] }
        }
        for l in 0..<L {
            let b = lay.blocks[l]
            let pk = promptK + l * totalPrompt * C, pv = promptV + l * totalPrompt * C
            let cacheK = genK + l * count * maxSteps * C, cacheV = genV + l * count * maxSteps * C
            layernormForward(xn, mean, rstd, x, W + b.ln1w, W + b.ln1b, n, C)
            matmulForward(qkv, xn, W + b.qkvw, W + b.qkvb, n, C, C3, parallel: parallelProducts)
            for i in 0..<n {
                let slot = (samples[i] * maxSteps + j) * C
                (cacheK + slot).update(from: qkv + i * C3 + C, count: C)
                (cacheV + slot).update(from: qkv + i * C3 + 2 * C, count: C)
            }
            // scores (n, NH, S): the group's prompt keys for all its rows in one product per head, then each sample's
            // own keys; softmax over the row's context; then the same for the values
            var i0 = 0
            while i0 < n {
                let g = group(i0)
                var i1 = i0 + 1
                while i1 < n && group(i1) == g { i1 += 1 }
                let P = promptLengths[g], pOff = promptOffsets[g] * C
                for hd in 0..<NH {
                    sgemm(transA: false, transB: true, m: i1 - i0, n: P, k: hs, alpha: scale, a: qkv + i0 * C3 + hd * hs, lda: C3,
                          b: pk + pOff + hd * hs, ldb: C, beta: 0, c: scores + (i0 * NH + hd) * S, ldc: NH * S)
                }
                i0 = i1
            }
            for i in 0..<n {
                let own = cacheK + samples[i] * maxSteps * C, P = promptLengths[group(i)]
                for hd in 0..<NH {
                    sgemm(transA: false, transB: true, m: 1, n: j + 1, k: hs, alpha: scale, a: qkv + i * C3 + hd * hs, lda: C3,
                          b: own + hd * hs, ldb: C, beta: 0, c: scores + (i * NH + hd) * S + P, ldc: S)
                }
                let ctx = P + j + 1
                for hd in 0..<NH {
                    let row = scores + (i * NH + hd) * S
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
                let P = promptLengths[g], pOff = promptOffsets[g] * C
                for hd in 0..<NH {
                    sgemm(transA: false, transB: false, m: i1 - i0, n: hs, k: P, a: scores + (i0 * NH + hd) * S, lda: NH * S,
                          b: pv + pOff + hd * hs, ldb: C, beta: 0, c: y + i0 * C + hd * hs, ldc: C)
                }
                i0 = i1
            }
            for i in 0..<n {
                let own = cacheV + samples[i] * maxSteps * C, P = promptLengths[group(i)]
                for hd in 0..<NH {
                    sgemm(transA: false, transB: false, m: 1, n: hs, k: j + 1, a: scores + (i * NH + hd) * S + P, lda: S,
                          b: own + hd * hs, ldb: C, beta: 1, c: y + i * C + hd * hs, ldc: C)
                }
            }
            matmulForward(x, y, W + b.attprojw, W + b.attprojb, n, C, C, accumulate: true, parallel: parallelProducts)
            layernormForward(xn, mean, rstd, x, W + b.ln2w, W + b.ln2b, n, C)
            matmulForward(h, xn, W + b.fcw, W + b.fcb, n, C, 4 * C, parallel: parallelProducts)
            geluForward(hg, h, n * 4 * C)
            matmulForward(x, hg, W + b.fcprojw, W + b.fcprojb, n, 4 * C, C, accumulate: true, parallel: parallelProducts)
        }
        layernormForward(xn, mean, rstd, x, W + lay.lnfw, W + lay.lnfb, n, C)
        m.lmHeadForward(logits, xn, n, parallel: parallelProducts)
    }
}
