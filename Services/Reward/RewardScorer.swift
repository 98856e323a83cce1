import Checkpoints
import Config
import Foundation
import Messaging
import Metrics
import RL
import Runtime
import Signing
import Store
import Synchronization
import Wire

/// Takes each rollout group, checks it, verifies every completion with the run's environment, shapes the rewards as
/// the run file says, normalises advantages within the group and publishes the scored group.
struct RewardScorer: Role {
    let context: ServiceContext
    let store: CheckpointStore
    let ledger: TaskLedger
    let registry: WorkerRegistry
    let runs = RunCache()
    let formats = RunFormatCache()
    let compute = ComputeQueue(label: "reward.verify")
    let meter = RateMeter()
    let prefetch: Int
    let scored: Counter
    let zeroSignal: Counter

    init(context: ServiceContext) throws {
        self.context = context
        store = CheckpointStore(names: context.fabric.names, redis: context.fabric.checkpointRedis)
        ledger = TaskLedger(names: context.fabric.names, redis: context.fabric.redis)
        registry = WorkerRegistry(names: context.fabric.names, redis: context.fabric.redis)
        prefetch = try context.settings.int("reward.prefetch")
        scored = Counter(label: "tributary_scored_groups_total", dimensions: context.dimensions)
        zeroSignal = Counter(label: "tributary_zero_signal_groups_total", dimensions: context.dimensions)
        // A code run's groups fail here (and are dead-lettered with the reason): say so in every heartbeat.
        if SandboxPolicy.process.refusal != nil {
            context.status.addCaveat("code tasks refused: no namespaces for the sandbox and \(SandboxPolicy.allowWeakIsolationKey) is false")
        }
    }

    func run() async throws {
        context.status.set(state: "waiting for rollouts")
        try await context.consume(queue: context.fabric.names.rolloutsQueue, prefetch: prefetch) { delivery in
            try await score(delivery)
        }
    }

    func score(_ delivery: Delivery) async throws {
        let fabric = context.fabric
        let group: RolloutGroup
        let signer: String
        let format: RunFormat
        let run: RunCache.Run
        let issued: RolloutTask
        do {
            guard delivery.body.count <= WireLimits.maxGroupBytes else {
                throw WireError.invalidField(type: "RolloutGroup", messageID: delivery.messageID ?? "?", field: "(message)",
                                             reason: "is \(delivery.body.count) bytes, over the \(WireLimits.maxGroupBytes) a group may have")
            }
            group = try RolloutGroup.decode(delivery.body, deliveredID: delivery.messageID)
            signer = try await knownSigner(of: group)
            guard let published = try await formats.usable(names: fabric.names, redis: fabric.redis, logger: context.logger),
                  let known = try await runs.current(fabric: fabric) else {
                // The learner has not written the run's format or config yet: hand it back and look again shortly.
                try await delivery.nack(requeue: true)
                try await Task.sleep(for: .seconds(1))
                return
            }
            (format, run) = (published, known)
            // from here on a refusal is the signer's own doing, and is counted against its key
            let open: RolloutTask?
            do {
                let latest = try await store.latest().map { Int(clamping: $0) } ?? -1
                try group.validate(RolloutGroup.Limits(run: fabric.names.run, newestVersion: latest, vocabularySize: format.vocabSize))
                guard try await registry.hasLoaded(signer, version: group.policyVersion) else {
                    throw WireError.invalidField(type: "RolloutGroup", messageID: group.messageID, field: "policy_version",
                                                 reason: "\(group.policyVersion) is not a version worker \(signer.prefix(16))… recorded loading")
                }
                // a task of an older epoch of this run id (started afresh since): acknowledged and counted, never scored
                if group.task.envelope.epoch < known.epoch {
                    try await fabric.incrementCounter("stale_epoch_groups")
                    try await registry.count(signer, "stale_epoch")
                    try await delivery.ack()
                    return
                }
                open = try await issuedTask(of: group, format: format)
            } catch let error as WireError {
                try await registry.count(signer, "refused.\(error.refusalKind)", detail: error.reason)
                throw error
            }
            guard let open else {
                // a late copy (its task was redelivered after a worker died, and already filled): nothing to score
                try await fabric.incrementCounter("late_groups")
                try await registry.count(signer, "late")
                try await logScored(group, signal: false, extra: ["late": "1"])
                try await delivery.ack()
                return
            }
            issued = open
        } catch let error as WireError {
            await fabric.deadLetter(delivery, reason: error.reason)
            return
        }
        context.status.set(state: "scoring", detail: issued.taskID)
        let started = ContinuousClock.now
        // scored against the task as the learner issued it: a worker's echo of answer or tests is never read
        let task = RLTask(id: issued.taskID, prompt: issued.prompt, answer: issued.answer, metadata: issued.metadata, difficulty: issued.difficulty)
        let completions = group.completions.map(\.tokens)
        let targetLength = issued.metadata[RunConfig.targetLengthMetadataKey].flatMap { Int($0) }
        // Verifiers may run programs (code tasks): off the cooperative pool.
        let result = try await compute.run {
            GroupScoring.score(task: task, completions: completions, environment: run.environment, format: format.prompt,
                               shaping: run.config.rewardShaping, targetLength: targetLength, meanOnly: run.config.meanOnlyAdvantages)
        }
        var message = ScoredGroupMessage()
        message.envelope = fabric.envelope()
        message.task = issued
        message.policyVersion = group.policyVersion
        message.promptTokens = group.promptTokens
        message.workerID = group.workerID
        message.workerKey = group.workerKey
        message.rolloutMessageID = group.messageID
        message.timings = group.timings
        message.timings.scoreMs = (ContinuousClock.now - started).milliseconds
        message.completions = zip(group.completions, result.rewards).enumerated().map { index, pair in
            ScoredCompletion.with {
                $0.completion = pair.0
                $0.reward = pair.1.total
                $0.components = pair.1.components
                $0.advantage = result.advantages?[index] ?? 0
                $0.correct = (pair.1.components["correctness"] ?? 0) >= 1
            }
        }
        // A group with no signal is not trained on, but the learner still counts it (and its accuracy) and replaces it.
        if !result.hasSignal {
            try await fabric.incrementCounter("zero_signal_groups")
            zeroSignal.increment()
        }
        try await fabric.publish(message, exchange: Names.scoredExchange, routingKey: fabric.names.run)
        try await logScored(group, signal: result.hasSignal)
        try await registry.count(signer, "accepted")
        try await delivery.ack()
        meter.record()
        scored.increment()
        context.status.update { $0.throughput = meter.perSecond; $0.policyVersion = Int(clamping: group.policyVersion); $0.state = "waiting for rollouts" }
    }
}

