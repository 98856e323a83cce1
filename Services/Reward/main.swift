import Foundation
import Messaging
import Model
import RL
import ServiceKit
import Synchronization
import Wire

// tributary-reward: a reward scorer. Runs the task's verifier on every completion, shapes the rewards,
// normalises advantages within the group, counts groups with no signal, publishes scored groups.

let rewardSettings = [
    Setting("run.id", "default", "run to serve"),
    Setting("reward.mean_only", "false", "advantages as r - mean (no division by the standard deviation)"),
    Setting("reward.prefetch", "4", "rollout groups held at once"),
]

/// The run's environment, built from the run file the learner stored in Redis.
final class EnvironmentCache: Sendable {
    private let cached = Mutex<(toml: String, environment: any Environment)?>(nil)

    func environment(fabric: Fabric) async throws -> (any Environment)? {
        guard let config = try await fabric.redis.hget(fabric.names.stateKey, field: "config") else { return nil }
        let toml = String(decoding: config, as: UTF8.self)
        if let hit = cached.withLock({ $0 }), hit.toml == toml { return hit.environment }
        let runConfig = try RunConfig(try Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"))
        let environment = try EnvironmentFactory.make(runConfig.environment)
        cached.withLock { $0 = (toml, environment) }
        return environment
    }
}

await ServiceRuntime.main(role: "reward", abstract: "Reward scorer: verifies completions, computes group advantages.",
                          specs: rewardSettings, throughputUnit: "groups/s") { context in
    let fabric = context.fabric
    let store = CheckpointStore(names: fabric.names, redis: fabric.redis)
    let environments = EnvironmentCache()
    let formats = RunFormatCache()
    let meanOnly = try context.settings.bool("reward.mean_only")
    let compute = ComputeQueue(label: "reward.verify")
    let meter = RateMeter()
    context.status.set(state: "waiting for rollouts")

    try await context.consume(queue: fabric.names.rolloutsQueue, prefetch: try context.settings.int("reward.prefetch", in: 1...1024)) { delivery in
        let group: RolloutGroup
        let format: RunFormat
        do {
            group = try RolloutGroup.decode(delivery.body, deliveredID: delivery.messageID)
            guard let published = try await formats.usable(names: fabric.names, redis: fabric.redis, logger: context.logger) else {
                throw RunNotPublished()
            }
            format = published
            let latest = try await store.latest().map { Int(clamping: $0) } ?? -1
            try validate(group, run: fabric.names.run, latestVersion: latest, vocabularySize: format.vocabSize)
        } catch let error as WireError {
            await fabric.deadLetter(delivery, reason: error.reason)
            return
        } catch is RunNotPublished {
            try await delivery.nack(requeue: true)
            try await Task.sleep(for: .seconds(1))
            return
        }
        guard let environment = try await environments.environment(fabric: fabric) else {
            // The run's state is not written yet: hand it back and look again shortly.
            try await delivery.nack(requeue: true)
            try await Task.sleep(for: .seconds(1))
            return
        }
        context.status.set(state: "scoring", detail: group.task.taskID)
        let started = ContinuousClock.now
        let task = RLTask(id: group.task.taskID, prompt: group.task.prompt, answer: group.task.answer,
                          metadata: group.task.metadata, difficulty: group.task.difficulty)
        let completions = group.completions.map(\.tokens)
        // Verifiers may run programs (code tasks): off the cooperative pool.
        let scored = try await compute.run {
            GroupScoring.score(task: task, completions: completions, environment: environment, format: format.prompt, meanOnly: meanOnly)
        }
        var message = ScoredGroupMessage()
        message.envelope = fabric.envelope()
        message.task = group.task
        message.policyVersion = group.policyVersion
        message.promptTokens = group.promptTokens
        message.workerID = group.workerID
        message.rolloutMessageID = group.messageID
        message.timings = group.timings
        message.timings.scoreMs = (ContinuousClock.now - started).milliseconds
        message.completions = zip(group.completions, scored.rewards).enumerated().map { index, pair in
            ScoredCompletion.with {
                $0.completion = pair.0
                $0.reward = pair.1.total
                $0.components = pair.1.components
                $0.advantage = scored.advantages?[index] ?? 0
                $0.correct = (pair.1.components["correctness"] ?? 0) >= 1
            }
        }
        // A group with no signal is not trained on, but the learner still counts it (and its accuracy) and replaces it.
        if !scored.hasSignal {
            try await fabric.incrementCounter("zero_signal_groups")
            context.metrics.increment("zero_signal_groups_total")
        }
        try await fabric.publish(message, exchange: Names.scoredExchange, routingKey: fabric.names.run)
        _ = try await fabric.redis.command(["XADD", fabric.names.scoredLogKey, "MAXLEN", "~", "100000", "*", "task", group.task.taskID,
                                            "group", group.messageID, "worker", group.workerID, "version", String(group.policyVersion),
                                            "task_redelivered", group.taskRedelivered ? "1" : "0", "signal", scored.hasSignal ? "1" : "0"])
        try await delivery.ack()
        meter.record()
        context.metrics.increment("scored_groups_total")
        context.status.update { $0.throughput = meter.perSecond; $0.policyVersion = Int(clamping: group.policyVersion); $0.state = "waiting for rollouts" }
    }
}

/// The learner has not written the run's format yet: the group waits.
struct RunNotPublished: Error {}

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
