import Wire

func validate(_ task: RolloutTask, run: String, maxGroup: Int) throws {
    func bad(_ field: String, _ reason: String) -> WireError {
        WireError.invalidField(type: "RolloutTask", messageID: task.messageID, field: field, reason: reason)
    }
    guard task.envelope.runID == run else { throw bad("envelope.run_id", "is '\(task.envelope.runID)', not this run '\(run)'") }
    guard task.groupSize >= 1, task.groupSize <= maxGroup else { throw bad("group_size", "\(task.groupSize) is outside 1...\(maxGroup)") }
    guard task.sampling.maxNewTokens >= 1, task.sampling.maxNewTokens <= 4096 else { throw bad("sampling.max_new_tokens", "\(task.sampling.maxNewTokens) is outside 1...4096") }
    guard !task.prompt.isEmpty else { throw bad("prompt", "is empty") }
    guard task.sampling.temperature >= 0, task.sampling.temperature.isFinite else { throw bad("sampling.temperature", "must be finite and >= 0") }
}
