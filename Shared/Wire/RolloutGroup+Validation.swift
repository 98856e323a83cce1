extension RolloutGroup {
    /// What a reward scorer accepts from a rollout worker (untrusted).
    public struct Limits: Sendable, Equatable {
        public var run: String
        /// The newest announced checkpoint; -1 when there is none yet (every group is then from the future).
        public var newestVersion: Int
        public var vocabularySize: Int
        public var maxTokens: Int
        public var maxCompletions: Int

        public init(run: String, newestVersion: Int, vocabularySize: Int, maxTokens: Int = 4096, maxCompletions: Int = 4096) {
            self.run = run
            self.newestVersion = newestVersion
            self.vocabularySize = vocabularySize
            self.maxTokens = maxTokens
            self.maxCompletions = maxCompletions
        }
    }

    /// Refuses a group a scorer must not score, naming the first field that is wrong.
    public func validate(_ limits: Limits) throws {
        let bad = FieldRefusal(type: "RolloutGroup", messageID: messageID)
        // tributary-reward's rules, in its order, so a group it refused gets the same refusal
        guard envelope.runID == limits.run else { throw bad("envelope.run_id", "is '\(envelope.runID)', not this run '\(limits.run)'") }
        // compared as UInt64: a version past Int's range is from the future, not a trap
        guard limits.newestVersion >= 0, policyVersion <= UInt64(limits.newestVersion) else {
            throw bad("policy_version", "\(policyVersion) is from the future (newest checkpoint is \(limits.newestVersion))")
        }
        guard completions.count == Int(task.groupSize), !completions.isEmpty else {
            throw bad("completions", "has \(completions.count) completions for group size \(task.groupSize)")
        }
        let vocabulary = Int32(clamping: limits.vocabularySize)
        for (index, completion) in completions.enumerated() {
            guard !completion.tokens.isEmpty, completion.tokens.count <= limits.maxTokens else {
                throw bad("completions[\(index)].tokens", "has \(completion.tokens.count) tokens (1...\(limits.maxTokens) allowed)")
            }
            if let token = completion.tokens.first(where: { $0 < 0 || $0 >= vocabulary }) {
                throw bad("completions[\(index)].tokens", "holds token id \(token) outside the vocabulary 0..<\(vocabulary)")
            }
            guard completion.logprobs.count == completion.tokens.count else {
                throw bad("completions[\(index)].logprobs", "has \(completion.logprobs.count) values for \(completion.tokens.count) tokens")
            }
            // a log-probability is <= 0; the slack is rounding
            guard completion.logprobs.allSatisfy({ $0.isFinite && $0 <= 1e-4 }) else {
                throw bad("completions[\(index)].logprobs", "holds a value that is not a finite log-probability")
            }
            // a proof's size follows from its length (its content is checked only by a validator)
            let proofLimit = WireLimits.maxProofBytes(tokens: completion.tokens.count)
            guard completion.proof.count <= proofLimit else {
                throw bad("completions[\(index)].proof", "is \(completion.proof.count) bytes, over the \(proofLimit) that \(completion.tokens.count) tokens' proof may have")
            }
        }
        if let token = promptTokens.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw bad("prompt_tokens", "holds token id \(token) outside the vocabulary")
        }

        // hostile input the scorer used to let through
        guard completions.count <= limits.maxCompletions else {
            throw bad("completions", "has \(completions.count) completions, more than \(limits.maxCompletions)")
        }
        guard !task.taskID.isEmpty else { throw bad("task.task_id", "is empty") }
        guard !workerID.isEmpty else { throw bad("worker_id", "is empty") }
        guard task.difficulty.isFinite else { throw bad("task.difficulty", "is not finite") }
    }
}
