import Model

/// What one supervised step did.
public struct SupervisedStepMetrics: Sendable, Codable, Equatable {
    /// Mean negative log-likelihood per completion token, before the update.
    public var loss: Double
    public var gradNorm: Double
    public var tokens: Int
}

/// Supervised warm start through the same logprob interface as GRPO: loss = −mean logprob of completion tokens.
public enum SupervisedTraining {
    public static func step(model: any Policy, optimizer: AdamW, examples: [SupervisedExample], learningRate: Float, microBatchSize: Int = 64) throws -> SupervisedStepMetrics {
        guard !examples.isEmpty else { throw TrainingError(sample: 0, problem: "empty batch") }
        let totalTokens = examples.reduce(0) { $0 + $1.completionTokens.count }
        guard totalTokens > 0 else { throw TrainingError(sample: 0, problem: "no completion tokens") }
        model.zeroGradients()
        var nll = 0.0
        let size = max(1, microBatchSize)
        for start in stride(from: 0, to: examples.count, by: size) {
            let chunk = examples[start..<min(examples.count, start + size)]
            let packed = try PackedBatch(pairs: chunk.map { ($0.promptTokens, $0.completionTokens) },
                                         contextLength: model.contextLength, padToken: model.eosToken, firstSampleIndex: start)
            let (logprobs, _) = model.forward(tokens: packed.tokens, targets: packed.targets, batch: packed.batch, time: packed.time)
            let scale = -1 / Float(totalTokens)
            var gradient = [Float](repeating: 0, count: logprobs.count)
            for i in 0..<logprobs.count where packed.mask[i] != 0 {
                nll -= Double(logprobs[i])
                gradient[i] = scale
            }
            model.backward(dLogprobs: gradient, mask: packed.mask)
        }
        let norm = optimizer.update(model, learningRate: learningRate)
        return SupervisedStepMetrics(loss: nll / Double(totalTokens), gradNorm: Double(norm), tokens: totalTokens)
    }
}
