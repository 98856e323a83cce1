/// One completion the learner trains on: its prompt, what was generated, how likely the behaviour policy found each
/// generated token, and the group-relative advantage of the whole completion.
public struct TrainingSample: Sendable, Codable, Equatable {
    public var promptTokens: [Int32]
    /// Generated tokens, eos included when generation stopped there.
    public var completionTokens: [Int32]
    /// Log-prob of each completion token under the policy that sampled it (same count as `completionTokens`).
    public var behaviourLogprobs: [Float]
    public var advantage: Double
    /// Log-probs under a reference policy, for the KL penalty (optional; the trainer can compute them instead), under the
    /// same sampling distribution as the trainer's (`GRPOTrainerConfig.sampling`).
    public var referenceLogprobs: [Float]?

    public init(promptTokens: [Int32], completionTokens: [Int32], behaviourLogprobs: [Float], advantage: Double, referenceLogprobs: [Float]? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.behaviourLogprobs = behaviourLogprobs
        self.advantage = advantage
        self.referenceLogprobs = referenceLogprobs
    }
}

/// A prompt and the completion to imitate, for the supervised warm start.
public struct SupervisedExample: Sendable, Codable, Equatable {
    public var promptTokens: [Int32]
    public var completionTokens: [Int32]

    public init(promptTokens: [Int32], completionTokens: [Int32]) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    /// The environment's reference solution for `task`, in `format`.
    public init(task: RLTask, environment: any Environment, format: PromptFormat = .bytes) {
        self.init(promptTokens: format.promptTokens(task.prompt),
                  completionTokens: format.completionTokens(environment.referenceSolution(for: task)))
    }
}

/// Samples packed into one padded (B,T) batch: position t of row b predicts targets[b*T+t] from tokens up to t.
/// Completion token j of a sample is the target at position promptCount − 1 + j; only those positions are masked in.
public struct PackedBatch: Sendable {
    public var tokens: [Int32]
    public var targets: [Int32]
    public var mask: [Float]
    public var batch: Int
    public var time: Int
    /// For each sample, the flat index of its first completion position.
    public var completionStarts: [Int]

    /// Packs (prompt, completion) pairs; throws when a sequence does not fit the context, naming the sample by its index
    /// plus `firstSampleIndex` (its place in the whole step when this is one micro-batch of it).
    public init(pairs: [(prompt: [Int32], completion: [Int32])], contextLength: Int, padToken: Int32, firstSampleIndex: Int = 0) throws {
        var time = 1
        for (i, pair) in pairs.enumerated() {
            guard !pair.prompt.isEmpty else { throw TrainingError(sample: firstSampleIndex + i, problem: "empty prompt") }
            let length = pair.prompt.count + pair.completion.count - 1
            guard length <= contextLength else {
                throw TrainingError(sample: firstSampleIndex + i, problem: "prompt \(pair.prompt.count) + completion \(pair.completion.count) tokens exceed the context of \(contextLength) + 1")
            }
            time = max(time, length)
        }
        batch = pairs.count
        self.time = time
        tokens = [Int32](repeating: padToken, count: batch * time)
        targets = [Int32](repeating: -1, count: batch * time)
        mask = [Float](repeating: 0, count: batch * time)
        completionStarts = []
        for (b, pair) in pairs.enumerated() {
            let sequence = pair.prompt + pair.completion
            let row = b * time
            for t in 0..<(sequence.count - 1) {
                tokens[row + t] = sequence[t]
                targets[row + t] = sequence[t + 1]
            }
            let start = row + pair.prompt.count - 1
            for j in 0..<pair.completion.count { mask[start + j] = 1 }
            completionStarts.append(start)
        }
    }
}

/// A sample the learner cannot use: which one and why.
public struct TrainingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var sample: Int
    public var problem: String

    public init(sample: Int, problem: String) {
        self.sample = sample
        self.problem = problem
    }

    public var description: String { "training sample \(sample): \(problem)" }
}
