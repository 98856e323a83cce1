import Foundation
import Testing
@testable import Model
import ModelAgreement

// Finite-difference checks of each Llama layer's backward against its forward (loss = sum(out * R) for a random R),
// then of the whole model. Central differences in float32 with eps 1e-2: agreement within 2e-2 relative (floor 1e-2).
@Suite struct LlamaLayerGradientTests {
    let eps: Float = 1e-2
    let tolerance: Float = 2e-2

    @Test func rmsnorm() {
        let N = 3, C = 20
        var inp = randomFloats(N * C, seed: 1), weight = randomFloats(C, seed: 2)
        let r = randomFloats(N * C, seed: 4)
        func forward(_ inp: [Float], _ weight: [Float]) -> ([Float], [Float]) {
            var out = [Float](repeating: 0, count: N * C), rstd = [Float](repeating: 0, count: N)
            rmsnormForward(&out, &rstd, inp, weight, N, C, eps: 1e-5)
            return (out, rstd)
        }
        let (out, rstd) = forward(inp, weight)
        // against the definition in double
        for n in 0..<N {
            let x = inp[(n * C)..<((n + 1) * C)].map(Double.init)
            let s = 1 / (x.map { $0 * $0 }.reduce(0, +) / Double(C) + 1e-5).squareRoot()
            for i in 0..<C { #expect(abs(Double(out[n * C + i]) - x[i] * s * Double(weight[i])) < 1e-5) }
        }
        // dinp is added to what is there
        var dinp = [Float](repeating: 0.5, count: N * C), dw = [Float](repeating: 0, count: C)
        rmsnormBackward(&dinp, &dw, r, inp, weight, rstd, N, C)
        let ni = numericGradient(&inp, indices: Array(0..<(N * C)), eps: eps) { dot(forward($0, weight).0, r) }
        #expect(maxRelativeError(dinp.map { $0 - 0.5 }, ni) < tolerance)
        let nw = numericGradient(&weight, indices: Array(0..<C), eps: eps) { dot(forward(inp, $0).0, r) }
        #expect(maxRelativeError(dw, nw) < tolerance)
    }

    /// 5 rows take the decoding path (blocks of weight rows over workers), 70 rows the plain product.
    @Test(arguments: [5, 70]) func linear(rows N: Int) {
        let C = 7, OC = 9
        var inp = randomFloats(N * C, seed: 5), weight = randomFloats(OC * C, seed: 6), bias = randomFloats(OC, seed: 7)
        let r = randomFloats(N * OC, seed: 8)
        func forward(_ inp: [Float], _ weight: [Float], _ bias: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: N * OC)
            linearForward(&out, inp, weight, bias, N, C, OC)
            return out
        }
        // against a naive loop with the (OC,C) layout
        let out = forward(inp, weight, bias)
        var worst: Float = 0
        for n in 0..<N {
            for o in 0..<OC {
                var acc = Double(bias[o])
                for c in 0..<C { acc += Double(inp[n * C + c]) * Double(weight[o * C + c]) }
                worst = max(worst, abs(out[n * OC + o] - Float(acc)))
            }
        }
        #expect(worst < 1e-4)
        var dinp = [Float](repeating: 0, count: N * C), dw = [Float](repeating: 0, count: OC * C), db = [Float](repeating: 0, count: OC)
        linearBackward(&dinp, &dw, &db, r, inp, weight, N, C, OC, ones: [Float](repeating: 1, count: N))
        #expect(maxRelativeError(dinp, numericGradient(&inp, indices: Array(0..<(N * C)), eps: eps) { dot(forward($0, weight, bias), r) }) < tolerance)
        #expect(maxRelativeError(dw, numericGradient(&weight, indices: Array(0..<(C * OC)), eps: eps) { dot(forward(inp, $0, bias), r) }) < tolerance)
        #expect(maxRelativeError(db, numericGradient(&bias, indices: Array(0..<OC), eps: eps) { dot(forward(inp, weight, $0), r) }) < tolerance)
        var acc = [Float](repeating: 1, count: N * OC)
        linearForward(&acc, inp, weight, nil, N, C, OC, accumulate: true)
        var noBias = [Float](repeating: 0, count: N * OC)
        linearForward(&noBias, inp, weight, nil, N, C, OC)
        #expect(maxRelativeError(acc, noBias.map { $0 + 1 }, floor: 1) < 1e-5)
    }

