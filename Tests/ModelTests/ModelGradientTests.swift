import Testing
@testable import Model
import ModelAgreement

@Suite struct ModelGradientTests {
    /// Whole model: loss = sum(w * mask * logprob); backward's gradients against central differences,
    /// on a sample of entries from every parameter tensor.
    @Test func wholeModelFiniteDifferences() {
        let config = GPTConfig(vocabSize: 13, contextLength: 8, layers: 2, heads: 2, channels: 8)
        let model = GPT(config: config, seed: 42)
        // larger weights than GPT-2's init so every gradient is well above float noise
        model.withParameters { p, _ in
            let noise = randomFloats(p.count, seed: 1, scale: 0.3)
            for i in 0..<p.count { p[i] += noise[i] }
        }
        let B = 2, T = 5
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
        var worst: Float = 0
        var checked = 0
        var rng = SeededGenerator(seed: 5)
        for (name, shape) in model.parameterTensors {
            let entry = model.layout.entries.first { $0.name == name }!
            let n = shape.reduce(1, *)
            for _ in 0..<min(n, 6) {
                let i = entry.offset + Int(rng.next() % UInt64(n))
                let numeric = model.centralDifference(parameter: i, loss: loss)
                let err = abs(numeric - analytic[i]) / max(abs(numeric), abs(analytic[i]), 1e-2)
                if err > 3e-2 { Issue.record("\(name)[\(i - entry.offset)]: analytic \(analytic[i]) numeric \(numeric)") }
                worst = max(worst, err)
                checked += 1
            }
        }
        #expect(checked > 50)
        #expect(worst < 3e-2)
        // masked positions contribute nothing: all-zero mask gives zero gradients
        model.zeroGradients()
        _ = model.forward(tokens: tokens, targets: targets, batch: B, time: T)
        model.backward(dLogprobs: w, mask: [Float](repeating: 0, count: B * T))
        #expect(model.flatGradients.allSatisfy { $0 == 0 })
    }

    @Test func backwardAddsIntoGradients() {
        let model = GPT(config: tinyConfig, seed: 1)
        let tokens = randomTokens(8, seed: 1), targets = randomTokens(8, seed: 2)
        let g = [Float](repeating: -1, count: 8), mask = [Float](repeating: 1, count: 8)
        _ = model.forward(tokens: tokens, targets: targets, batch: 1, time: 8)
        model.backward(dLogprobs: g, mask: mask)
        let once = model.flatGradients
        _ = model.forward(tokens: tokens, targets: targets, batch: 1, time: 8)
        model.backward(dLogprobs: g, mask: mask)
        let twice = model.flatGradients
        #expect(maxRelativeError(twice, once.map { 2 * $0 }, floor: 1e-4) < 1e-4)
        #expect(once.contains { $0 != 0 })
    }

    /// A batch with different (B,T) after a larger one reuses the buffers and still matches a fresh model.
    @Test func changingShapesGiveSameResults() {
        let a = GPT(config: tinyConfig, seed: 3), b = GPT(config: tinyConfig, seed: 3)
        _ = a.forward(tokens: randomTokens(32, seed: 1), targets: randomTokens(32, seed: 2), batch: 2, time: 16)
        let tokens = randomTokens(15, seed: 3), targets = randomTokens(15, seed: 4)
        let ra = a.forward(tokens: tokens, targets: targets, batch: 3, time: 5)
        let rb = b.forward(tokens: tokens, targets: targets, batch: 3, time: 5)
        #expect(ra.logprobs == rb.logprobs)
        #expect(ra.entropy == rb.entropy)
    }

    /// 80 rows take the plain products, 16 rows the decoding-sized ones: a batch equals its sequences one by one,
    /// and its gradients equal their sum.
    @Test func batchEqualsSequencesOneByOne() {
        let model = GPT(config: tinyConfig, seed: 17)
        let B = 5, T = 16
        let tokens = randomTokens(B * T, seed: 1), targets = randomTokens(B * T, seed: 2)
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

    @Test func tinyModelOverfitsOneBatch() {
        let model = GPT(config: tinyConfig, seed: 7)
        let opt = AdamW(model: model, learningRate: 1e-2, weightDecay: 0)
        let tokenizer = ByteTokenizer()
        let text = tokenizer.encode("hello world, hi")  // 15 bytes
        let seq = [ByteTokenizer.bos] + text            // 16
        let tokens = seq.dropLast(0).map { $0 }
        let targets = Array(seq.dropFirst()) + [ByteTokenizer.eos]
        let mask = [Float](repeating: 1, count: 16)
        var first: Float = 0, last: Float = 0
        for step in 0..<150 {
            let lp = model.forward(tokens: tokens, targets: targets, batch: 1, time: 16).logprobs
            let loss = -lp.reduce(0, +) / 16
            if step == 0 { first = loss }
            last = loss
            model.backward(dLogprobs: [Float](repeating: -1.0 / 16, count: 16), mask: mask)
            opt.update(model, learningRate: 1e-2)
        }
        #expect(first > 4)
        #expect(last < 0.05)
        let greedy = model.sample(prompt: [ByteTokenizer.bos], count: 1, options: .greedy(maxNewTokens: 20))[0]
        #expect(tokenizer.decode(greedy.tokens) == "hello world, hi")
        #expect(greedy.finishedWithEOS)
    }
}
