extension RolloutTask {
    /// What a rollout worker accepts from a task before it encodes the prompt.
    public struct Limits: Sendable, Equatable {
        public var run: String
        public var maxGroupSize: Int
        public var maxNewTokens: Int

        public init(run: String, maxGroupSize: Int, maxNewTokens: Int = 4096) {
            self.run = run
            self.maxGroupSize = maxGroupSize
            self.maxNewTokens = maxNewTokens
        }
    }

    /// Refuses a task a worker must not serve, naming the first field that is wrong.
    public func validate(_ limits: Limits) throws {
        let bad = FieldRefusal(type: "RolloutTask", messageID: messageID)
        // tributary-rollout's rules, in its order, so a task it refused gets the same refusal
        guard envelope.runID == limits.run else { throw bad("envelope.run_id", "is '\(envelope.runID)', not this run '\(limits.run)'") }
        guard groupSize >= 1, groupSize <= limits.maxGroupSize else { throw bad("group_size", "\(groupSize) is outside 1...\(limits.maxGroupSize)") }
        guard sampling.maxNewTokens >= 1, sampling.maxNewTokens <= limits.maxNewTokens else {
            throw bad("sampling.max_new_tokens", "\(sampling.maxNewTokens) is outside 1...\(limits.maxNewTokens)")
        }
        guard !prompt.isEmpty else { throw bad("prompt", "is empty") }
        guard sampling.temperature >= 0, sampling.temperature.isFinite else { throw bad("sampling.temperature", "must be finite and >= 0") }

        // hostile input the worker used to let through
        guard !taskID.isEmpty else { throw bad("task_id", "is empty") }
        // 0 is proto3's unset value and means no nucleus cut (top_p 1)
        guard sampling.topP >= 0, sampling.topP <= 1 else { throw bad("sampling.top_p", "must be finite and in 0...1") }
        guard difficulty.isFinite else { throw bad("difficulty", "is not finite") }
        guard minPolicyVersion <= largestIntVersion else { throw bad("min_policy_version", "\(minPolicyVersion) does not fit in Int") }
    }

    /// The checks a worker can make only once the prompt is encoded and a policy is held: every id is a row of the
    /// held policy (one of an earlier run under this id may be smaller), and the completion fits in its context.
    public func validateGeneration(promptTokens: [Int32], vocabularySize: Int, contextLength: Int) throws {
        let bad = FieldRefusal(type: "RolloutTask", messageID: messageID)
        if let token = promptTokens.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw bad("prompt", "encodes to token \(token), outside the held policy's vocabulary (\(vocabularySize))")
        }
        let maxNewTokens = Int(sampling.maxNewTokens)
        guard promptTokens.count + maxNewTokens <= contextLength else {
            throw bad("prompt", "\(promptTokens.count) tokens + max_new_tokens \(maxNewTokens) exceed the context \(contextLength)")
        }
    }
}