    /// Rotation of 3 q heads and 2 k heads (stride 7 heads per row) by positions 0..<T, v heads untouched.
    @Test func rope() {
        let T = 5, hd = 8, heads = 3 + 2, stride = 7 * hd, N = 2 * T
        let invFreq = ropeInverseFrequencies(tinyLlamaConfig())
        var cos = [Float](repeating: 0, count: T * hd / 2), sin = cos
        ropeTables(&cos, &sin, positions: Array(0..<T), invFreq: invFreq)
        var x = randomFloats(N * stride, seed: 11)
        let r = randomFloats(N * stride, seed: 12)
        func forward(_ x: [Float]) -> [Float] {
            var y = x
            ropeForward(&y, stride: stride, N, heads: heads, hd, cos, sin, T)
            return y
        }
        let y = forward(x)
        // a rotation keeps each pair's norm; untouched heads stay bit-identical
        for n in 0..<N {
            for h in 0..<heads {
                for i in 0..<(hd / 2) {
                    let a = n * stride + h * hd + i, b = a + hd / 2
                    #expect(abs((x[a] * x[a] + x[b] * x[b]) - (y[a] * y[a] + y[b] * y[b])) < 1e-4)
                }
            }
            #expect(Array(x[(n * stride + heads * hd)..<((n + 1) * stride)]) == Array(y[(n * stride + heads * hd)..<((n + 1) * stride)]))
        }
        // position 0 is the identity
        #expect(Array(y[0..<(heads * hd)]) == Array(x[0..<(heads * hd)]))
        var dx = r
        ropeBackward(&dx, stride: stride, N, heads: heads, hd, cos, sin, T)
        let numeric = numericGradient(&x, indices: Array(0..<(N * stride)), eps: eps) { dot(forward($0), r) }
        #expect(maxRelativeError(dx, numeric) < tolerance)
    }

