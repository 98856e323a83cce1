import Foundation
import Messaging
import Model
import RL
import ServiceKit
import Store
import Synchronization
import Wire

// tributary-rollout: an inference worker. Takes a task, makes sure it holds a policy fresh enough for it
// (fetching and verifying the announced checkpoint), generates G completions with per-token log-probs,
// publishes the group. Any number of workers can join or leave during a run.

let rolloutSettings = [
    Setting("run.id", "default", "run to serve"),
    Setting("rollout.version_wait_seconds", "120", "how long to wait for a fresh enough policy before handing a task back"),
    Setting("rollout.max_group_size", "256", "largest G accepted from a task"),
    Setting("rollout.checkpoint_redis_url", "", "Redis to read checkpoints from: the nearest relay (a replica); empty: redis.url"),
]

/// The worker's policy: the model and its version, touched only on the compute queue; and the newest version
/// announced on the checkpoint fanout (one writer: the announcement listener).
final class PolicyHolder: Sendable {
    let compute = ComputeQueue(label: "rollout.model")
    let model = Confined<(any Policy)?>(nil)
    let version = Atomic<Int>(-1)
    let announcedVersion = Atomic<Int>(-1)
}

await ServiceRuntime.main(role: "rollout", abstract: "Inference worker: generates rollout groups with a fresh enough policy.",
                          specs: rolloutSettings, throughputUnit: "tokens/s") { context in
    let fabric = context.fabric
    // Checkpoints come from the nearest Redis (a read-only relay is enough); heartbeats and logs go to redis.url.
    let relayURL = try context.settings.string("rollout.checkpoint_redis_url")
    let checkpointRedis = relayURL.isEmpty ? fabric.redis : RedisClient(endpoint: try RedisEndpoint(url: relayURL))
    if !relayURL.isEmpty {
        try await checkpointRedis.connect()
        context.logger.info("reading checkpoints from \(checkpointRedis.endpoint)")
    }
    let store = CheckpointStore(names: fabric.names, redis: checkpointRedis)
    // The run's tokenizer and template, from the same nearby Redis (checked against the SHA-256 in the run state).
    let formats = RunFormatCache()
    let policy = PolicyHolder()
    let versionWait = try context.settings.double("rollout.version_wait_seconds")
    let maxGroup = try context.settings.int("rollout.max_group_size", in: 1...4096)
    let meter = RateMeter()

    // Announcements wake a worker waiting for a version; late joiners read `latest` instead.
    let announcements = Task {
        let stream = fabric.amqp.consume(queue: "", prefetch: 8, declare: .exclusiveTemporary,
                                         bindings: [BindingSpec(queue: "", exchange: Names.checkpointsExchange)])
        for try await delivery in stream {
            try await delivery.ack()
            if let announcement = try? CheckpointAnnouncement.decode(delivery.body, deliveredID: delivery.messageID),
               announcement.envelope.runID == fabric.names.run {
                policy.announcedVersion.store(max(policy.announcedVersion.load(ordering: .relaxed), Int(announcement.version)), ordering: .relaxed)
            }
        }
    }
    defer { announcements.cancel() }

    /// Loads the newest verified checkpoint if the held one is older than `minimum`; false if none is fresh enough in time.
    @Sendable func ensurePolicy(minimum: Int) async throws -> Bool {
        if policy.version.load(ordering: .relaxed) >= minimum { return true }
        let deadline = ContinuousClock.now + .seconds(versionWait)
        while !context.stop.isRequested {
            if let newest = try await store.latest(), Int(newest) >= minimum {
                let latest = Int(newest)
                context.status.set(state: "fetching checkpoint", detail: "version \(latest)")
                let started = ContinuousClock.now
                let (bytes, manifest) = try await store.read(version: UInt64(latest))  // every shard verified
                let fetchedMs = (ContinuousClock.now - started).milliseconds
                try await policy.compute.run {
                    if let model = policy.model.value, (try? model.loadWeights(safetensors: bytes)) != nil {
                        return
                    }
                    policy.model.value = try Policies.fromSafetensors(bytes)  // whatever the architecture
                }
                policy.version.store(latest, ordering: .relaxed)
                context.status.update { $0.policyVersion = latest }
                _ = try await fabric.redis.command(["XADD", fabric.names.loadsLogKey, "MAXLEN", "~", "100000", "*",
                                                    "worker", fabric.identity.instance, "version", String(latest), "verified", "1",
                                                    "shards", String(manifest.shards.count), "sha256", manifest.sha256,
                                                    "loaded_ms", String(Int64(Date().timeIntervalSince1970 * 1000)),
                                                    "fetch_ms", String(format: "%.1f", fetchedMs)])
                context.metrics.increment("checkpoints_loaded_total")
                context.logger.info("loaded version \(latest) (\(manifest.shards.count) shards verified) in \(String(format: "%.0f", fetchedMs)) ms")
                return true
            }
            if ContinuousClock.now > deadline { return false }
            context.status.set(state: "waiting for policy", detail: "need version \(minimum)")
            // Wake on the announcement (watched every 5 ms, no Redis traffic); look at `latest` every 500 ms in case one was missed.
            let recheck = ContinuousClock.now + .milliseconds(500)
            while policy.announcedVersion.load(ordering: .relaxed) < minimum, ContinuousClock.now < recheck, !context.stop.isRequested {
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        return false
    }

    context.status.set(state: "waiting for tasks")
    try await context.consume(queue: fabric.names.tasksQueue, prefetch: 1) { delivery in
        let task: RolloutTask
        do {
            task = try RolloutTask.decode(delivery.body, deliveredID: delivery.messageID)
            try validate(task, run: fabric.names.run, maxGroup: maxGroup)
        } catch {
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        let fetchStarted = ContinuousClock.now
        // a version past Int's range can never be reached: it waits like any other future version, then goes back
        guard try await ensurePolicy(minimum: Int(clamping: task.minPolicyVersion)) else {
            // No fresh enough policy in time (or stopping): hand the task back for later or for another worker.
            try await delivery.nack(requeue: true)
            return
        }
        let fetchMs = (ContinuousClock.now - fetchStarted).milliseconds
        guard let format = try await formats.usable(names: fabric.names, redis: checkpointRedis, logger: context.logger) else {
            // The run's format is not published (or is mid-update): hand the task back and look again shortly.
            try await delivery.nack(requeue: true)
            try await Task.sleep(for: .seconds(1))
            return
        }
        let prompt = format.prompt.promptTokens(task.prompt)
        let version = policy.version.load(ordering: .relaxed)
        context.status.set(state: "generating", detail: task.taskID)
        let generateStarted = ContinuousClock.now
        let options = SamplingOptions(temperature: task.sampling.temperature, topP: task.sampling.topP == 0 ? 1 : task.sampling.topP,
                                      topK: Int(task.sampling.topK), maxNewTokens: Int(task.sampling.maxNewTokens), seed: task.sampling.seed)
        let result: Result<[SampledCompletion], Error> = try await policy.compute.run {
            guard let model = policy.model.value else { throw SettingsError(problem: "no policy loaded") }
            // the held policy must read every id of the run's tokenizer (a policy of an earlier run under this id may not)
            if let token = prompt.first(where: { $0 < 0 || Int($0) >= model.vocabSize }) {
                return .failure(WireError.invalidField(type: "RolloutTask", messageID: task.messageID, field: "prompt",
                                                       reason: "encodes to token \(token), outside the held policy's vocabulary (\(model.vocabSize))"))
            }
            guard prompt.count + options.maxNewTokens <= model.contextLength else {
                return .failure(WireError.invalidField(type: "RolloutTask", messageID: task.messageID, field: "prompt",
                                                       reason: "\(prompt.count) tokens + max_new_tokens \(options.maxNewTokens) exceed the context \(model.contextLength)"))
            }
            return .success(model.sample(prompt: prompt, count: Int(task.groupSize), options: options))
        }
        let completions: [SampledCompletion]
        switch result {
        case let .success(value): completions = value
        case let .failure(error):
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        let generateMs = (ContinuousClock.now - generateStarted).milliseconds
        var group = RolloutGroup()
        group.envelope = fabric.envelope()
        group.task = task
        group.policyVersion = UInt64(version)
        group.promptTokens = prompt
        group.completions = completions.map { sample in
            Completion.with {
                $0.tokens = sample.tokens
                $0.logprobs = sample.logprobs
                $0.finishedWithEos = sample.finishedWithEOS
            }
        }
        group.workerID = fabric.identity.instance
        group.taskRedelivered = delivery.redelivered
        group.timings = Timings.with {
            $0.checkpointFetchMs = fetchMs
            $0.generateMs = generateMs
        }
        try await fabric.publish(group, exchange: Names.rolloutsExchange, routingKey: fabric.names.run)
        // Acknowledged only once the group is safely with the broker.
        try await delivery.ack()
        let tokens = completions.reduce(0) { $0 + $1.tokens.count }
        meter.record(tokens)
        context.metrics.increment("rollout_groups_total")
        context.metrics.increment("generated_tokens_total", by: Double(tokens))
        context.status.update { $0.throughput = meter.perSecond; $0.state = "waiting for tasks"; $0.detail = "" }
    }
}

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
