import Model

/// Learner-side knobs of one GRPO step.
public struct GRPOTrainerConfig: Sendable, Codable, Equatable {
    public var learningRate: Float
    public var loss: GRPOConfig
    /// Sequences per forward/backward; gradients accumulate over micro-batches into one optimizer step.
    public var microBatchSize: Int
    /// The distribution the rollouts were sampled from (the run's inference temperature, top-k, top-p): new and reference
    /// log-probs are computed under it, so that they compare with the behaviour log-probs the sampler recorded.
    public var sampling: TokenDistribution

    public init(learningRate: Float = 1e-3, loss: GRPOConfig = GRPOConfig(), microBatchSize: Int = 64, sampling: TokenDistribution = .plain) {
        self.learningRate = learningRate
        self.loss = loss
        self.microBatchSize = microBatchSize
        self.sampling = sampling
    }

    enum CodingKeys: String, CodingKey { case learningRate, loss, microBatchSize, sampling }

    // A config saved before `sampling` existed decodes to the plain distribution it trained with.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        loss = try c.decode(GRPOConfig.self, forKey: .loss)
        microBatchSize = try c.decode(Int.self, forKey: .microBatchSize)
        sampling = try c.decodeIfPresent(TokenDistribution.self, forKey: .sampling) ?? .plain
    }
}

/// A KL penalty was asked for with nothing to measure it against.
public struct MissingReferencePolicy: Error, Sendable, Equatable, CustomStringConvertible {
    public var klCoefficient: Double
    /// Index in the step's batch of the first sample without reference logprobs.
    public var sample: Int

    public var description: String {
        "kl_coefficient \(klCoefficient) needs a reference policy, and training sample \(sample) carries no reference logprobs: "
            + "call GRPOTrainer.freezeReference() or loadReference(safetensors:) first"
    }
}

/// What one learner step did.
public struct GRPOStepMetrics: Sendable, Codable, Equatable {
    public var loss: Double
    public var gradNorm: Double
    public var learningRate: Double
    public var samples: Int
    /// Clip fractions, mean ratio, entropy, KL, over every completion token of the step.
    public var lossMetrics: GRPOLossMetrics
}

/// One GRPO learner step on a batch of scored completions: pack, forward, loss, backward (completion tokens only),
/// optimizer update. The model and optimizer are the caller's; the trainer holds no other state.
/// Not thread-safe (it drives one model and optimizer): use it from one thread at a time.
public final class GRPOTrainer: @unchecked Sendable {
    public let model: any Policy
    public let optimizer: AdamW
    public var config: GRPOTrainerConfig
    /// Frozen policy for the KL penalty; used when `config.loss.klCoefficient` > 0 and samples carry no reference logprobs.
    /// Set it with `freezeReference()` (or `loadReference(safetensors:)` after a restart); never trained.
    public var referenceModel: (any Policy)?

    public init(model: any Policy, optimizer: AdamW, config: GRPOTrainerConfig = GRPOTrainerConfig(), referenceModel: (any Policy)? = nil) {
        self.model = model
        self.optimizer = optimizer
        self.config = config
        self.referenceModel = referenceModel
    }

    /// Snapshots the model's current weights as the frozen reference of the KL penalty: call it once, on the initial
    /// policy (after any warm start), before the first GRPO step.
    public func freezeReference() {
        referenceModel = model.copy()
    }

    /// The reference's weights (the model's safetensors blob), for the learner to save beside its checkpoint; nil when none is set.
    public func referenceSafetensorsBytes() -> [UInt8]? {
        referenceModel?.safetensorsBytes()
    }

    /// Restores a reference saved by `referenceSafetensorsBytes()`. It must fit the model's architecture and config;
    /// on error the reference is left as it was.
    public func loadReference(safetensors bytes: [UInt8]) throws {
        let reference = referenceModel ?? model.copy()
        try reference.loadWeights(safetensors: bytes)
        referenceModel = reference
    }