    @Test func swiglu() {
        let N = 3, I = 11
        var gateUp = randomFloats(N * 2 * I, seed: 13, scale: 3)
        let r = randomFloats(N * I, seed: 14)
        func forward(_ gu: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: N * I)
            swigluForward(&out, gu, N, I)
            return out
        }
        let out = forward(gateUp)
        for n in 0..<N {
            for i in 0..<I {
                let g = Double(gateUp[n * 2 * I + i]), u = Double(gateUp[n * 2 * I + I + i])
                #expect(abs(Double(out[n * I + i]) - g / (1 + _exp(-g)) * u) < 1e-5 * max(1, abs(g * u)))
            }
        }
        var d = [Float](repeating: 0, count: N * 2 * I)
        swigluBackward(&d, r, gateUp, N, I)
        #expect(maxRelativeError(d, numericGradient(&gateUp, indices: Array(0..<(N * 2 * I)), eps: eps) { dot(forward($0), r) }) < tolerance)
    }

    /// 4 query heads over 2 key/value heads; blocks of 3 query rows exercise the causal block split.
    @Test(arguments: [3, 64]) func groupedQueryAttention(block: Int) {
        let B = 2, T = 7, NH = 4, NKV = 2, hd = 4, QKV = (NH + 2 * NKV) * hd, A = NH * hd
        var qkv = randomFloats(B * T * QKV, seed: 15)
        let r = randomFloats(B * T * A, seed: 16)
        func forward(_ qkv: [Float]) -> ([Float], [Float]) {
            var out = [Float](repeating: 0, count: B * T * A), att = [Float](repeating: 0, count: B * NH * T * T)
            gqaAttentionForward(&out, &att, qkv, B, T, NH, NKV, hd, block: block)
            return (out, att)
        }
        let (out, att) = forward(qkv)
        // against a naive causal softmax attention where head h reads kv head h / 2
        func at(_ b: Int, _ t: Int, _ col: Int) -> Double { Double(qkv[(b * T + t) * QKV + col]) }
        var worst: Double = 0
        for b in 0..<B {
            for h in 0..<NH {
                let kvh = h / 2, qCol = h * hd, kCol = (NH + kvh) * hd, vCol = (NH + NKV + kvh) * hd
                for t in 0..<T {
                    var scores: [Double] = []
                    for s in 0...t {
                        var acc = 0.0
                        for i in 0..<hd { acc += at(b, t, qCol + i) * at(b, s, kCol + i) }
                        scores.append(acc / 2)  // 1 / sqrt(hd)
                    }
                    let mx = scores.max()!
                    let e = scores.map { _exp($0 - mx) }
                    let z = e.reduce(0, +)
                    for i in 0..<hd {
                        var y = 0.0
                        for s in 0...t { y += e[s] / z * at(b, s, vCol + i) }
                        worst = max(worst, abs(y - Double(out[(b * T + t) * A + h * hd + i])))
                    }
                }
            }
        }
        #expect(worst < 1e-5)
        var dqkv = [Float](repeating: 9, count: B * T * QKV)  // overwritten, whatever was there
        var scratch = [Float](repeating: 0, count: Parallel.maxPieces * T * T)
        gqaAttentionBackward(&dqkv, &scratch, r, qkv, att, B, T, NH, NKV, hd, block: block)
        let numeric = numericGradient(&qkv, indices: Array(0..<(B * T * QKV)), eps: eps) { dot(forward($0).0, r) }
        #expect(maxRelativeError(dqkv, numeric) < tolerance)
    }

    @Test func embedding() {
        let N = 5, C = 3, V = 4
        let tokens: [Int32] = [0, 2, 2, 3, 0]
        var wte = randomFloats(V * C, seed: 17)
        let r = randomFloats(N * C, seed: 18)
        func forward(_ wte: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: N * C)
            embeddingForward(&out, tokens, wte, N, C)
            return out
        }
        var d = [Float](repeating: 0, count: V * C)
        embeddingBackward(&d, r, tokens, N, C)
        #expect(maxRelativeError(d, numericGradient(&wte, indices: Array(0..<(V * C)), eps: eps) { dot(forward($0), r) }) < tolerance)
        #expect(d[3..<6].allSatisfy { $0 == 0 })  // token 1 never appears
    }
}

