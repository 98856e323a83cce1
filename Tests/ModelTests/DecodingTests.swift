import Foundation
import ModelAgreement
import Testing
@testable import Model

@Suite struct DecodingTests {
    /// Every logit of incremental decoding (shared prompt cache + per-sample caches) equals the full forward pass.
    @Test func kvCacheMatchesFullForward() {
        let model = GPT(config: tinyConfig, seed: 11)
        let promptLength = 4, total = 16
        let seqA = randomTokens(total, seed: 1), seqB = Array(seqA.prefix(promptLength)) + randomTokens(total - promptLength, seed: 2)
        let V = tinyConfig.vocabSize
        let fullA = model.logits(tokens: seqA), fullB = model.logits(tokens: seqB)
        let state = DecodeState(model: model, prompt: Array(seqA.prefix(promptLength)), count: 3, maxSteps: total - promptLength)
        var worst: Float = 0
        func compare(_ row: Int, _ full: [Float], _ position: Int) {
            for v in 0..<V { worst = max(worst, abs(state.currentLogits[row * V + v] - full[position * V + v])) }
        }
        compare(0, fullA, promptLength - 1)
        compare(2, fullB, promptLength - 1)
        for j in 0..<(total - promptLength) {
            // sample 1 stops after two steps: rows then hold samples 0 and 2 only
            let samples = j < 2 ? [0, 1, 2] : [0, 2]
            let tokens = samples.map { $0 == 2 ? seqB[promptLength + j] : seqA[promptLength + j] }
            state.advance(tokens: tokens, samples: samples)
            compare(0, fullA, promptLength + j)
            compare(samples.count - 1, fullB, promptLength + j)
            if j < 2 { compare(1, fullA, promptLength + j) }
        }
        #expect(worst < Rounding.absolute)  // cached and full forward run different products: equal to rounding
    }

    /// Several prompt groups of different lengths decoded together: every row's logits equal the full forward pass.
    @Test func kvCacheWithSeveralPromptsMatchesFullForward() {
        let model = GPT(config: tinyConfig, seed: 12)
        let V = tinyConfig.vocabSize
        let seqs = [randomTokens(12, seed: 1), randomTokens(12, seed: 2), randomTokens(16, seed: 3), randomTokens(16, seed: 4)]
        let promptLengths = [3, 3, 7, 7]  // group 0: samples 0, 1 share 3 tokens; group 1: samples 2, 3 share 7
        let seqsShared = [seqs[0], Array(seqs[0].prefix(3)) + seqs[1].dropFirst(3), seqs[2], Array(seqs[2].prefix(7)) + seqs[3].dropFirst(7)]
        let full = seqsShared.map { model.logits(tokens: $0) }
        let state = DecodeState(model: model, prompts: [Array(seqsShared[0].prefix(3)), Array(seqsShared[2].prefix(7))], perGroup: 2, maxSteps: 9)
        var worst: Float = 0
        func compare(row: Int, sample: Int, position: Int) {
            for v in 0..<V { worst = max(worst, abs(state.currentLogits[row * V + v] - full[sample][position * V + v])) }
        }
        for s in 0..<4 { compare(row: s, sample: s, position: promptLengths[s] - 1) }
        for j in 0..<9 {
            // group 1 reaches the end of the context (16) after 9 tokens; sample 1 stops early
            let samples = [0, 1, 2, 3].filter { !($0 == 1 && j >= 4) }
            state.advance(tokens: samples.map { seqsShared[$0][promptLengths[$0] + j] }, samples: samples)
            for (row, s) in samples.enumerated() { compare(row: row, sample: s, position: promptLengths[s] + j) }
        }
        #expect(worst < Rounding.absolute)
    }

    /// Many prompts decoded in one batch give what each gives alone (greedy, prompts of different lengths,
    /// one of them at the end of the context). Different batch shapes run different kernels, so tokens must be
    /// equal up to a near-tie and log-probs equal to rounding.
    @Test func promptsDecodedTogetherMatchAlone() {
        let model = GPT(config: tinyConfig, seed: 15)
        let prompts: [[Int32]] = [[1, 2, 3], [], Array(randomTokens(15, seed: 1)), [9], Array(randomTokens(40, seed: 2))]
        let options = SamplingOptions.greedy(maxNewTokens: 6, stopAtEOS: false)
        let together = model.sample(prompts: prompts, options: options)
        let alone = prompts.map { model.sample(prompt: $0, count: 1, options: options)[0] }
        expectAgreement(compareDecodes(together.map { [$0] }, alone.map { [$0] }, prompts: prompts, options: options, model: model))
        #expect(together.map(\.tokens.count) == [6, 6, 2, 6, 1])
        // sampled, several per prompt: prompt 0's group is the same as sampling it alone with the same seed
        let spread = spreadingLogits(GPT(config: tinyConfig, seed: 15), seed: 16)  // sampled draws need spread logits
        let sampled = SamplingOptions(temperature: 1, maxNewTokens: 5, seed: 7, stopAtEOS: false)
        let groups = spread.sample(prompts: [[1, 2, 3], [4, 5]], count: 3, options: sampled)
        let group0Alone = spread.sample(prompt: [1, 2, 3], count: 3, options: sampled)
        expectAgreement(compareDecodes([groups[0]], [group0Alone], prompts: [[1, 2, 3]], options: sampled, model: spread))
        #expect(groups.allSatisfy { $0.count == 3 && $0.allSatisfy { $0.tokens.count == 5 } })
    }

