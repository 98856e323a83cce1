import Wire

func validate(_ group: RolloutGroup, run: String, latestVersion: Int, vocabularySize: Int) throws {
    func bad(_ field: String, _ reason: String) -> WireError {
        WireError.invalidField(type: "RolloutGroup", messageID: group.messageID, field: field, reason: reason)
    }
    guard group.envelope.runID == run else { throw bad("envelope.run_id", "is '\(group.envelope.runID)', not this run '\(run)'") }
    guard latestVersion >= 0, group.policyVersion <= UInt64(latestVersion) else {
        throw bad("policy_version", "\(group.policyVersion) is from the future (newest checkpoint is \(latestVersion))")
    }
    guard group.completions.count == Int(group.task.groupSize), !group.completions.isEmpty else {
        throw bad("completions", "has \(group.completions.count) completions for group size \(group.task.groupSize)")
    }
    let vocabulary = Int32(vocabularySize)
    for (index, completion) in group.completions.enumerated() {
        guard !completion.tokens.isEmpty, completion.tokens.count <= 4096 else {
            throw bad("completions[\(index)].tokens", "has \(completion.tokens.count) tokens (1...4096 allowed)")
        }
        if let token = completion.tokens.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw bad("completions[\(index)].tokens", "holds token id \(token) outside the vocabulary 0..<\(vocabulary)")
        }
        guard completion.logprobs.count == completion.tokens.count else {
            throw bad("completions[\(index)].logprobs", "has \(completion.logprobs.count) values for \(completion.tokens.count) tokens")
        }
        guard completion.logprobs.allSatisfy({ $0.isFinite && $0 <= 1e-4 }) else {
            throw bad("completions[\(index)].logprobs", "holds a value that is not a finite log-probability")
        }
    }
    if let token = group.promptTokens.first(where: { $0 < 0 || $0 >= vocabulary }) {
        throw bad("prompt_tokens", "holds token id \(token) outside the vocabulary")
    }
}
