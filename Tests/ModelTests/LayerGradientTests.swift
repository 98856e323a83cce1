import Testing
@testable import Model

// Finite-difference checks of each layer's backward against its forward: loss = sum(out * R) for a random R.
@Suite struct LayerGradientTests {
    let eps: Float = 1e-2
    let tolerance: Float = 2e-2

    @Test func layernorm() {
        let N = 3, C = 20
        var inp = randomFloats(N * C, seed: 1), weight = randomFloats(C, seed: 2), bias = randomFloats(C, seed: 3)
        let r = randomFloats(N * C, seed: 4)
        func forward(_ inp: [Float], _ weight: [Float], _ bias: [Float]) -> ([Float], [Float], [Float]) {
            var out = [Float](repeating: 0, count: N * C), mean = [Float](repeating: 0, count: N), rstd = mean
            layernormForward(&out, &mean, &rstd, inp, weight, bias, N, C)
            return (out, mean, rstd)
        }
        let (_, mean, rstd) = forward(inp, weight, bias)
        var dinp = [Float](repeating: 0, count: N * C), dw = [Float](repeating: 0, count: C), db = dw
        layernormBackward(&dinp, &dw, &db, r, inp, weight, mean, rstd, N, C)
        let ni = numericGradient(&inp, indices: Array(0..<(N * C)), eps: eps) { dot(forward($0, weight, bias).0, r) }
        #expect(maxRelativeError(dinp, ni) < tolerance)
        let nw = numericGradient(&weight, indices: Array(0..<C), eps: eps) { dot(forward(inp, $0, bias).0, r) }
        #expect(maxRelativeError(dw, nw) < tolerance)
        let nb = numericGradient(&bias, indices: Array(0..<C), eps: eps) { dot(forward(inp, weight, $0).0, r) }
        #expect(maxRelativeError(db, nb) < tolerance)
    }

