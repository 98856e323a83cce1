import Model
import ModelAgreement
import Testing
@testable import RL

/// A model small enough for debug builds.
func tinyModel(seed: UInt64 = 7) -> GPT {
    GPT(config: GPTConfig(contextLength: 16, layers: 1, heads: 2, channels: 16), seed: seed)
}

@Suite struct GRPOTrainerTests {
    @Test func packingPutsCompletionTargetsUnderTheMask() throws {
        let packed = try PackedBatch(pairs: [([256, 49, 61], [50, 257]), ([256, 61], [51, 52, 257])], contextLength: 16, padToken: 258)
        #expect(packed.batch == 2 && packed.time == 4)
        // row 0: inputs bos 1 = 2 | pad ; targets 1 = 2 eos | -1
        #expect(Array(packed.tokens[0..<4]) == [256, 49, 61, 50])
        #expect(Array(packed.targets[0..<4]) == [49, 61, 50, 257])
        #expect(Array(packed.mask[0..<4]) == [0, 0, 1, 1])
        #expect(Array(packed.tokens[4..<8]) == [256, 61, 51, 52])
        #expect(Array(packed.targets[4..<8]) == [61, 51, 52, 257])
        #expect(Array(packed.mask[4..<8]) == [0, 1, 1, 1])
        #expect(packed.completionStarts == [2, 5])
        #expect(throws: TrainingError.self) {
            try PackedBatch(pairs: [([256] + Array(repeating: 49, count: 15), [50, 257])], contextLength: 16, padToken: 258)
        }
    }

    @Test func sampledLogprobsMatchTheTrainingForward() throws {
        let model = tinyModel()
        let prompt = PromptFormat.bytes.promptTokens("12+34=")
        let group = model.sample(prompt: prompt, count: 3, options: SamplingOptions(temperature: 1, maxNewTokens: 5, seed: 11))
        let packed = try PackedBatch(pairs: group.map { (prompt, $0.tokens) }, contextLength: 16, padToken: ByteTokenizer.pad)
        let (logprobs, _) = model.forward(tokens: packed.tokens, targets: packed.targets, batch: packed.batch, time: packed.time)
        for (b, completion) in group.enumerated() {
            for j in 0..<completion.tokens.count {
                // Cached, batched decoding against the full forward: equal to rounding only (Rounding in ModelAgreement).
                let trained = logprobs[packed.completionStarts[b] + j], sampled = completion.logprobs[j]
                #expect(Rounding.agree(trained, sampled), "ratio must start at 1: sample \(b) token \(j): \(trained) vs \(sampled)")
            }
        }
    }

    @Test(arguments: [1.0, -1.0])
    func advantageSignMovesLikelihood(advantage: Double) throws {
        let prompt = PromptFormat.bytes.promptTokens("7+1=")
        let completion = PromptFormat.bytes.completionTokens("8")
        let model = tinyModel()
        func logprobs() throws -> [Float] {
            let packed = try PackedBatch(pairs: [(prompt, completion)], contextLength: 16, padToken: ByteTokenizer.pad)
            let (lp, _) = model.forward(tokens: packed.tokens, targets: packed.targets, batch: 1, time: packed.time)
            return Array(lp[packed.completionStarts[0]..<(packed.completionStarts[0] + completion.count)])
        }
        let trainer = GRPOTrainer(model: model, optimizer: AdamW(model: model, learningRate: 1e-3, weightDecay: 0, maxGradNorm: 1),
                                  config: GRPOTrainerConfig(learningRate: 1e-3))
        let before = try logprobs()
        let sample = TrainingSample(promptTokens: prompt, completionTokens: completion, behaviourLogprobs: before, advantage: advantage)
        let metrics = try trainer.step(samples: [sample, sample])
        #expect(metrics.samples == 2 && metrics.lossMetrics.tokens == 4)
        // The step's forward (a batch of two) and `before` (a batch of one) run different kernels: their log-probs
        // (≈ −ln 259) agree to 1e-4 + 1e-4·5.6 < 7e-4 (Rounding.agree), so the ratio is 1, and the loss −A, within 1e-3.
        #expect(abs(metrics.lossMetrics.meanRatio - 1) < 1e-3, "on-policy: ratio 1")
        #expect(abs(metrics.loss + advantage) < 1e-3, "loss = −A · ratio, token mean")
        #expect(metrics.gradNorm > 0)
        let after = try logprobs()
        // To first order the change is A · lr · Σ|∂(Σ log p)/∂θ| (Adam's first step moves every weight by about lr
        // along its gradient's sign), about 0.2 here. The 1e-2 floor is over three times the worst-case rounding of the
        // four log-probs compared (4 × 7e-4), so a change past it is the step's doing on any CPU, not the kernels'.
        let change = after.reduce(0, +) - before.reduce(0, +)
        #expect(advantage > 0 ? change > 1e-2 : change < -1e-2, "change \(change)")
    }

    @Test func mismatchedSamplesAreErrorsNamingTheSample() {
        let model = tinyModel()
        let trainer = GRPOTrainer(model: model, optimizer: AdamW(model: model, learningRate: 1e-3))
        let ok = TrainingSample(promptTokens: [256, 49], completionTokens: [50, 257], behaviourLogprobs: [-1, -1], advantage: 1)
        let bad = TrainingSample(promptTokens: [256, 49], completionTokens: [50, 257], behaviourLogprobs: [-1], advantage: 1)
        #expect(throws: TrainingError(sample: 1, problem: "1 behaviour logprobs for 2 completion tokens")) {
            try trainer.step(samples: [ok, bad])
        }
        #expect(throws: TrainingError.self) { try trainer.step(samples: []) }
    }

    @Test func supervisedWarmStartLearnsATaskAndEvaluationSeesIt() throws {
        let model = tinyModel()
        let environment = ArithmeticEnvironment(digits: 1)
        let task = environment.task(seed: 0, index: 0)
        let optimizer = AdamW(model: model, learningRate: 1e-2, weightDecay: 0)
        let examples = [SupervisedExample(task: task, environment: environment)]
        let first = try SupervisedTraining.step(model: model, optimizer: optimizer, examples: examples, learningRate: 1e-2)
        var last = first
        for _ in 0..<60 { last = try SupervisedTraining.step(model: model, optimizer: optimizer, examples: examples, learningRate: 1e-2) }
        #expect(last.loss < first.loss / 4, "loss \(first.loss) → \(last.loss)")
        // Greedy evaluation decodes with the KV cache, other kernels than the full forward of training, so it agrees
        // with training only to rounding (~1e-5 in a logit): the answer is only certain to come out if every one of its
        // tokens leads the runner-up by far more than that. Training must give it a lead of a whole logit (it gives
        // about 6 here); then the greedy completion is the answer on any CPU.
        let prompt = PromptFormat.bytes.promptTokens(task.prompt), completion = PromptFormat.bytes.completionTokens(task.answer)
        let logits = model.logits(tokens: prompt + completion.dropLast())
        let V = model.config.vocabSize
        for (j, token) in completion.enumerated() {
            let row = Array(logits[((prompt.count - 1 + j) * V)..<((prompt.count + j) * V)])
            let runnerUp = row.indices.filter { $0 != Int(token) }.map { row[$0] }.max() ?? -.infinity
            #expect(row[Int(token)] - runnerUp > 1, "answer token \(j) leads the runner-up by only \(row[Int(token)] - runnerUp)")
        }
        #expect(Evaluation.evaluate(model: model, environment: environment, tasks: [task], maxNewTokens: 4) == 1)
        let outcome = try #require(Evaluation.run(model: model, environment: environment, tasks: [task], maxNewTokens: 4).first)
        #expect(outcome.completion == task.answer)
    }

    @Test func klPenaltyAgainstAReferenceModelPullsBack() throws {
        let model = tinyModel(), reference = tinyModel()
        reference.copyWeights(from: model)
        let trainer = GRPOTrainer(model: model, optimizer: AdamW(model: model, learningRate: 1e-2, weightDecay: 0),
                                  config: GRPOTrainerConfig(learningRate: 1e-2, loss: GRPOConfig(klCoefficient: 1)), referenceModel: reference)
        let prompt = PromptFormat.bytes.promptTokens("1+1=")
        let completion = PromptFormat.bytes.completionTokens("2")
        let sample = TrainingSample(promptTokens: prompt, completionTokens: completion, behaviourLogprobs: [-5.6, -5.6], advantage: 0)
        let metrics = try trainer.step(samples: [sample])
        // Same weights, same batch, same kernels: the log-probs agree to rounding at worst (k3 ≈ d²/2 ≈ 1e-8 for d = 1e-4).
        #expect(metrics.lossMetrics.kl < 1e-6, "same weights: no divergence yet")
    }
}