extension RewardScorer {
    /// One entry of the scored-group log (audits and tests): task, group, worker, version, whether the task was redelivered.
    func logScored(_ group: RolloutGroup, signal: Bool, extra: [String: String] = [:]) async throws {
        let fields = ["task": group.task.taskID, "group": group.messageID, "worker": group.workerID, "key": Hex.encode(Array(group.workerKey)),
                      "version": String(group.policyVersion),
                      "task_redelivered": group.taskRedelivered ? "1" : "0", "signal": signal ? "1" : "0",
                      // as the worker reports them (untrusted: for measurements, never decisions)
                      "fetch_ms": String(format: "%.1f", group.timings.checkpointFetchMs), "generate_ms": String(format: "%.1f", group.timings.generateMs)].merging(extra) { $1 }
        _ = try await context.fabric.redis.xadd(context.fabric.names.scoredLogKey, fields: fields.mapValues { $0 as any RedisArgument }, maxLength: 100_000)
    }

    /// The hex key that signed the group, when it verifies, is registered and is not banned. A bad signature or an unknown
    /// key is counted for the run, never against the key the group names (anyone can name any key).
    func knownSigner(of group: RolloutGroup) async throws -> String {
        let key: String
        do {
            // re-serializing and verifying a group of up to 8 MiB is CPU work: off the cooperative pool
            key = try await compute.run { try group.verifiedSigner().hex }
        } catch {
            try await context.fabric.incrementCounter("bad_signature_groups")
            throw error
        }
        guard try await registry.isRegistered(key) else {
            try await context.fabric.incrementCounter("unknown_worker_groups")
            throw WireError.invalidField(type: "RolloutGroup", messageID: group.messageID, field: "worker_key",
                                         reason: "\(key.prefix(16))… is not a registered worker of this run")
        }
        if let reason = try await registry.banReason(of: key) {
            try await registry.count(key, "refused.banned", detail: reason)
            throw WireError.invalidField(type: "RolloutGroup", messageID: group.messageID, field: "worker_key",
                                         reason: "\(key.prefix(16))… is banned (\(reason))")
        }
        return key
    }

    /// The ledger's copy of the group's task, which the group must match: same prompt (text and tokens), same group size;
    /// nil when the task was already closed (filled or replaced).
    func issuedTask(of group: RolloutGroup, format: RunFormat) async throws -> RolloutTask? {
        func bad(_ field: String, _ reason: String) -> WireError {
            WireError.invalidField(type: "RolloutGroup", messageID: group.messageID, field: field, reason: reason)
        }
        let issued: RolloutTask
        switch try await ledger.lookup(group.task.taskID) {
        case let .open(task): issued = task
        case let .closed(_, fingerprint):
            // a late copy is not scored; one that changed what it was given is a forgery, and refused as such
            if let fingerprint, fingerprint != (try TaskLedger.fingerprint(group.task)) {
                throw bad("task", "differs from the issued task's prompt, group size or sampling settings (the task is closed)")
            }
            return nil
        case .unknown: throw bad("task.task_id", "'\(group.task.taskID)' is not a task this run issued")
        }
        guard group.task.prompt == issued.prompt else { throw bad("task.prompt", "differs from the issued task's prompt") }
        guard group.promptTokens == format.prompt.promptTokens(issued.prompt) else {
            throw bad("prompt_tokens", "are not the run's encoding of the issued task's prompt")
        }
        guard group.task.groupSize == issued.groupSize else {
            throw bad("task.group_size", "\(group.task.groupSize) differs from the issued \(issued.groupSize)")
        }
        // temperature, top-k/top-p, length and seed: the learner trains under the sampler's distribution it issued
        guard group.task.sampling == issued.sampling else { throw bad("task.sampling", "differs from the issued task's sampling settings") }
        return issued
    }
}