    /// One optimizer step on `samples` (all groups of the step together: token-level normalisation spans the batch).
    public func step(samples: [TrainingSample], learningRate: Float? = nil) throws -> GRPOStepMetrics {
        guard !samples.isEmpty else { throw TrainingError(sample: 0, problem: "empty batch") }
        for (i, sample) in samples.enumerated() {
            guard sample.behaviourLogprobs.count == sample.completionTokens.count else {
                throw TrainingError(sample: i, problem: "\(sample.behaviourLogprobs.count) behaviour logprobs for \(sample.completionTokens.count) completion tokens")
            }
            guard !sample.completionTokens.isEmpty else { throw TrainingError(sample: i, problem: "empty completion") }
            if let reference = sample.referenceLogprobs, reference.count != sample.completionTokens.count {
                throw TrainingError(sample: i, problem: "\(reference.count) reference logprobs for \(sample.completionTokens.count) completion tokens")
            }
        }
        let useKL = config.loss.klCoefficient != 0
        if useKL, referenceModel == nil, let i = samples.firstIndex(where: { $0.referenceLogprobs == nil }) {
            throw MissingReferencePolicy(klCoefficient: config.loss.klCoefficient, sample: i)
        }
        let totalTokens = Double(samples.reduce(0) { $0 + $1.completionTokens.count })
        let distribution = config.sampling
        model.zeroGradients()
        var loss = 0.0
        var sums = MetricSums()
        for start in stride(from: 0, to: samples.count, by: max(1, config.microBatchSize)) {
            let chunk = Array(samples[start..<min(samples.count, start + max(1, config.microBatchSize))])
            let packed = try PackedBatch(pairs: chunk.map { ($0.promptTokens, $0.completionTokens) },
                                         contextLength: model.contextLength, padToken: model.eosToken, firstSampleIndex: start)
            let n = packed.batch * packed.time
            var behaviour = [Float](repeating: 0, count: n)
            var advantages = [Float](repeating: 0, count: n)
            var reference: [Float]? = useKL ? [Float](repeating: 0, count: n) : nil
            var referenceFromModel: [Float]? = nil
            if useKL, chunk.contains(where: { $0.referenceLogprobs == nil }), let referenceModel {
                referenceFromModel = referenceModel.forward(tokens: packed.tokens, targets: packed.targets, batch: packed.batch, time: packed.time,
                                                            distribution: distribution).logprobs
            }
            for (b, sample) in chunk.enumerated() {
                let s = packed.completionStarts[b]
                for j in 0..<sample.completionTokens.count {
                    behaviour[s + j] = sample.behaviourLogprobs[j]
                    advantages[s + j] = Float(sample.advantage)
                    if useKL {
                        reference![s + j] = sample.referenceLogprobs?[j] ?? referenceFromModel?[s + j] ?? 0
                    }
                }
            }
            let (logprobs, entropy) = model.forward(tokens: packed.tokens, targets: packed.targets, batch: packed.batch, time: packed.time,
                                                    distribution: distribution)
            let result = GRPOLoss.compute(
                logprobs: logprobs, behaviourLogprobs: behaviour, advantages: advantages, mask: packed.mask,
                referenceLogprobs: reference, entropy: entropy, config: config.loss, normalizer: totalTokens)
            model.backward(dLogprobs: result.gradient, mask: packed.mask)
            loss += result.loss
            sums.add(result.metrics)
        }
        let rate = learningRate ?? config.learningRate
        let norm = optimizer.update(model, learningRate: rate)
        return GRPOStepMetrics(loss: loss, gradNorm: Double(norm), learningRate: Double(rate), samples: samples.count, lossMetrics: sums.mean)
    }

    /// One supervised step: maximise the log-likelihood of each example's completion (token-level mean).
    /// Returns the mean negative log-likelihood per completion token before the update.
    public func supervisedStep(examples: [SupervisedExample], learningRate: Float? = nil) throws -> SupervisedStepMetrics {
        try SupervisedTraining.step(model: model, optimizer: optimizer, examples: examples,
                                    learningRate: learningRate ?? config.learningRate, microBatchSize: config.microBatchSize)
    }
}

/// Token-weighted sums of loss metrics across micro-batches.
struct MetricSums {
    var tokens = 0.0
    var low = 0.0, high = 0.0, delta = 0.0, ratio = 0.0, entropy = 0.0, kl = 0.0, policy = 0.0

    mutating func add(_ m: GRPOLossMetrics) {
        let w = Double(m.tokens)
        tokens += w
        low += m.clipFractionLow * w
        high += m.clipFractionHigh * w
        delta += m.clipFractionDelta * w
        ratio += m.meanRatio * w
        entropy += m.entropy * w
        kl += m.kl * w
        policy += m.policyLoss
    }

    var mean: GRPOLossMetrics {
        let w = max(tokens, 1)
        return GRPOLossMetrics(tokens: Int(tokens), clipFractionLow: low / w, clipFractionHigh: high / w, clipFractionDelta: delta / w,
                               meanRatio: ratio / w, entropy: entropy / w, kl: kl / w, policyLoss: policy)
    }
}