@Suite struct DifficultyFilterTests {
    struct Always: Environment {
        let name = "always"
        let verdict: Bool
        func task(seed: UInt64, index: Int) -> RLTask { RLTask(id: "\(index)", prompt: "\(index)=", answer: "x") }
        func referenceSolution(for task: RLTask) -> String { "x" }
        func verify(completion: String, task: RLTask) -> RewardComponents { RewardComponents(correctness: verdict ? 1 : 0, format: 1) }
    }

    struct FirstByteIsDigit: Environment {
        let name = "digit"
        func task(seed: UInt64, index: Int) -> RLTask { RLTask(id: "\(index)", prompt: "\(index)=", answer: "") }
        func referenceSolution(for task: RLTask) -> String { "1" }
        func verify(completion: String, task: RLTask) -> RewardComponents {
            RewardComponents(correctness: completion.first?.isNumber == true ? 1 : 0, format: 1)
        }
    }

    @Test func dropsTasksAlwaysOrNeverSolved() {
        let model = tinyModel()
        let filter = DifficultyFilter(samplesPerTask: 4, keep: 0.01...0.99, maxNewTokens: 2)
        let solved = filter.filter(model: model, environment: Always(verdict: true), tasks: Always(verdict: true).tasks(seed: 0, range: 0..<3))
        #expect(solved.kept.isEmpty && solved.dropped == 3)
        let unsolved = filter.filter(model: model, environment: Always(verdict: false), tasks: Always(verdict: false).tasks(seed: 0, range: 0..<3))
        #expect(unsolved.kept.isEmpty && unsolved.dropped == 3)
        let all = DifficultyFilter(samplesPerTask: 4, keep: 0...1, maxNewTokens: 2)
        let estimated = all.estimate(model: model, environment: Always(verdict: true), tasks: Always(verdict: true).tasks(seed: 0, range: 0..<2))
        #expect(estimated.allSatisfy { $0.passRate == 1 && $0.task.difficulty == 0 })
    }

    @Test func passRatesAreFractionsOfSamples() {
        let model = tinyModel()
        let filter = DifficultyFilter(samplesPerTask: 8, keep: 0...1, temperature: 3, maxNewTokens: 1)
        let estimated = filter.estimate(model: model, environment: FirstByteIsDigit(), tasks: FirstByteIsDigit().tasks(seed: 0, range: 0..<4))
        for (task, rate) in estimated {
            #expect((rate * 8).rounded() == rate * 8)
            #expect(abs(task.difficulty - (1 - rate)) < 1e-12)
        }
    }
}