    /// 5 rows take the decoding path (column blocks over workers), 70 rows the plain product.
    @Test(arguments: [5, 70]) func matmul(rows N: Int) {
        let C = 7, OC = 9
        var inp = randomFloats(N * C, seed: 5), weight = randomFloats(C * OC, seed: 6), bias = randomFloats(OC, seed: 7)
        let r = randomFloats(N * OC, seed: 8)
        func forward(_ inp: [Float], _ weight: [Float], _ bias: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: N * OC)
            matmulForward(&out, inp, weight, bias, N, C, OC)
            return out
        }
        var dinp = [Float](repeating: 0, count: N * C), dw = [Float](repeating: 0, count: C * OC), db = [Float](repeating: 0, count: OC)
        matmulBackward(&dinp, &dw, &db, r, inp, weight, N, C, OC)
        // the bias gradient as a product with ones gives the same sums
        var dinp2 = dinp, dw2 = dw, db2 = [Float](repeating: 0, count: OC)
        matmulBackward(&dinp2, &dw2, &db2, r, inp, weight, N, C, OC, ones: [Float](repeating: 1, count: N))
        #expect(maxRelativeError(db2, db, floor: 1e-3) < 1e-5)
        #expect(maxRelativeError(dinp, numericGradient(&inp, indices: Array(0..<(N * C)), eps: eps) { dot(forward($0, weight, bias), r) }) < tolerance)
        #expect(maxRelativeError(dw, numericGradient(&weight, indices: Array(0..<(C * OC)), eps: eps) { dot(forward(inp, $0, bias), r) }) < tolerance)
        #expect(maxRelativeError(db, numericGradient(&bias, indices: Array(0..<OC), eps: eps) { dot(forward(inp, weight, $0), r) }) < tolerance)
        // the fused residual form adds onto what is there
        var acc = [Float](repeating: 1, count: N * OC)
        matmulForward(&acc, inp, weight, bias, N, C, OC, accumulate: true)
        #expect(maxRelativeError(acc, forward(inp, weight, bias).map { $0 + 1 }, floor: 1) < 1e-5)
    }

    /// Wide outputs split into several column blocks (decoding path) and the plain product both match a naive loop.
    @Test(arguments: [3, 80]) func matmulMatchesNaive(rows N: Int) {
        let C = 40, OC = 300
        let inp = randomFloats(N * C, seed: 30), weight = randomFloats(C * OC, seed: 31), bias = randomFloats(OC, seed: 32)
        var out = [Float](repeating: 0, count: N * OC)
        matmulForward(&out, inp, weight, bias, N, C, OC)
        var worst: Float = 0
        for n in 0..<N {
            for o in 0..<OC {
                var acc = Double(bias[o])
                for c in 0..<C { acc += Double(inp[n * C + c]) * Double(weight[c * OC + o]) }
                worst = max(worst, abs(out[n * OC + o] - Float(acc)))
            }
        }
        #expect(worst < 1e-4)
    }

    /// Blocks of 3 query rows exercise the causal block split that the real sizes use.
    @Test(arguments: [3, 64]) func attention(block: Int) {
        let B = 2, T = 7, C = 8, NH = 2
        var qkv = randomFloats(B * T * 3 * C, seed: 9)
        let r = randomFloats(B * T * C, seed: 10)
        func forward(_ qkv: [Float]) -> ([Float], [Float]) {
            var out = [Float](repeating: 0, count: B * T * C), att = [Float](repeating: 0, count: B * NH * T * T)
            attentionForward(&out, &att, qkv, B, T, C, NH, block: block)
            return (out, att)
        }
        let (out, att) = forward(qkv)
        var dqkv = [Float](repeating: 0, count: B * T * 3 * C), scratch = [Float](repeating: 0, count: Parallel.maxPieces * T * T)
        attentionBackward(&dqkv, &scratch, r, qkv, att, B, T, C, NH, block: block)
        let n = numericGradient(&qkv, indices: Array(0..<(B * T * 3 * C)), eps: eps) { dot(forward($0).0, r) }
        #expect(maxRelativeError(dqkv, n) < tolerance)
        // causal: the first position attends only to itself, so its output is its own value vector
        for h in 0..<NH {
            for i in 0..<(C / NH) { #expect(abs(out[h * C / NH + i] - qkv[2 * C + h * C / NH + i]) < 1e-5) }
        }
        // rows of probabilities sum to one
        for row in 0..<(B * NH * T) {
            let t = row % T
            let s = att[(row * T)..<(row * T + t + 1)].reduce(0, +)
            #expect(abs(s - 1) < 1e-5)
        }
    }

    @Test func gelu() {
        let N = 37
        var inp = randomFloats(N, seed: 11, scale: 2)
        let r = randomFloats(N, seed: 12)
        func forward(_ inp: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: N)
            geluForward(&out, inp, N)
            return out
        }
        var out = [Float](repeating: 0, count: N), derivative = out
        geluForward(&out, inp, N, derivative: &derivative)
        #expect(out == forward(inp))
        var d = r
        geluBackward(&d, derivative, r, N)
        // the derivative may overwrite the input in place (training does)
        var inPlace = inp, out2 = out
        inPlace.withUnsafeMutableBufferPointer { p in geluForward(&out2, p.baseAddress!, N, derivative: p.baseAddress!) }
        #expect(out2 == out)
        #expect(inPlace == derivative)
        #expect(maxRelativeError(d, numericGradient(&inp, indices: Array(0..<N), eps: 1e-3) { dot(forward($0), r) }) < tolerance)
        // against the scalar formula with Foundation's tanh
        for i in 0..<N {
            let x = Double(inp[i])
            let ref = 0.5 * x * (1 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
            #expect(abs(Double(out[i]) - ref) < 1e-5)
        }
    }

    @Test func logprobs() {
        let N = 4, V = 11
        var logits = randomFloats(N * V, seed: 13, scale: 3)
        let targets: [Int32] = [0, 5, 10, -1]
        let w = randomFloats(N, seed: 14)
        let mask: [Float] = [1, 1, 0, 1]
        func forward(_ logits: [Float]) -> ([Float], [Float], [Float]) {
            var probs = logits, lp = [Float](repeating: 0, count: N), ent = lp
            logprobForward(&probs, &lp, &ent, targets, N, V)
            return (probs, lp, ent)
        }
        let (probs, lp, ent) = forward(logits)
        #expect(lp[3] == 0)
        for n in 0..<N {
            let row = logits[(n * V)..<(n * V + V)].map(Double.init)
            let lse = _log(row.map { _exp($0) }.reduce(0, +))
            if targets[n] >= 0 { #expect(abs(Double(lp[n]) - (row[Int(targets[n])] - lse)) < 1e-5) }
            let entropy = -row.map { _exp($0 - lse) * ($0 - lse) }.reduce(0, +)
            #expect(abs(Double(ent[n]) - entropy) < 1e-4)
        }
        var d = probs
        logprobBackward(&d, w, mask, targets, N, V)
        let masked = zip(w, mask).map { $0 * $1 }
        let n = numericGradient(&logits, indices: Array(0..<(N * V)), eps: 1e-3) { dot(forward($0).1, masked) }
        #expect(maxRelativeError(d, n) < tolerance)
    }

    @Test func encoder() {
        let B = 2, T = 3, C = 4, V = 5
        var wte = randomFloats(V * C, seed: 15), wpe = randomFloats(T * C, seed: 16)
        let tokens: [Int32] = [1, 4, 1, 0, 2, 4]
        let r = randomFloats(B * T * C, seed: 17)
        func forward(_ wte: [Float], _ wpe: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: B * T * C)
            encoderForward(&out, tokens, wte, wpe, B, T, C)
            return out
        }
        var dwte = [Float](repeating: 0, count: V * C), dwpe = [Float](repeating: 0, count: T * C)
        encoderBackward(&dwte, &dwpe, r, tokens, B, T, C)
        #expect(maxRelativeError(dwte, numericGradient(&wte, indices: Array(0..<(V * C)), eps: eps) { dot(forward($0, wpe), r) }) < tolerance)
        #expect(maxRelativeError(dwpe, numericGradient(&wpe, indices: Array(0..<(T * C)), eps: eps) { dot(forward(wte, $0), r) }) < tolerance)
    }
}

import Foundation
private func _tanh(_ x: Double) -> Double { tanh(x) }
private func _log(_ x: Double) -> Double { log(x) }
private func _exp(_ x: Double) -> Double { exp(x) }
