import Foundation

// The layers of the Llama family as plain forward/backward function pairs (after llm.c's train_gpt2.c).
// Shapes are row-major; Linear weights are (OC,C) as Hugging Face stores them; backward functions add into parameter
// gradients (and into dinp where the name says so).

// MARK: token embedding

/// out (N,C) = wte[tokens]; tokens (N), wte (V,C)
func embeddingForward(_ out: UnsafeMutablePointer<Float>, _ tokens: UnsafePointer<Int32>, _ wte: UnsafePointer<Float>, _ N: Int, _ C: Int) {
    for n in 0..<N { (out + n * C).update(from: wte + Int(tokens[n]) * C, count: C) }
}

/// dwte (V,C) += scatter of dout (N,C)
func embeddingBackward(_ dwte: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ tokens: UnsafePointer<Int32>, _ N: Int, _ C: Int) {
    for n in 0..<N { vadd(dwte + Int(tokens[n]) * C, dout + n * C, C) }
}

// MARK: RMSNorm

/// out (N,C) = inp * rstd * weight with rstd (N) = 1 / sqrt(mean(inp^2) + eps) kept for backward; weight (C)
func rmsnormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                    _ weight: UnsafePointer<Float>, _ N: Int, _ C: Int, eps: Float) {
    Parallel.chunks(N, minPerWorker: 64) { _, rows in
        for n in rows {
            let x = inp + n * C, o = out + n * C
            let s = 1 / (vdot(x, x, C) / Float(C) + eps).squareRoot()
            let s8 = F8(repeating: s)
            var i = 0
            while i + 8 <= C { store8(load8(x + i) * s8 * load8(weight + i), o + i); i += 8 }
            while i < C { o[i] = x[i] * s * weight[i]; i += 1 }
            rstd[n] = s
        }
    }
}

/// dinp (N,C) += ..., dweight (C) += ...; dout, inp (N,C); rstd (N) from the forward pass
func rmsnormBackward(_ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
                     _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ N: Int, _ C: Int) {
    if min(Parallel.workers, N / 64) <= 1 {
        rmsnormBackwardRows(dinp, dweight, dout, inp, weight, rstd, 0..<N, C)
        return
    }
    // weight gradients summed in per-piece partials, then added (pieces write disjoint rows of dinp)
    let pieces = Parallel.maxPieces
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: pieces * C)
    defer { partial.deallocate() }
    partial.update(repeating: 0, count: pieces * C)
    Parallel.chunks(N, minPerWorker: 64) { piece, rows in
        rmsnormBackwardRows(dinp, partial + piece * C, dout, inp, weight, rstd, rows, C)
    }
    for k in 0..<pieces { vadd(dweight, partial + k * C, C) }
}

private func rmsnormBackwardRows(_ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
                                 _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>,
                                 _ rows: Range<Int>, _ C: Int) {
    for n in rows {
        let dy = dout + n * C, x = inp + n * C, dx = dinp + n * C
        let s = rstd[n]
        // d/dx_i of x_i s w_i summed against dy: s w_i dy_i - x_i s^3 / C * sum_j w_j dy_j x_j
        var acc = F8(), i = 0
        while i + 8 <= C { acc += load8(weight + i) * load8(dy + i) * load8(x + i); i += 8 }
        var dot = acc.sum()
        while i < C { dot += weight[i] * dy[i] * x[i]; i += 1 }
        let k = dot * s * s * s / Float(C)
        let s8 = F8(repeating: s), k8 = F8(repeating: k)
        i = 0
        while i + 8 <= C {
            let g = load8(dy + i), xi = load8(x + i)
            store8(load8(dweight + i) + g * xi * s8, dweight + i)
            store8(load8(dx + i) + load8(weight + i) * g * s8 - xi * k8, dx + i)
            i += 8
        }
        while i < C {
            dweight[i] += dy[i] * x[i] * s
            dx[i] += weight[i] * dy[i] * s - x[i] * k
            i += 1
        }
    }
}

// MARK: linear (Hugging Face nn.Linear: weight (OC,C))

