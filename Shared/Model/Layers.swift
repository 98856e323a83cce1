import Foundation

// The layers of GPT-2 as plain forward/backward function pairs (after llm.c's train_gpt2.c).
// Shapes are row-major; backward functions add into parameter gradients.

// MARK: encoder

/// out (B,T,C) = wte[tokens] + wpe[t]; tokens (B,T), wte (V,C), wpe (maxT,C)
func encoderForward(_ out: UnsafeMutablePointer<Float>, _ tokens: UnsafePointer<Int32>,
                    _ wte: UnsafePointer<Float>, _ wpe: UnsafePointer<Float>, _ B: Int, _ T: Int, _ C: Int) {
    for b in 0..<B {
        for t in 0..<T {
            let o = out + (b * T + t) * C
            let w = wte + Int(tokens[b * T + t]) * C
            let p = wpe + t * C
            for i in 0..<C { o[i] = w[i] + p[i] }
        }
    }
}

/// dwte, dwpe += scatter of dout (B,T,C)
func encoderBackward(_ dwte: UnsafeMutablePointer<Float>, _ dwpe: UnsafeMutablePointer<Float>,
                     _ dout: UnsafePointer<Float>, _ tokens: UnsafePointer<Int32>, _ B: Int, _ T: Int, _ C: Int) {
    for b in 0..<B {
        for t in 0..<T {
            let d = dout + (b * T + t) * C
            vadd(dwte + Int(tokens[b * T + t]) * C, d, C)
            vadd(dwpe + t * C, d, C)
        }
    }
}

/// out (N) = inp (N), split over the workers (residual stream copies)
func parallelCopy(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ N: Int) {
    Parallel.chunks(N, minPerWorker: 65536) { _, r in (out + r.lowerBound).update(from: inp + r.lowerBound, count: r.count) }
}

// MARK: layernorm

/// out (N,C) = (inp - mean) * rstd * weight + bias; mean, rstd (N) kept for backward; weight, bias (C)
func layernormForward(_ out: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
                      _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
                      _ N: Int, _ C: Int) {
    let eps: Float = 1e-5
    Parallel.chunks(N, minPerWorker: 64) { _, rows in
    for n in rows {
        let x = inp + n * C
        let m = vsum(x, C) / Float(C)
        var acc = F8(), i = 0
        let m8 = F8(repeating: m)
        while i + 8 <= C { let d = load8(x + i) - m8; acc += d * d; i += 8 }
        var v = acc.sum()
        while i < C { let d = x[i] - m; v += d * d; i += 1 }
        let s = 1 / (v / Float(C) + eps).squareRoot()
        let o = out + n * C
        i = 0
        let s8 = F8(repeating: s)
        while i + 8 <= C { store8((load8(x + i) - m8) * s8 * load8(weight + i) + load8(bias + i), o + i); i += 8 }
        while i < C { o[i] = (x[i] - m) * s * weight[i] + bias[i]; i += 1 }
        mean[n] = m
        rstd[n] = s
    }
    }
}

/// dinp (N,C) += ..., dweight, dbias (C) += ...; dout, inp (N,C)
func layernormBackward(_ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>, _ dbias: UnsafeMutablePointer<Float>,
                       _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                       _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ N: Int, _ C: Int) {
    if min(Parallel.workers, N / 64) <= 1 {
        layernormBackwardRows(dinp, dweight, dbias, dout, inp, weight, mean, rstd, 0..<N, C)
        return
    }
    // rows split in pieces; parameter gradients summed in per-piece partials, then added
    let pieces = Parallel.maxPieces
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * pieces * C)
    defer { partial.deallocate() }
    partial.update(repeating: 0, count: 2 * pieces * C)
    Parallel.chunks(N, minPerWorker: 64) { piece, rows in
        let pw = partial + 2 * piece * C
        layernormBackwardRows(dinp, pw, pw + C, dout, inp, weight, mean, rstd, rows, C)
    }
    for k in 0..<pieces {
        vadd(dweight, partial + 2 * k * C, C)
        vadd(dbias, partial + 2 * k * C + C, C)
    }
}

