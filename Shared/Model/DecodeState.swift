/// Incremental decoding of `count` samples that share one prompt: the prompt is prefilled once and its keys and
/// values (the prefill's qkv activations) are read by every sample; each sample keeps its own cache for new tokens.
final class DecodeState {
    let model: GPT
    let count: Int, promptLength: Int, maxSteps: Int
    /// Number of tokens fed so far after the prompt (all active samples advance together).
    private(set) var step = 0

    private let prefill: Activations
    private let prefillBuffer = FloatBuffer()
    private let buffer = FloatBuffer()
    private let x, xn, qkv, y, h, hg, scores, logits, mean, rstd: UnsafeMutablePointer<Float>
    private let genK, genV: UnsafeMutablePointer<Float>  // (L, count, maxSteps, C) each

    /// Logits (count,V) for the next token of every sample; after `advance`, row i belongs to the i-th active sample.
    var currentLogits: UnsafeMutablePointer<Float> { logits }

    /// maxSteps: how many tokens may be fed after the prompt (promptLength + maxSteps <= contextLength).
    init(model: GPT, prompt: [Int32], count: Int, maxSteps: Int) {
        let c = model.config
        precondition(!prompt.isEmpty && prompt.count + maxSteps <= c.contextLength, "DecodeState: prompt plus steps exceed the context")
        self.model = model
        self.count = count
        promptLength = prompt.count
        self.maxSteps = max(maxSteps, 0)
        let C = c.channels, V = c.vocabSize, L = c.layers, NH = c.heads
        prefillBuffer.reserve(Activations.floatCount(c, B: 1, T: prompt.count))
        prefill = Activations(base: prefillBuffer.pointer, config: c, B: 1, T: prompt.count)
        let ctx = prompt.count + self.maxSteps
        let sizes = [count * C, count * C, count * 3 * C, count * C, count * 4 * C, count * 4 * C,
                     count * NH * ctx, count * V, count, count, L * count * self.maxSteps * C, L * count * self.maxSteps * C]
        buffer.reserve(sizes.reduce(0, +))
        var p = buffer.pointer
        var views: [UnsafeMutablePointer<Float>] = []
        for s in sizes { views.append(p); p += s }
        (x, xn, qkv, y, h, hg) = (views[0], views[1], views[2], views[3], views[4], views[5])
        (scores, logits, mean, rstd, genK, genV) = (views[6], views[7], views[8], views[9], views[10], views[11])

        // prefill: full forward over the prompt; the last position's logits start every sample
        prompt.withUnsafeBufferPointer { model.runForward(prefill, tokens: $0.baseAddress!) }
        model.lmHeadForward(logits, prefill.lnf + (prompt.count - 1) * C, 1)
        for i in 1..<max(count, 1) { (logits + i * V).update(from: logits, count: V) }
    }

    /// Feeds one token per active sample (`samples[i]` is the sample index of row i) and computes their next logits.
    func advance(tokens: [Int32], samples: [Int]) {
        precondition(step < maxSteps, "DecodeState: no room left in the context")
        precondition(tokens.count == samples.count && !tokens.isEmpty)
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

    /// The network for rows r0..<r1 of the active batch at position promptLength + step.
    private func forward(rows: Range<Int>, tokens: UnsafePointer<Int32>, samples: UnsafePointer<Int>, parallelProducts: Bool) {
        guard !rows.isEmpty else { return }
        let c = model.config, m = model
        let C = c.channels, NH = c.heads, hs = C / NH, L = c.layers, V = c.vocabSize, C3 = 3 * C
        let P = promptLength, j = step, ctx = P + j + 1
        let scale = 1 / Float(hs).squareRoot()
        let W = m.params, lay = m.layout
        let r0 = rows.lowerBound, n = rows.count
        // this worker's rows of every buffer
        let x = self.x + r0 * C, xn = self.xn + r0 * C, qkv = self.qkv + r0 * C3, y = self.y + r0 * C
        let h = self.h + r0 * 4 * C, hg = self.hg + r0 * 4 * C, scores = self.scores + r0 * NH * ctx
        let logits = self.logits + r0 * V, mean = self.mean + r0, rstd = self.rstd + r0
        let samples = samples + r0
        for i in 0..<n {
            let w = W + lay.wte + Int(tokens[r0 + i]) * C, pe = W + lay.wpe + (P + j) * C, o = x + i * C
            for k in 0..<C { o[k] = w[k] + pe[k] }
        }
        for l in 0..<L {
            let b = lay.blocks[l]
            let promptQKV = prefill.qkv + l * P * C3
            let cacheK = genK + l * count * maxSteps * C, cacheV = genV + l * count * maxSteps * C
            layernormForward(xn, mean, rstd, x, W + b.ln1w, W + b.ln1b, n, C)
            matmulForward(qkv, xn, W + b.qkvw, W + b.qkvb, n, C, C3, parallel: parallelProducts)
            for i in 0..<n {
                let slot = (samples[i] * maxSteps + j) * C
                (cacheK + slot).update(from: qkv + i * C3 + C, count: C)
                (cacheV + slot).update(from: qkv + i * C3 + 2 * C, count: C)
            }
            // scores (n, NH, ctx): for each head the shared prompt keys for all rows in one product, then each
            // sample's own keys; softmax; then the same for the values
            for hd in 0..<NH {
                sgemm(transA: false, transB: true, m: n, n: P, k: hs, alpha: scale, a: qkv + hd * hs, lda: C3,
                      b: promptQKV + C + hd * hs, ldb: C3, beta: 0, c: scores + hd * ctx, ldc: NH * ctx)
            }
            for i in 0..<n {
                let own = cacheK + samples[i] * maxSteps * C
                for hd in 0..<NH {
                    sgemm(transA: false, transB: true, m: 1, n: j + 1, k: hs, alpha: scale, a: qkv + i * C3 + hd * hs, lda: C3,
                          b: own + hd * hs, ldb: C, beta: 0, c: scores + (i * NH + hd) * ctx + P, ldc: ctx)
                }
            }
            for r in 0..<(n * NH) {
                let row = scores + r * ctx
                let mx = vmax(row, ctx)
                let s = vexpShiftSum(row, ctx, shift: mx)
                vscale(row, ctx, 1 / s)
            }
            for hd in 0..<NH {
                sgemm(transA: false, transB: false, m: n, n: hs, k: P, a: scores + hd * ctx, lda: NH * ctx,
                      b: promptQKV + 2 * C + hd * hs, ldb: C3, beta: 0, c: y + hd * hs, ldc: C)
            }
            for i in 0..<n {
                let own = cacheV + samples[i] * maxSteps * C
                for hd in 0..<NH {
                    sgemm(transA: false, transB: false, m: 1, n: hs, k: j + 1, a: scores + (i * NH + hd) * ctx + P, lda: ctx,
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
