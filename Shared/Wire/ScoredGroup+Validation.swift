extension ScoredGroupMessage {
    /// What the learner accepts from a reward scorer, at its current version and with its model's shape.
    public struct Limits: Sendable, Equatable {
        public var run: String
        public var learnerVersion: UInt64
        public var vocabularySize: Int
        public var contextLength: Int
        public var maxCompletions: Int

        public init(run: String, learnerVersion: UInt64, vocabularySize: Int, contextLength: Int, maxCompletions: Int = 4096) {
            self.run = run
            self.learnerVersion = learnerVersion
            self.vocabularySize = vocabularySize
            self.contextLength = contextLength
            self.maxCompletions = maxCompletions
        }
    }

    /// Refuses a scored group the learner must not train on, naming the first field that is wrong.
    public func validate(_ limits: Limits) throws {
        let bad = FieldRefusal(type: "ScoredGroup", messageID: messageID)
        // tributary-learner's rules, in its order, so a group it refused gets the same refusal
        guard envelope.runID == limits.run else { throw bad("envelope.run_id", "is '\(envelope.runID)', not this run '\(limits.run)'") }
        guard policyVersion <= limits.learnerVersion else {
            throw bad("policy_version", "\(policyVersion) is from the future (learner is at \(limits.learnerVersion))")
        }
        guard !rolloutMessageID.isEmpty else { throw bad("rollout_message_id", "is empty") }
        guard !completions.isEmpty, completions.count <= limits.maxCompletions else { throw bad("completions", "has \(completions.count) entries") }
        let vocabulary = Int32(clamping: limits.vocabularySize)
        for (index, scored) in completions.enumerated() {
            let completion = scored.completion
            guard completion.tokens.count == completion.logprobs.count, !completion.tokens.isEmpty else {
                throw bad("completions[\(index)]", "has \(completion.tokens.count) tokens and \(completion.logprobs.count) logprobs")
            }
            guard completion.tokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }) else { throw bad("completions[\(index)].tokens", "holds ids outside the vocabulary") }
            // one more than the context: the last sampled token is trained on but never fed back
            guard promptTokens.count + completion.tokens.count <= limits.contextLength + 1 else {
                throw bad("completions[\(index)]", "prompt + completion (\(promptTokens.count + completion.tokens.count) tokens) exceed the context \(limits.contextLength)")
            }
            // the learner's one non-finite rule, split so the error names which number it was
            guard scored.advantage.isFinite else { throw bad("completions[\(index)].advantage", "holds a non-finite number") }
            guard completion.logprobs.allSatisfy(\.isFinite) else { throw bad("completions[\(index)].logprobs", "holds a non-finite number") }
        }
        guard promptTokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }), !promptTokens.isEmpty else {
            throw bad("prompt_tokens", "are empty or hold ids outside the vocabulary")
        }

        // hostile input the learner used to let through
        guard policyVersion <= largestIntVersion else { throw bad("policy_version", "\(policyVersion) does not fit in Int") }
        // the key the scorer verified: bans and per-worker counts attach to it
        guard workerKey.count == 32 else { throw bad("worker_key", "is \(workerKey.count) bytes, not a worker's 32-byte key") }
        // rewards feed the step's reward mean and the run's metrics
        if let index = completions.firstIndex(where: { !$0.reward.isFinite }) {
            throw bad("completions[\(index)].reward", "holds a non-finite number")
        }
    }
}