private func layernormBackwardRows(_ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>, _ dbias: UnsafeMutablePointer<Float>,
                                   _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                   _ mean: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ rows: Range<Int>, _ C: Int) {
    for n in rows {
        let dy = dout + n * C, x = inp + n * C, dx = dinp + n * C
        let m = mean[n], s = rstd[n]
        let m8 = F8(repeating: m), s8 = F8(repeating: s)
        // two reductions: mean of dnorm and mean of dnorm * norm
        var a1 = F8(), a2 = F8(), i = 0
        while i + 8 <= C {
            let norm = (load8(x + i) - m8) * s8
            let dnorm = load8(weight + i) * load8(dy + i)
            a1 += dnorm; a2 += dnorm * norm; i += 8
        }
        var dnormMean = a1.sum(), dnormNormMean = a2.sum()
        while i < C {
            let norm = (x[i] - m) * s, dnorm = weight[i] * dy[i]
            dnormMean += dnorm; dnormNormMean += dnorm * norm; i += 1
        }
        dnormMean /= Float(C); dnormNormMean /= Float(C)
        let dm8 = F8(repeating: dnormMean), dnm8 = F8(repeating: dnormNormMean)
        i = 0
        while i + 8 <= C {
            let norm = (load8(x + i) - m8) * s8
            let g = load8(dy + i)
            store8(load8(dbias + i) + g, dbias + i)
            store8(load8(dweight + i) + norm * g, dweight + i)
            let dnorm = load8(weight + i) * g
            store8(load8(dx + i) + (dnorm - dm8 - norm * dnm8) * s8, dx + i)
            i += 8
        }
        while i < C {
            let norm = (x[i] - m) * s, g = dy[i]
            dbias[i] += g
            dweight[i] += norm * g
            dx[i] += (weight[i] * g - dnormMean - norm * dnormNormMean) * s
            i += 1
        }
    }
}

// MARK: matmul

/// out (N,OC) = inp (N,C) @ weight (C,OC) + bias (OC); with accumulate, out += instead (fused residual add)
func matmulForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                   _ bias: UnsafePointer<Float>?, _ N: Int, _ C: Int, _ OC: Int, accumulate: Bool = false, parallel: Bool = true) {
    if N <= skinnyRows {
        skinnyMatmulForward(out, inp, weight, bias, N, C, OC, accumulate: accumulate, parallel: parallel)
        return
    }
    if let bias {
        Parallel.chunks(N, minPerWorker: 128) { _, rows in
            for n in rows {
                let o = out + n * OC
                if accumulate { vadd(o, bias, OC) } else { o.update(from: bias, count: OC) }
            }
        }
        sgemm(transA: false, transB: false, m: N, n: OC, k: C, a: inp, lda: C, b: weight, ldb: OC, beta: 1, c: out, ldc: OC)
    } else {
        sgemm(transA: false, transB: false, m: N, n: OC, k: C, a: inp, lda: C, b: weight, ldb: OC,
              beta: accumulate ? 1 : 0, c: out, ldc: OC)
    }
}

/// Up to this many rows (decoding), products are split by output columns over the workers: OpenBLAS packs the whole
/// weight matrix on every call, which costs as much as the product itself when there are few rows; narrow column
/// blocks stay on its faster small-matrix path and use both cores.
let skinnyRows = 64

/// Output columns per block: a multiple of 16 with rows * width * depth under OpenBLAS's small-matrix limit (100^3).
@inline(__always) func skinnyBlockWidth(rows: Int, depth: Int) -> Int {
    max(16, min(128, 1_000_000 / max(1, rows * depth) / 16 * 16))
}

/// Same contract as `matmulForward`, for few rows.
func skinnyMatmulForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                         _ bias: UnsafePointer<Float>?, _ N: Int, _ C: Int, _ OC: Int, accumulate: Bool, parallel: Bool) {
    if let bias {
        for n in 0..<N {
            let o = out + n * OC
            if accumulate { vadd(o, bias, OC) } else { o.update(from: bias, count: OC) }
        }
    }
    let beta: Float = (bias != nil || accumulate) ? 1 : 0
    let width = skinnyBlockWidth(rows: N, depth: C)
    let blocks = (OC + width - 1) / width
    let body = { (range: Range<Int>) in
        for blk in range {
            let j0 = blk * width, n = min(width, OC - j0)
            sgemm(transA: false, transB: false, m: N, n: n, k: C, a: inp, lda: C, b: weight + j0, ldb: OC, beta: beta, c: out + j0, ldc: OC)
        }
    }
    if parallel { Parallel.chunksCallingBLAS(blocks) { _, range in body(range) } } else { body(0..<blocks) }
}

