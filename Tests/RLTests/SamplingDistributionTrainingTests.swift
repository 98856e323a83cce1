import Foundation
import Model
import ModelAgreement
import Testing
@testable import RL

/// A tiny GPT (byte vocabulary) with weights far from the 0.02 init, so its next-token distributions are peaked: a
/// top-p cut keeps a few tokens of real mass, rarely one within rounding of the cut, and temperature and truncation
/// change log-probs by far more than rounding.
func peakedGPT(seed: UInt64 = 7) -> GPT {
    let model = tinyModel(seed: seed)
    perturb(model, seed: seed &+ 100, scale: 1)
    return model
}

/// A tiny Llama (vocabulary 23, GQA 4:2) with peaked distributions.
func peakedLlama(seed: UInt64 = 7) -> Llama {
    let config = LlamaConfig(vocabSize: 23, contextLength: 24, layers: 2, channels: 16, intermediateSize: 24, heads: 4, kvHeads: 2,
                             headDim: 8, tiedEmbeddings: false, bosToken: 1, eosToken: 2)
    let model = Llama(config: config, seed: seed)
    perturb(model, seed: seed &+ 100, scale: 1)
    return model
}

/// Adds N(0, scale²) noise to every weight.
func perturb(_ model: any Policy, seed: UInt64, scale: Float) {
    var rng = SeededGenerator(seed: seed)
    model.withParameters { p, _ in for i in 0..<p.count { p[i] += rng.nextNormal() * scale } }
}

/// Whether a rounding-sized change of the logits could move the top-p cut by one token (which changes the
/// renormalisation by that token's mass): the ranked mass before or at the crossing within `Rounding.tieMargin` of top-p.
func topPCutIsFragile(_ row: ArraySlice<Float>, _ d: TokenDistribution) -> Bool {
    guard d.temperature > 0, d.topP < 1 else { return false }
    let mx = Double(row.max()!)
    let w = row.map { exp((Double($0) - mx) / Double(d.temperature)) }.sorted(by: >)
    let all = w.reduce(0, +), topP = Double(d.topP), margin = Double(Rounding.tieMargin)
    var cum = 0.0
    for r in 0..<(d.topK > 0 ? min(d.topK, w.count) : w.count) {
        let before = cum
        cum += w[r] / all
        if cum >= topP { return cum - topP < margin || topP - before < margin }
    }
    return false
}

/// One completion token: the log-prob the sampler recorded, the training forward's under `distribution` and under the
/// plain distribution, and whether the comparison is fragile.
struct TokenLogprobs {
    var sampled: Float, trained: Float, plain: Float
    var fragile: Bool
}

/// Samples `count` completions of each prompt with the model's own sampler, then runs the training forward on them.
func sampleAndRescore(_ model: any Policy, prompts: [[Int32]], count: Int, options: SamplingOptions) throws -> (samples: [TrainingSample], tokens: [TokenLogprobs]) {
    let groups = model.sample(prompts: prompts, count: count, options: options)
    var samples: [TrainingSample] = [], tokens: [TokenLogprobs] = []
    for (prompt, group) in zip(prompts, groups) {
        let completions = group.filter { !$0.tokens.isEmpty }
        let packed = try PackedBatch(pairs: completions.map { (prompt, $0.tokens) }, contextLength: model.contextLength, padToken: model.eosToken)
        let trained = model.forward(tokens: packed.tokens, targets: packed.targets, batch: packed.batch, time: packed.time,
                                    distribution: options.distribution).logprobs
        let plain = model.forward(tokens: packed.tokens, targets: packed.targets, batch: packed.batch, time: packed.time).logprobs
        for (b, completion) in completions.enumerated() {
            let logits = model.logits(tokens: prompt + completion.tokens.dropLast())
            let V = model.vocabSize
            for j in 0..<completion.tokens.count {
                let t = packed.completionStarts[b] + j, row = (prompt.count - 1 + j) * V
                tokens.append(TokenLogprobs(sampled: completion.logprobs[j], trained: trained[t], plain: plain[t],
                                            fragile: topPCutIsFragile(logits[row..<(row + V)], options.distribution)))
            }
            samples.append(TrainingSample(promptTokens: prompt, completionTokens: completion.tokens, behaviourLogprobs: completion.logprobs,
                                          advantage: b % 2 == 0 ? 1 : -1))
        }
    }
    return (samples, tokens)
}