/// out (N,OC) = inp (N,C) @ weight^T + bias (OC); with accumulate, out += instead (fused residual add)
func linearForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                   _ bias: UnsafePointer<Float>?, _ N: Int, _ C: Int, _ OC: Int, accumulate: Bool = false, parallel: Bool = true) {
    if let bias {
        for n in 0..<N {
            let o = out + n * OC
            if accumulate { vadd(o, bias, OC) } else { o.update(from: bias, count: OC) }
        }
    }
    let beta: Float = (bias != nil || accumulate) ? 1 : 0
    if N > skinnyRows {
        sgemm(transA: false, transB: true, m: N, n: OC, k: C, a: inp, lda: C, b: weight, ldb: C, beta: beta, c: out, ldc: OC)
        return
    }
    // few rows (decoding): blocks of weight rows over the workers, each on OpenBLAS's small-matrix path (see skinnyRows)
    let width = skinnyBlockWidth(rows: N, depth: C)
    let blocks = (OC + width - 1) / width
    let body = { (range: Range<Int>) in
        for blk in range {
            let j0 = blk * width, n = min(width, OC - j0)
            sgemm(transA: false, transB: true, m: N, n: n, k: C, a: inp, lda: C, b: weight + j0 * C, ldb: C, beta: beta, c: out + j0, ldc: OC)
        }
    }
    if parallel { Parallel.chunksCallingBLAS(blocks) { _, range in body(range) } } else { body(0..<blocks) }
}

/// dinp (N,C) = (or += with accumulateInput) dout (N,OC) @ weight; dweight (OC,C) += dout^T @ inp; dbias (OC) += column
/// sums of dout, as the product ones (1,N) @ dout
func linearBackward(_ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>, _ dbias: UnsafeMutablePointer<Float>?,
                    _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                    _ N: Int, _ C: Int, _ OC: Int, ones: UnsafePointer<Float>, accumulateInput: Bool = false) {
    sgemm(transA: false, transB: false, m: N, n: C, k: OC, a: dout, lda: OC, b: weight, ldb: C,
          beta: accumulateInput ? 1 : 0, c: dinp, ldc: C)
    sgemm(transA: true, transB: false, m: OC, n: C, k: N, a: dout, lda: OC, b: inp, ldb: C, beta: 1, c: dweight, ldc: C)
    if let dbias {
        sgemm(transA: false, transB: false, m: 1, n: OC, k: N, a: ones, lda: N, b: dout, ldb: OC, beta: 1, c: dbias, ldc: OC)
    }
}

// MARK: rotary position embeddings (Hugging Face's rotate_half convention: pairs (i, i + hd/2))