    @Test func seededSamplingIsReproducible() {
        let model = spreadingLogits(GPT(config: tinyConfig, seed: 5), seed: 6)
        let options = SamplingOptions(temperature: 1, topP: 0.95, topK: 50, maxNewTokens: 10, seed: 99, stopAtEOS: false)
        let a = model.sample(prompt: [1, 2, 3], count: 4, options: options)
        let b = model.sample(prompt: [1, 2, 3], count: 4, options: options)
        #expect(a == b)  // the same computation twice: bit for bit
        #expect(a.allSatisfy { $0.tokens.count == 10 && $0.logprobs.count == 10 })
        #expect(Set(a.map(\.tokens)).count > 1)  // the samples of a group differ
        var other = options
        other.seed = 100
        #expect(model.sample(prompt: [1, 2, 3], count: 4, options: other) != a)
        // a sample does not depend on how many others share its prompt (70 rows take the plain products): other
        // shapes run other kernels, so equal up to a near-tie and to rounding
        let one = model.sample(prompt: [1, 2, 3], count: 1, options: options)
        expectAgreement(compareDecodes([one], [[a[0]]], prompts: [[1, 2, 3]], options: options, model: model))
        let many = model.sample(prompt: [1, 2, 3], count: 70, options: options)
        expectAgreement(compareDecodes([Array(many.prefix(4))], [a], prompts: [[1, 2, 3]], options: options, model: model))
    }

    /// Temperature 1 without truncation: each logprob equals the full forward's log-softmax of the sampled token.
    @Test func sampledLogprobsMatchModel() {
        let model = GPT(config: tinyConfig, seed: 8)
        let prompt: [Int32] = [ByteTokenizer.bos, 72, 105]
        let options = SamplingOptions(maxNewTokens: 12, seed: 3, stopAtEOS: false)
        let c = model.sample(prompt: prompt, count: 2, options: options)[1]
        let seq = prompt + c.tokens
        let targets = Array(seq.dropFirst()) + [0]
        let lp = model.forward(tokens: seq, targets: targets, batch: 1, time: seq.count).logprobs
        for j in 0..<c.tokens.count {
            #expect(Rounding.agree(lp[prompt.count - 1 + j], c.logprobs[j]), "token \(j)")  // decode and full forward: to rounding
        }
    }

    @Test func greedyAndTopKOne() {
        let model = GPT(config: tinyConfig, seed: 9)
        let prompt: [Int32] = [5, 6]
        let greedyOptions = SamplingOptions.greedy(maxNewTokens: 8, stopAtEOS: false)
        let greedy = model.sample(prompt: prompt, count: 1, options: greedyOptions)[0]
        // argmax of the full forward, token by token, up to the first near-tie (where the two may part ways)
        var seq = prompt
        var matched = 0
        for j in 0..<8 {
            let last = Array(model.logits(tokens: seq).suffix(tinyConfig.vocabSize))
            let ranked = last.indices.sorted { last[$0] > last[$1] }
            if last[ranked[0]] - last[ranked[1]] < Rounding.tieMargin { break }
            #expect(greedy.tokens[j] == Int32(ranked[0]), "token \(j)")
            seq.append(Int32(ranked[0]))
            matched += 1
        }
        #expect(matched > 0)
        // top-k 1 draws the argmax with log-prob exactly 0 (p / p); three rows are another shape than one
        let topK1Options = SamplingOptions(topK: 1, maxNewTokens: 8, seed: 1, stopAtEOS: false)
        let topK1 = model.sample(prompt: prompt, count: 3, options: topK1Options)
        #expect(topK1.allSatisfy { $0.logprobs.allSatisfy { $0 == 0 } })
        let greedyAsTopK1 = SampledCompletion(tokens: greedy.tokens, logprobs: greedy.logprobs.map { _ in 0 }, finishedWithEOS: false)
        expectAgreement(compareDecodes([topK1], [Array(repeating: greedyAsTopK1, count: 3)], prompts: [prompt], options: topK1Options, model: model))
        // many prompts: one completion each, limited by the context
        let many = model.sample(prompts: [prompt, [1], []], options: .greedy(maxNewTokens: 100, stopAtEOS: false))
        #expect(many.count == 3)
        let manyFirst8 = SampledCompletion(tokens: Array(many[0].tokens.prefix(8)), logprobs: Array(many[0].logprobs.prefix(8)), finishedWithEOS: false)
        expectAgreement(compareDecodes([[manyFirst8]], [[greedy]], prompts: [prompt], options: greedyOptions, model: model))
        #expect(many[0].tokens.count == tinyConfig.contextLength - 2 + 1)
    }

    @Test func topPKeepsOnlyTheNucleus() {
        let V = 5
        let logits: [Float] = [3, 2.9, 0, -1, -2]  // first two tokens hold ~0.9 of the mass
        var chooser = TokenChooser(vocabSize: V)
        let options = SamplingOptions(topP: 0.8, maxNewTokens: 1, seed: 0)
        let key = options.gumbelKey(prompt: 0, sample: 0)
        var seen = Set<Int32>()
        var lp: Float = 0
        for position in 0..<200 {
            let (t, l) = logits.withUnsafeBufferPointer { chooser.choose($0.baseAddress!, options: options, key: key, position: position) }
            seen.insert(t)
            if t == 0 { lp = l }
        }
        #expect(seen == [0, 1])
        let e0 = exp(Double(3)), e1 = exp(Double(2.9))
        #expect(abs(Double(lp) - log(e0 / (e0 + e1))) < 1e-5)
    }
}