@Suite struct SamplingDistributionTrainingTests {
    static let settings: [(String, TokenDistribution)] = [
        ("gpt2", TokenDistribution(temperature: 0.7, topP: 0.9)), ("gpt2", TokenDistribution(temperature: 0.7, topK: 5)),
        ("llama", TokenDistribution(temperature: 0.7, topP: 0.9)), ("llama", TokenDistribution(temperature: 0.7, topK: 5)),
    ]

    static func model(_ architecture: String) -> any Policy { architecture == "gpt2" ? peakedGPT() : peakedLlama() }

    static func prompts(_ model: any Policy) -> [[Int32]] {
        if model.vocabSize == ByteTokenizer.vocabSize { return ["12+34=", "7+8=", "abc"].map { PromptFormat.bytes.promptTokens($0) } }
        return [[1, 5, 9], [1, 17], [1, 3, 3, 20]]
    }

    /// An unchanged policy has ratio 1 on every completion token when training scores under the sampler's distribution,
    /// and not under the plain one (what the trainer did before: the check can fail).
    @Test(arguments: settings) func ratioIsOneUnderTheSamplersDistribution(architecture: String, distribution: TokenDistribution) throws {
        let model = Self.model(architecture)
        let options = SamplingOptions(temperature: distribution.temperature, topP: distribution.topP, topK: distribution.topK,
                                      maxNewTokens: 6, seed: 5, stopAtEOS: true)
        let (_, tokens) = try sampleAndRescore(model, prompts: Self.prompts(model), count: 4, options: options)
        let compared = tokens.filter { !$0.fragile }
        #expect(compared.count >= 30, "compared \(compared.count) of \(tokens.count) tokens")
        for (k, token) in compared.enumerated() {
            #expect(Rounding.agree(token.trained, token.sampled), "token \(k): trained \(token.trained) vs sampled \(token.sampled)")
        }
        let plainDisagree = compared.filter { !Rounding.agree($0.plain, $0.sampled) }.count
        #expect(plainDisagree > compared.count / 2, "the temperature-1 head agrees on \(compared.count - plainDisagree) of \(compared.count)")
    }

    /// Through the trainer: mean ratio 1 and nothing clipped with `sampling` set to the run's settings; the plain
    /// distribution (the old trainer) sees a biased ratio.
    @Test(arguments: settings) func trainerStepIsOnPolicy(architecture: String, distribution: TokenDistribution) throws {
        let model = Self.model(architecture)
        let options = SamplingOptions(temperature: distribution.temperature, topP: distribution.topP, topK: distribution.topK,
                                      maxNewTokens: 6, seed: 9)
        let (samples, tokens) = try sampleAndRescore(model, prompts: Self.prompts(model), count: 4, options: options)
        #expect(!tokens.contains { $0.fragile }, "a fragile top-p cut: pick another seed; \(tokens.filter(\.fragile).count) of \(tokens.count)")
        let plainModel = model.copy()
        let plain = try GRPOTrainer(model: plainModel, optimizer: AdamW(model: plainModel, learningRate: 1e-3)).step(samples: samples)
        #expect(abs(plain.lossMetrics.meanRatio - 1) > 1e-2, "plain head: mean ratio \(plain.lossMetrics.meanRatio)")
        let trainer = GRPOTrainer(model: model, optimizer: AdamW(model: model, learningRate: 1e-3),
                                  config: GRPOTrainerConfig(learningRate: 1e-3, sampling: options.distribution))
        let metrics = try trainer.step(samples: samples)
        let m = metrics.lossMetrics
        #expect(abs(m.meanRatio - 1) < 1e-3, "mean ratio \(m.meanRatio)")
        #expect(m.clipFractionLow == 0 && m.clipFractionHigh == 0 && m.clipFractionDelta == 0)
        #expect(metrics.gradNorm > 0)
    }

    @Test func configWithoutSamplingDecodesAsPlain() throws {
        let old = #"{"learningRate":0.001,"loss":{"epsilonLow":0.2,"epsilonHigh":0.2,"delta":4,"klCoefficient":0,"entropyCoefficient":0},"microBatchSize":64}"#
        let config = try JSONDecoder().decode(GRPOTrainerConfig.self, from: Data(old.utf8))
        #expect(config == GRPOTrainerConfig())
        let tempered = GRPOTrainerConfig(sampling: TokenDistribution(temperature: 0.7, topK: 3, topP: 0.9))
        #expect(try JSONDecoder().decode(GRPOTrainerConfig.self, from: JSONEncoder().encode(tempered)) == tempered)
    }
}

@Suite struct ReferencePolicyTests {
    static let sampling = TokenDistribution(temperature: 0.7, topP: 0.9)

