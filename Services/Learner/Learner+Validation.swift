import Wire

extension Learner {
    func validate(_ message: ScoredGroupMessage) throws {
        func bad(_ field: String, _ reason: String) -> WireError {
            WireError.invalidField(type: "ScoredGroup", messageID: message.messageID, field: field, reason: reason)
        }
        guard message.envelope.runID == names.run else { throw bad("envelope.run_id", "is '\(message.envelope.runID)', not this run '\(names.run)'") }
        guard message.policyVersion <= version else { throw bad("policy_version", "\(message.policyVersion) is from the future (learner is at \(version))") }
        guard !message.rolloutMessageID.isEmpty else { throw bad("rollout_message_id", "is empty") }
        guard !message.completions.isEmpty, message.completions.count <= 4096 else { throw bad("completions", "has \(message.completions.count) entries") }
        let vocabulary = Int32(vocabSize)
        let context = contextLength
        for (index, scored) in message.completions.enumerated() {
            let completion = scored.completion
            guard completion.tokens.count == completion.logprobs.count, !completion.tokens.isEmpty else {
                throw bad("completions[\(index)]", "has \(completion.tokens.count) tokens and \(completion.logprobs.count) logprobs")
            }
            guard completion.tokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }) else { throw bad("completions[\(index)].tokens", "holds ids outside the vocabulary") }
            guard message.promptTokens.count + completion.tokens.count <= context + 1 else {
                throw bad("completions[\(index)]", "prompt + completion (\(message.promptTokens.count + completion.tokens.count) tokens) exceed the context \(context)")
            }
            guard scored.advantage.isFinite, completion.logprobs.allSatisfy(\.isFinite) else { throw bad("completions[\(index)]", "holds a non-finite number") }
        }
        guard message.promptTokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }), !message.promptTokens.isEmpty else {
            throw bad("prompt_tokens", "are empty or hold ids outside the vocabulary")
        }
    }
}