/// dinp (N,C) = (or += with accumulateInput) dout (N,OC) @ weight^T; dweight (C,OC) += inp^T @ dout; dbias (OC) += column
/// sums, as the product ones (1,N) @ dout when `ones` (N) is given (multithreaded by BLAS), else a loop
func matmulBackward(_ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>, _ dbias: UnsafeMutablePointer<Float>?,
                    _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                    _ N: Int, _ C: Int, _ OC: Int, accumulateInput: Bool = false, ones: UnsafePointer<Float>? = nil) {
    sgemm(transA: false, transB: true, m: N, n: C, k: OC, a: dout, lda: OC, b: weight, ldb: OC,
          beta: accumulateInput ? 1 : 0, c: dinp, ldc: C)
    sgemm(transA: true, transB: false, m: C, n: OC, k: N, a: inp, lda: C, b: dout, ldb: OC, beta: 1, c: dweight, ldc: OC)
    if let dbias, let ones {
        sgemm(transA: false, transB: false, m: 1, n: OC, k: N, a: ones, lda: N, b: dout, ldb: OC, beta: 1, c: dbias, ldc: OC)
    } else if let dbias {
        for n in 0..<N { vadd(dbias, dout + n * OC, OC) }
    }
}

// MARK: attention

/// Rows of queries handled per block: a block only multiplies the keys up to its last row (causal), saving ~40% of the work.
let attentionBlock = 64

/// out (B,T,C) from qkv (B,T,3C) with causal softmax; att (B,NH,T,T) keeps the probabilities (zero above the diagonal).
/// Multi-head attention is grouped-query attention with a key/value head per query head (the same [q | k | v] layout).
func attentionForward(_ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>, _ qkv: UnsafePointer<Float>,
                      _ B: Int, _ T: Int, _ C: Int, _ NH: Int, block: Int = attentionBlock) {
    gqaAttentionForward(out, att, qkv, B, T, NH, NH, C / NH, block: block)
}

/// dqkv (B,T,3C) is overwritten (no need to zero it); scratch (Parallel.maxPieces,T,T); dout (B,T,C); qkv, att as saved by the forward pass
func attentionBackward(_ dqkv: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>,
                       _ dout: UnsafePointer<Float>, _ qkv: UnsafePointer<Float>, _ att: UnsafePointer<Float>,
                       _ B: Int, _ T: Int, _ C: Int, _ NH: Int, block: Int = attentionBlock) {
    let hs = C / NH, C3 = 3 * C
    let scale = 1 / Float(hs).squareRoot()
    Parallel.chunksCallingBLAS(B * NH) { piece, heads in
        let scratch = scratch + piece * T * T
        for bh in heads {
            let b = bh / NH, h = bh % NH
            let q = qkv + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
            let dq = dqkv + b * T * C3 + h * hs, dk = dq + C, dv = dq + 2 * C
            let a = att + (b * NH + h) * T * T
            let dy = dout + b * T * C + h * hs
            // blocks from the last: it covers every key row, so its dK, dV products initialise them (beta 0)
            var r1 = T
            while r1 > 0 {
                let r0 = (r1 - 1) / block * block, rb = r1 - r0
                let first: Float = r1 == T ? 0 : 1
                let ab = a + r0 * T, db = scratch + r0 * T
                // datt (rb, r1) = dy @ V^T ; dV (r1, hs) += att^T @ dy
                sgemm(transA: false, transB: true, m: rb, n: r1, k: hs, a: dy + r0 * C, lda: C, b: v, ldb: C3,
                      beta: 0, c: db, ldc: T)
                sgemm(transA: true, transB: false, m: r1, n: hs, k: rb, a: ab, lda: T, b: dy + r0 * C, ldb: C,
                      beta: first, c: dv, ldc: C3)
                // softmax backward in place: dpre = att * (datt - sum(att * datt)), zero above the diagonal
                for t in r0..<r1 {
                    let arow = a + t * T, drow = scratch + t * T
                    let dotp = vdot(arow, drow, t + 1)
                    var i = 0
                    let d8 = F8(repeating: dotp)
                    while i + 8 <= t + 1 { store8(load8(arow + i) * (load8(drow + i) - d8), drow + i); i += 8 }
                    while i <= t { drow[i] = arow[i] * (drow[i] - dotp); i += 1 }
                    if t + 1 < r1 { (drow + t + 1).update(repeating: 0, count: r1 - t - 1) }
                }
                // dQ (rb, hs) = scale * dpre @ K ; dK (r1, hs) += scale * dpre^T @ Q
                sgemm(transA: false, transB: false, m: rb, n: hs, k: r1, alpha: scale, a: db, lda: T, b: k, ldb: C3,
                      beta: 0, c: dq + r0 * C3, ldc: C3)
                sgemm(transA: true, transB: false, m: r1, n: hs, k: rb, alpha: scale, a: db, lda: T, b: q + r0 * C3, ldb: C3,
                      beta: first, c: dk, ldc: C3)
                r1 = r0
            }
        }
    }
}