@Suite struct LlamaModelGradientTests {
    /// Whole model: loss = sum(w * mask * logprob); backward against central differences on a sample of entries of every
    /// parameter tensor; for tied (llama, Llama 3 rope scaling) and untied with q/k/v biases (qwen2).
    @Test(arguments: [false, true]) func wholeModelFiniteDifferences(qwen: Bool) {
        let scaling = qwen ? nil : Llama3RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 4)
        var config = tinyLlamaConfig(bias: qwen, tied: !qwen, scaling: scaling)
        config.vocabSize = 13
        let model = noisyLlama(config, seed: 42)
        let B = 2, T = 6
        let tokens = randomTokens(B * T, seed: 2, below: 13), targets = randomTokens(B * T, seed: 3, below: 13)
        let w = randomFloats(B * T, seed: 4)
        var mask = [Float](repeating: 1, count: B * T)
        mask[3] = 0; mask[9] = 0
        func loss() -> Double {
            let lp = model.forward(tokens: tokens, targets: targets, batch: B, time: T).logprobs
            return zip(lp, zip(w, mask)).reduce(0) { $0 + Double($1.0) * Double($1.1.0 * $1.1.1) }
        }
        _ = model.forward(tokens: tokens, targets: targets, batch: B, time: T)
        model.zeroGradients()
        model.backward(dLogprobs: w, mask: mask)
        let analytic = model.flatGradients
        var worst: Float = 0, checked = 0
        var rng = SeededGenerator(seed: 5)
        for e in model.layout.entries {
            for _ in 0..<min(e.count, 6) {
                let i = e.offset + Int(rng.next() % UInt64(e.count))
                let numeric = model.centralDifference(parameter: i, loss: loss)
                let err = abs(numeric - analytic[i]) / max(abs(numeric), abs(analytic[i]), 1e-2)
                if err > 3e-2 { Issue.record("\(e.name)[\(i - e.offset)]: analytic \(analytic[i]) numeric \(numeric)") }
                worst = max(worst, err)
                checked += 1
            }
        }
        #expect(checked > 60)
        #expect(worst < 3e-2)
        // masked positions contribute nothing: all-zero mask gives zero gradients
        model.zeroGradients()
        _ = model.forward(tokens: tokens, targets: targets, batch: B, time: T)
        model.backward(dLogprobs: w, mask: [Float](repeating: 0, count: B * T))
        #expect(model.flatGradients.allSatisfy { $0 == 0 })
    }

    @Test func backwardAddsIntoGradients() {
        let model = noisyLlama(tinyLlamaConfig(bias: true), seed: 1)
        let tokens = randomTokens(8, seed: 1, below: 23), targets = randomTokens(8, seed: 2, below: 23)
        let g = [Float](repeating: -1, count: 8), mask = [Float](repeating: 1, count: 8)
        _ = model.forward(tokens: tokens, targets: targets, batch: 1, time: 8)
        model.backward(dLogprobs: g, mask: mask)
        let once = model.flatGradients
        _ = model.forward(tokens: tokens, targets: targets, batch: 1, time: 8)
        model.backward(dLogprobs: g, mask: mask)
        #expect(maxRelativeError(model.flatGradients, once.map { 2 * $0 }, floor: 1e-4) < 1e-4)
        #expect(once.contains { $0 != 0 })
    }

    /// 96 rows take the plain products, 24 rows per sequence the decoding-sized ones: a batch equals its sequences one
    /// by one (different kernels, so a tolerance), and its gradients equal their sum.
    @Test func batchEqualsSequencesOneByOne() {
        let model = noisyLlama(tinyLlamaConfig(), seed: 17)
        let B = 4, T = 24
        let tokens = randomTokens(B * T, seed: 1, below: 23), targets = randomTokens(B * T, seed: 2, below: 23)
        let g = randomFloats(B * T, seed: 3), mask = [Float](repeating: 1, count: B * T)
        let batch = model.forward(tokens: tokens, targets: targets, batch: B, time: T)
        model.backward(dLogprobs: g, mask: mask)
        let batchGrads = model.flatGradients
        model.zeroGradients()
        var single: [Float] = []
        for b in 0..<B {
            let r = (b * T)..<((b + 1) * T)
            single += model.forward(tokens: Array(tokens[r]), targets: Array(targets[r]), batch: 1, time: T).logprobs
            model.backward(dLogprobs: Array(g[r]), mask: Array(mask[r]))
        }
        #expect(maxRelativeError(batch.logprobs, single, floor: 1) < 1e-5)
        #expect(maxRelativeError(batchGrads, model.flatGradients, floor: 1e-3) < 1e-3)
    }

    /// AdamW on the Policy interface: a tiny Llama memorises one sequence and then generates it greedily.
    @Test func tinyModelOverfitsOneSequence() {
        let model = Llama(config: tinyLlamaConfig(tied: true), seed: 7)
        let opt = AdamW(model: model, learningRate: 1e-2, weightDecay: 0)
        let seq: [Int32] = [1, 5, 9, 3, 17, 8, 8, 4, 12, 20, 6, 2]
        let tokens = Array(seq.dropLast()), targets = Array(seq.dropFirst()), T = tokens.count
        var first: Float = 0, last: Float = 0
        for step in 0..<150 {
            let lp = model.forward(tokens: tokens, targets: targets, batch: 1, time: T).logprobs
            let loss = -lp.reduce(0, +) / Float(T)
            if step == 0 { first = loss }
            last = loss
            model.backward(dLogprobs: [Float](repeating: -1 / Float(T), count: T), mask: [Float](repeating: 1, count: T))
            opt.update(model, learningRate: 1e-2)
        }
        #expect(first > 2.5)
        #expect(last < 0.05)
        let greedy = model.sample(prompt: [1], count: 1, options: .greedy(maxNewTokens: 20))[0]
        #expect(greedy.tokens == Array(seq.dropFirst()))  // ends at eos (2)
        #expect(greedy.finishedWithEOS)
    }
}

private func _exp(_ x: Double) -> Double { Foundation.exp(x) }