    static func samples(_ model: any Policy, advantage: Double = 0) throws -> [TrainingSample] {
        let options = SamplingOptions(temperature: 0.7, topP: 0.9, maxNewTokens: 6, seed: 3)
        return try sampleAndRescore(model, prompts: ["12+34=", "7+8=", "99+1="].map { PromptFormat.bytes.promptTokens($0) },
                                    count: 4, options: options).samples.map { var s = $0; s.advantage = advantage; return s }
    }

    static func trainer(_ model: any Policy, kl: Double, learningRate: Float = 1e-2) -> GRPOTrainer {
        GRPOTrainer(model: model, optimizer: AdamW(model: model, learningRate: learningRate, weightDecay: 0),
                    config: GRPOTrainerConfig(learningRate: learningRate, loss: GRPOConfig(klCoefficient: kl), sampling: sampling))
    }

    @Test func klWithoutAReferenceIsAnError() throws {
        let model = peakedGPT()
        let samples = try Self.samples(model)
        #expect(throws: MissingReferencePolicy(klCoefficient: 0.1, sample: 0)) { try Self.trainer(model, kl: 0.1).step(samples: samples) }
        // reference logprobs carried by every sample need no reference model
        let carried = samples.map { var s = $0; s.referenceLogprobs = s.behaviourLogprobs; return s }
        _ = try Self.trainer(model, kl: 0.1).step(samples: carried)
        // with the coefficient 0 there is nothing to measure
        _ = try Self.trainer(model, kl: 0).step(samples: samples)
    }

    @Test func frozenReferenceOfAnUnchangedModelHasNoDivergence() throws {
        let model = peakedGPT()
        let trainer = Self.trainer(model, kl: 0.5)
        trainer.freezeReference()
        let reference = try #require(trainer.referenceModel)
        #expect(reference !== model)
        #expect(reference.flatParameters == model.flatParameters)
        let metrics = try trainer.step(samples: try Self.samples(model, advantage: 1))
        #expect(metrics.lossMetrics.kl < 1e-6, "kl \(metrics.lossMetrics.kl)")
        // the step moved the model, not the frozen copy
        #expect(reference.flatParameters != model.flatParameters)
    }

    /// A model moved away from its frozen reference shows a positive KL, and the KL term alone (advantages 0) pulls it
    /// back: the KL on the step's tokens falls toward 0.
    @Test func klPullsAMovedModelBackToItsReference() throws {
        let model = peakedGPT()
        let trainer = Self.trainer(model, kl: 1, learningRate: 3e-3)
        trainer.freezeReference()
        let reference = try #require(trainer.referenceModel).flatParameters
        perturb(model, seed: 99, scale: 0.05)
        #expect(reference != model.flatParameters)
        let samples = try Self.samples(model)
        var kls: [Double] = []
        for _ in 0..<30 { kls.append(try trainer.step(samples: samples).lossMetrics.kl) }
        #expect(kls[0] > 1e-3, "a moved model diverges from its reference: kl \(kls[0])")
        #expect(kls.last! < kls[0] / 4, "kl \(kls[0]) → \(kls.last!)")
    }

    /// The reference survives a learner restart through its safetensors bytes.
    @Test func referenceRoundTripsThroughSafetensors() throws {
        let model = peakedGPT()
        let trainer = Self.trainer(model, kl: 1)
        #expect(trainer.referenceSafetensorsBytes() == nil)
        trainer.freezeReference()
        let bytes = try #require(trainer.referenceSafetensorsBytes())
        perturb(model, seed: 5, scale: 0.05)
        let samples = try Self.samples(model)

        let restartedModel = model.copy()
        let restarted = Self.trainer(restartedModel, kl: 1)
        try restarted.loadReference(safetensors: bytes)
        #expect(restarted.referenceModel?.flatParameters == trainer.referenceModel?.flatParameters)
        let a = try trainer.step(samples: samples), b = try restarted.step(samples: samples)
        #expect(a.lossMetrics.kl > 1e-3)
        #expect(abs(a.lossMetrics.kl - b.lossMetrics.kl) < 1e-4 * a.lossMetrics.kl + 1e-6)
        // a blob of another architecture is refused and the reference stays
        let llama = peakedLlama()
        #expect(throws: (any Error).self) { try restarted.loadReference(safetensors: llama.safetensorsBytes()) }
        #expect(restarted.referenceModel?.flatParameters == trainer.referenceModel?.flatParameters)
    }
}