// MARK: GELU (tanh approximation, as GPT-2)

let geluScale: Float = 0.7978845608028654  // sqrt(2/pi)

/// out (N) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); with `derivative`, also gelu'(inp) (N), which may alias
/// inp: training keeps the derivative instead of the input, so backward is one multiply and needs no second tanh
func geluForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ N: Int,
                 derivative: UnsafeMutablePointer<Float>? = nil) {
    Parallel.chunks(N / 8, minPerWorker: 2048) { _, r in
        let o = 8 * r.lowerBound
        geluForwardSpan(out + o, inp + o, 8 * r.count, derivative.map { $0 + o })
    }
    let done = N / 8 * 8
    geluForwardSpan(out + done, inp + done, N - done, derivative.map { $0 + done })
}

private func geluForwardSpan(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ N: Int,
                             _ derivative: UnsafeMutablePointer<Float>?) {
    var i = 0
    while i + 8 <= N {
        let x = load8(inp + i)
        let x2: F8 = x * x
        let u: F8 = (x + 0.044715 * x2 * x) * geluScale
        let th = tanh8(u)
        let half: F8 = 0.5 * x
        store8(half * (1 + th), out + i)
        if let derivative {
            let sech2: F8 = 1 - th * th
            let du: F8 = (1 + 0.134145 * x2) * geluScale
            let left: F8 = 0.5 * (1 + th)
            store8(left + half * sech2 * du, derivative + i)
        }
        i += 8
    }
    while i < N {
        let x = inp[i]
        let th = tanhScalar(geluScale * (x + 0.044715 * x * x * x))
        out[i] = 0.5 * x * (1 + th)
        derivative?[i] = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * geluScale * (1 + 0.134145 * x * x)
        i += 1
    }
}

/// dinp (N) = derivative * dout, with the derivative saved by geluForward; dinp may alias dout
func geluBackward(_ dinp: UnsafeMutablePointer<Float>, _ derivative: UnsafePointer<Float>, _ dout: UnsafePointer<Float>, _ N: Int) {
    Parallel.chunks(N / 8, minPerWorker: 4096) { _, r in
        for blk in r { let k = 8 * blk; store8(load8(derivative + k) * load8(dout + k), dinp + k) }
    }
    for k in (N / 8 * 8)..<N { dinp[k] = derivative[k] * dout[k] }
}

// MARK: log-probabilities of targets

/// probs (N,V) overwrites the logits in place; logprobs, entropy (N); targets (N), a negative target gives logprob 0
func logprobForward(_ probs: UnsafeMutablePointer<Float>, _ logprobs: UnsafeMutablePointer<Float>, _ entropy: UnsafeMutablePointer<Float>,
                    _ targets: UnsafePointer<Int32>, _ N: Int, _ V: Int) {
    Parallel.chunks(N, minPerWorker: 64) { _, rows in
    for n in rows {
        let z = probs + n * V
        let target = Int(targets[n])
        let zt = target >= 0 ? z[target] : 0
        let mx = vmax(z, V)
        // one pass: e = exp(z - max), accumulating sum(e) and sum(e * z) for the entropy
        var s8 = F8(), sz8 = F8(), i = 0
        let m8 = F8(repeating: mx)
        while i + 8 <= V {
            let zi = load8(z + i)
            let e = exp8(zi - m8)
            store8(e, z + i); s8 += e; sz8 += e * zi; i += 8
        }
        var s = s8.sum(), sz = sz8.sum()
        while i < V { let zi = z[i]; let e = expScalar(zi - mx); z[i] = e; s += e; sz += e * zi; i += 1 }
        let lse = mx + Float(log(Double(s)))
        vscale(z, V, 1 / s)
        logprobs[n] = target >= 0 ? zt - lse : 0
        entropy[n] = lse - sz / s
    }
    }
}