/// inv_freq (hd/2) as transformers computes it in float32, with Llama 3's frequency-dependent scaling when given.
func ropeInverseFrequencies(_ c: LlamaConfig) -> [Float] {
    let half = c.headDim / 2
    var inv = (0..<half).map { i in 1 / Float(pow(c.ropeTheta, Double(Float(2 * i) / Float(c.headDim)))) }
    if let s = c.ropeScaling {
        let old = Double(s.originalContextLength)
        let lowWavelen = old / s.lowFreqFactor, highWavelen = old / s.highFreqFactor
        inv = inv.map { f in
            let wavelen = 2 * Double.pi / Double(f)
            if wavelen < highWavelen { return f }
            if wavelen > lowWavelen { return Float(Double(f) / s.factor) }
            let smooth = (old / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
            return Float((1 - smooth) * Double(f) / s.factor + smooth * Double(f))
        }
    }
    return inv
}

/// cos, sin (N,hd/2) for the given positions (N): angle = position * inv_freq in float32, as transformers does
func ropeTables(_ cos: UnsafeMutablePointer<Float>, _ sin: UnsafeMutablePointer<Float>, positions: [Int], invFreq: [Float]) {
    let half = invFreq.count
    for (n, p) in positions.enumerated() {
        for i in 0..<half {
            let angle = Double(Float(p) * invFreq[i])
            cos[n * half + i] = Float(Foundation.cos(angle))
            sin[n * half + i] = Float(Foundation.sin(angle))
        }
    }
}

/// Rotates in place the first `heads` heads (hd each) of every row of x (N rows, `stride` floats apart); row n uses
/// row n % T of cos, sin (T,hd/2): out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin
func ropeForward(_ x: UnsafeMutablePointer<Float>, stride: Int, _ N: Int, heads: Int, _ hd: Int,
                 _ cos: UnsafePointer<Float>, _ sin: UnsafePointer<Float>, _ T: Int) {
    let half = hd / 2
    Parallel.chunks(N, minPerWorker: 64) { _, rows in
        for n in rows {
            let c = cos + (n % T) * half, s = sin + (n % T) * half
            for h in 0..<heads {
                let a = x + n * stride + h * hd, b = a + half
                for i in 0..<half {
                    let x1 = a[i], x2 = b[i]
                    a[i] = x1 * c[i] - x2 * s[i]
                    b[i] = x2 * c[i] + x1 * s[i]
                }
            }
        }
    }
}

/// The rotation's transpose, in place on the gradient dx (same layout as ropeForward): the rotation is linear and
/// orthogonal, so backward needs only the tables
func ropeBackward(_ dx: UnsafeMutablePointer<Float>, stride: Int, _ N: Int, heads: Int, _ hd: Int,
                  _ cos: UnsafePointer<Float>, _ sin: UnsafePointer<Float>, _ T: Int) {
    let half = hd / 2
    Parallel.chunks(N, minPerWorker: 64) { _, rows in
        for n in rows {
            let c = cos + (n % T) * half, s = sin + (n % T) * half
            for h in 0..<heads {
                let a = dx + n * stride + h * hd, b = a + half
                for i in 0..<half {
                    let d1 = a[i], d2 = b[i]
                    a[i] = d1 * c[i] + d2 * s[i]
                    b[i] = d2 * c[i] - d1 * s[i]
                }
            }
        }
    }
}

// MARK: SwiGLU

/// out (N,I) = silu(gate) * up with gateUp (N,2I) = [gate | up] per row; silu(g) = g / (1 + exp(-g))
func swigluForward(_ out: UnsafeMutablePointer<Float>, _ gateUp: UnsafePointer<Float>, _ N: Int, _ I: Int) {
    Parallel.chunks(N, minPerWorker: 16) { _, rows in
        for n in rows {
            let g = gateUp + n * 2 * I, u = g + I, o = out + n * I
            var i = 0
            while i + 8 <= I {
                let x = load8(g + i)
                store8(x / (1 + exp8(-x)) * load8(u + i), o + i)
                i += 8
            }
            while i < I { let x = g[i]; o[i] = x / (1 + expScalar(-x)) * u[i]; i += 1 }
        }
    }
}

/// dgateUp (N,2I) is overwritten from dout (N,I) and the forward input gateUp: d gate = dout up sig (1 + g (1 - sig)),
/// d up = dout silu(g)
func swigluBackward(_ dgateUp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, _ gateUp: UnsafePointer<Float>, _ N: Int, _ I: Int) {
    Parallel.chunks(N, minPerWorker: 16) { _, rows in
        for n in rows {
            let g = gateUp + n * 2 * I, u = g + I, dy = dout + n * I
            let dg = dgateUp + n * 2 * I, du = dg + I
            var i = 0
            while i + 8 <= I {
                let x = load8(g + i), d = load8(dy + i)
                let sig: F8 = 1 / (1 + exp8(-x))
                store8(d * load8(u + i) * sig * (1 + x * (1 - sig)), dg + i)
                store8(d * x * sig, du + i)
                i += 8
            }
            while i < I {
                let x = g[i], sig = 1 / (1 + expScalar(-x))
                dg[i] = dy[i] * u[i] * sig * (1 + x * (1 - sig))
                du[i] = dy[i] * x * sig
                i += 1
            }
        }
    }
}

// MARK: grouped-query attention

/// out (B,T,NH*hd) from qkv (B,T,QKV), QKV = (NH+2NKV)*hd laid out [q heads | k heads | v heads], with causal softmax;
/// query head h reads key/value head h / (NH/NKV); att (B,NH,T,T) keeps the probabilities (zero above the diagonal)
func gqaAttentionForward(_ out: UnsafeMutablePointer<Float>, _ att: UnsafeMutablePointer<Float>, _ qkv: UnsafePointer<Float>,
                         _ B: Int, _ T: Int, _ NH: Int, _ NKV: Int, _ hd: Int, block: Int = attentionBlock) {
    let QKV = (NH + 2 * NKV) * hd, OC = NH * hd, group = NH / NKV
    let scale = 1 / Float(hd).squareRoot()
    Parallel.chunksCallingBLAS(B * NH) { _, heads in
        for bh in heads {
            let b = bh / NH, h = bh % NH, kvh = h / group
            let row0 = qkv + b * T * QKV
            let q = row0 + h * hd, k = row0 + (NH + kvh) * hd, v = row0 + (NH + NKV + kvh) * hd
            let a = att + (b * NH + h) * T * T
            let o = out + b * T * OC + h * hd
            var r0 = 0
            while r0 < T {
                let r1 = min(T, r0 + block), rb = r1 - r0
                sgemm(transA: false, transB: true, m: rb, n: r1, k: hd, alpha: scale, a: q + r0 * QKV, lda: QKV,
                      b: k, ldb: QKV, beta: 0, c: a + r0 * T, ldc: T)
                for t in r0..<r1 {
                    let row = a + t * T
                    let mx = vmax(row, t + 1)
                    let s = vexpShiftSum(row, t + 1, shift: mx)
                    vscale(row, t + 1, 1 / s)
                    if t + 1 < r1 { (row + t + 1).update(repeating: 0, count: r1 - t - 1) }
                }
                sgemm(transA: false, transB: false, m: rb, n: hd, k: r1, a: a + r0 * T, lda: T,
                      b: v, ldb: QKV, beta: 0, c: o + r0 * OC, ldc: OC)
                r0 = r1
            }
        }
    }
}

/// dqkv (B,T,QKV) is overwritten; scratch (Parallel.maxPieces,T,T); dout (B,T,NH*hd); qkv, att as saved by the forward
/// pass. Work is split by (batch, kv head) so that the query heads sharing a key/value head add into it in turn.
func gqaAttentionBackward(_ dqkv: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>,
                          _ dout: UnsafePointer<Float>, _ qkv: UnsafePointer<Float>, _ att: UnsafePointer<Float>,
                          _ B: Int, _ T: Int, _ NH: Int, _ NKV: Int, _ hd: Int, block: Int = attentionBlock) {
    let QKV = (NH + 2 * NKV) * hd, OC = NH * hd, group = NH / NKV
    let scale = 1 / Float(hd).squareRoot()
    Parallel.chunksCallingBLAS(B * NKV) { piece, kvGroups in
        let scratch = scratch + piece * T * T
        for bk in kvGroups {
            let b = bk / NKV, kvh = bk % NKV
            let row0 = qkv + b * T * QKV, drow0 = dqkv + b * T * QKV
            let k = row0 + (NH + kvh) * hd, v = row0 + (NH + NKV + kvh) * hd
            let dk = drow0 + (NH + kvh) * hd, dv = drow0 + (NH + NKV + kvh) * hd
            for t in 0..<T { (dk + t * QKV).update(repeating: 0, count: hd); (dv + t * QKV).update(repeating: 0, count: hd) }
            for h in (kvh * group)..<((kvh + 1) * group) {
                let q = row0 + h * hd, dq = drow0 + h * hd
                let a = att + (b * NH + h) * T * T
                let dy = dout + b * T * OC + h * hd
                var r1 = T
                while r1 > 0 {
                    let r0 = (r1 - 1) / block * block, rb = r1 - r0
                    let ab = a + r0 * T, db = scratch + r0 * T
                    // datt (rb, r1) = dy @ V^T ; dV (r1, hd) += att^T @ dy
                    sgemm(transA: false, transB: true, m: rb, n: r1, k: hd, a: dy + r0 * OC, lda: OC, b: v, ldb: QKV,
                          beta: 0, c: db, ldc: T)
                    sgemm(transA: true, transB: false, m: r1, n: hd, k: rb, a: ab, lda: T, b: dy + r0 * OC, ldb: OC,
                          beta: 1, c: dv, ldc: QKV)
                    // softmax backward in place: dpre = att * (datt - sum(att * datt)), zero above the diagonal
                    for t in r0..<r1 {
                        let arow = a + t * T, drow = scratch + t * T
                        let dotp = vdot(arow, drow, t + 1)
                        for i in 0...t { drow[i] = arow[i] * (drow[i] - dotp) }
                        if t + 1 < r1 { (drow + t + 1).update(repeating: 0, count: r1 - t - 1) }
                    }
                    // dQ (rb, hd) = scale * dpre @ K ; dK (r1, hd) += scale * dpre^T @ Q
                    sgemm(transA: false, transB: false, m: rb, n: hd, k: r1, alpha: scale, a: db, lda: T, b: k, ldb: QKV,
                          beta: 0, c: dq + r0 * QKV, ldc: QKV)
                    sgemm(transA: true, transB: false, m: r1, n: hd, k: rb, alpha: scale, a: db, lda: T, b: q + r0 * QKV, ldb: QKV,
                          beta: 1, c: dk, ldc: QKV)
                    r1 = r0
                }
            }
        }
    }
}