/// probs (N,V) overwrites the logits with the sampling distribution q of `distribution` (tempered, cut to the sampler's
/// support, renormalised; 0 outside the support); logprobs, entropy (N) under q; targets (N), a negative target gives
/// logprob 0. A target outside the support (a token an older policy sampled) joins it, so it keeps a finite log-prob
/// and a gradient; on-policy that never happens, as the sampler only draws from the support. Needs temperature > 0.
func distributionLogprobForward(_ probs: UnsafeMutablePointer<Float>, _ logprobs: UnsafeMutablePointer<Float>,
                                _ entropy: UnsafeMutablePointer<Float>, _ targets: UnsafePointer<Int32>, _ N: Int, _ V: Int,
                                _ distribution: TokenDistribution) {
    let invT = 1 / distribution.temperature
    Parallel.chunks(N, minPerWorker: 16) { _, rows in
        let order = UnsafeMutablePointer<Int>.allocate(capacity: V)
        defer { order.deallocate() }
        for n in rows {
            let z = probs + n * V
            let target = Int(targets[n])
            let zt = target >= 0 ? z[target] : 0
            var (kept, total, ranked, mx) = distribution.weights(z, V, probs: z, order: order)
            if ranked {
                if target >= 0, let r = (kept..<V).first(where: { order[$0] == target }) {
                    order[r] = order[kept]; order[kept] = target
                    total += Double(z[target]); kept += 1
                }
                for r in kept..<V { z[order[r]] = 0 }
            }
            // log q(target) from the logit itself, not log(weight): finite even where the weight underflows to 0
            logprobs[n] = target >= 0 ? Float(Double((zt - mx) * invT) - log(total)) : 0
            var h = 0.0
            for i in 0..<V {
                guard z[i] > 0 else { continue }
                let q = Double(z[i]) / total
                h -= q * log(q)
                z[i] = Float(q)
            }
            entropy[n] = Float(h)
        }
    }
}

/// dlogits (N,V) overwrites probs in place: d logprob[target] / d logits = scale * (onehot(target) - probs), times
/// dlogprobs * mask; scale is 1 / temperature when the logits were tempered (probs are 0 outside a truncated support)
func logprobBackward(_ dlogits: UnsafeMutablePointer<Float>, _ dlogprobs: UnsafePointer<Float>, _ mask: UnsafePointer<Float>,
                     _ targets: UnsafePointer<Int32>, _ N: Int, _ V: Int, scale: Float = 1) {
    Parallel.chunks(N, minPerWorker: 64) { _, rows in
    for n in rows {
        let row = dlogits + n * V
        let g = dlogprobs[n] * mask[n] * scale
        let target = Int(targets[n])
        if g == 0 || target < 0 {
            row.update(repeating: 0, count: V)
            continue
        }
        vscale(row, V, -g)
        row[target] += g
    }
    }
}

/// The shapes and ids a training pass needs, for every architecture (the learner validates messages before this).
func checkTrainingBatch(tokens: [Int32], targets: [Int32], B: Int, T: Int, contextLength: Int, vocabSize: Int) {
    precondition(B >= 1 && T >= 1 && T <= contextLength, "forward: need 1 <= T <= contextLength, got B=\(B) T=\(T)")
    precondition(tokens.count == B * T && targets.count == B * T, "forward: tokens and targets must hold B*T = \(B * T) entries")
    let V = Int32(vocabSize)
    precondition(tokens.allSatisfy { $0 >= 0 && $0 < V }, "forward: token out of range 0..<\(V)")
    precondition(targets.allSatisfy { $0 < V }, "forward: target out of range ..<\(V)")
}

/// log q(target) and entropy per position of logits (N,V) held in `probs`, which become the probabilities q of
/// `distribution` (what backward starts from); the plain log-softmax when the distribution is plain.
/// Returns the scale backward must apply to the logits' gradient (1 / temperature).
func logprobsAndEntropy(_ probs: UnsafeMutablePointer<Float>, targets: [Int32], _ N: Int, _ V: Int,
                        distribution: TokenDistribution = .plain) -> (logprobs: [Float], entropy: [Float], logitScale: Float) {
    var logprobs = [Float](repeating: 0, count: N)
    var entropy = [Float](repeating: 0, count: N)
    let plain = distribution.isPlain(vocabSize: V)
    targets.withUnsafeBufferPointer { tg in
        logprobs.withUnsafeMutableBufferPointer { lp in
            entropy.withUnsafeMutableBufferPointer { en in
                if plain {
                    logprobForward(probs, lp.baseAddress!, en.baseAddress!, tg.baseAddress!, N, V)
                } else {
                    distributionLogprobForward(probs, lp.baseAddress!, en.baseAddress!, tg.baseAddress!, N, V, distribution)
                }
            }
        }
    }
    return (logprobs, entropy, plain ? 1 : 1 / distribution.temperature)
}
