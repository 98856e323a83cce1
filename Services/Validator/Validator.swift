import Checkpoints
import Config
import Foundation
import Messaging
import Metrics
import Model
import Runtime
import Signing
import Store
import Synchronization
import Wire

/// Stands between the reward scorers and the learner when the run validates (`validation.enabled`). Every scored group
/// passes through it: a share p of them (`validation.fraction`, live; every group of a worker on probation), drawn by
/// the validator where no worker can see, is re-run through the policy version it claims (its completions in one
/// batched prefill, `CompletionVerifier`): the hidden-state proof, the log-probs, the sampling support, the seeded
/// sampler's choice and the ending. A group that passes, or that was not drawn, goes on to the learner; one that fails is dead-lettered with
/// the failing check and the measured error, and counts against its worker's key: probation after
/// `validation.probation_failures`, a ban after `validation.ban_failures`.
struct Validator: Role {
    let context: ServiceContext
    let store: CheckpointStore
    let registry: WorkerRegistry
    let runs = RunCache()
    let policies = PolicyCache()
    let prefetch: Int
    let maxLoaded: Int
    let verdicts: [String: Counter]
    let checkTime: Metrics.Timer
    /// Failures are counted and judged one at a time: two of a key's groups failing at once would both read the count
    /// that bans it.
    let penalties = SerialGate()

    init(context: ServiceContext) throws {
        self.context = context
        let publicKey = try context.settings.string("validator.checkpoint_public_key")
        let verifier = publicKey.isEmpty ? nil : try VerifyingKey(hex: publicKey)
        store = CheckpointStore(names: context.fabric.names, redis: context.fabric.checkpointRedis, verifier: verifier)
        registry = WorkerRegistry(names: context.fabric.names, redis: context.fabric.redis)
        prefetch = try context.settings.int("validator.prefetch")
        maxLoaded = try context.settings.int("validator.loaded_versions")
        verdicts = Dictionary(uniqueKeysWithValues: Verdict.Outcome.allCases.map {
            ($0.rawValue, Counter(label: "tributary_validation_groups_total", dimensions: context.dimensions + [("verdict", $0.rawValue)]))
        })
        checkTime = Metrics.Timer(label: "tributary_validation_check_seconds", dimensions: context.dimensions, preferredDisplayUnit: .seconds)
    }

    func run() async throws {
        // a validator of a run that does not validate would take the learner's input away from it: wait for one that does
        context.status.set(state: "waiting for a validating run")
        while try await runs.current(fabric: context.fabric)?.config.validation.enabled != true {
            if context.stop.isStopping { return }
            try await Task.sleep(for: .seconds(1))
        }
        context.status.set(state: "waiting for scored groups")
        // the groups held are handled at once: most are not drawn and only wait on Redis and the broker, so one at a time
        // made the validator the pipeline's bottleneck (steps/min 0.86 of a run without it at p = 0.1); checks still run
        // one at a time, on the policy cache's compute queue
        try await context.consume(queue: context.fabric.names.scoredQueue, prefetch: prefetch, concurrency: prefetch) { delivery in
            try await validate(delivery)
        }
    }

    func validate(_ delivery: Delivery) async throws {
        let fabric = context.fabric
        let group: ScoredGroupMessage
        do {
            guard delivery.body.count <= WireLimits.maxGroupBytes else {
                throw WireError.invalidField(type: "ScoredGroup", messageID: delivery.messageID ?? "?", field: "(message)",
                                             reason: "is \(delivery.body.count) bytes, over the \(WireLimits.maxGroupBytes) a group may have")
            }
            group = try ScoredGroupMessage.decode(delivery.body, deliveredID: delivery.messageID)
        } catch let error as WireError {
            return await fabric.deadLetter(delivery, reason: error.reason)
        }
        guard let run = try await runs.current(fabric: fabric) else {
            // the learner has not written the run yet: hand it back and look again shortly
            try await delivery.nack(requeue: true)
            try await Task.sleep(for: .seconds(1))
            return
        }
        let settings = run.config.validation
        let key = Hex.encode(Array(group.workerKey))
        let (banReason, failures) = try await registry.validationStanding(of: key)
        // banned since it was scored: refused here, before the learner can take it
        if let reason = banReason {
            try await record(.refusedBanned, group, key: key, detail: reason)
            return await fabric.deadLetter(delivery, reason: "worker \(key.prefix(16))… is banned (\(reason))")
        }
        let onProbation = failures >= settings.probationFailures
        // drawn here, from the system's generator: nothing the worker sent or can see decides it
        let drawn = onProbation || Double.random(in: 0..<1) < settings.fraction
        // each verdict is recorded before the group goes on: whatever the learner trains has its verdict in the log (a
        // crash between the two re-checks the redelivered group and records it twice, never not at all)
        guard drawn else {
            try await record(.unsampled, group, key: key)
            return try await forward(delivery)
        }
        context.status.set(state: "validating", detail: group.task.taskID)
        let started = ContinuousClock.now
        let outcome: GroupCheck
        do {
            outcome = try await check(group, settings: settings)
        } catch let error as CheckpointStoreError {
            // the claimed version is gone (older than the broadcaster keeps, so the learner will drop the group as stale) or
            // does not verify (an operator's problem, logged): nothing to check against
            context.logger.warning("group \(group.rolloutMessageID) passed on unchecked: version \(group.policyVersion): \(error)")
            try await record(.unchecked, group, key: key, detail: "version \(group.policyVersion): \(error)")
            return try await forward(delivery)
        }
        checkTime.recordNanoseconds(Int64((ContinuousClock.now - started).milliseconds * 1e6))
        switch outcome {
        case .passed(let worstLogprob):
            try await record(.passed, group, key: key, detail: String(format: "max |Δ logprob| %.2e", worstLogprob))
            try await forward(delivery)
        case .failed(let reason):
            try await fabric.incrementCounter("validation_failed_groups")
            await fabric.deadLetter(delivery, reason: "validation failed: \(reason)")
            try await penalties.serialized {
                try await record(.failed, group, key: key, detail: reason)
                // read back after the count: another validator may have failed the same key meanwhile
                try await penalise(key, failures: try await registry.validationStanding(of: key).failures, settings: settings, reason: reason)
            }
        }
        context.status.update { $0.state = "waiting for scored groups"; $0.detail = ""; $0.policyVersion = Int(clamping: group.policyVersion) }
    }

    /// The group passed on to the learner unchanged (the same bytes, message id and headers' meaning).
    func forward(_ delivery: Delivery) async throws {
        let fabric = context.fabric
        try await fabric.amqp.publish(exchange: Names.validatedExchange, routingKey: fabric.names.run, body: delivery.body,
                                      messageID: delivery.messageID ?? UUID().uuidString,
                                      headers: ["run": .string(fabric.names.run), "sender": .string(fabric.identity.instance)])
        try await delivery.ack()
    }

    enum GroupCheck: Sendable {
        case passed(worstLogprob: Float)
        case failed(String)
    }

    /// Every completion of the group re-run through the claimed version, on the policy cache's compute queue.
    func check(_ group: ScoredGroupMessage, settings: ValidationSettings) async throws -> GroupCheck {
        let tolerances = VerificationTolerances(proof: settings.proofThresholds == .toploc ? .default : .float32)
        let version = group.policyVersion
        let policy = try await policies.policy(version: version, keep: maxLoaded) { try await store.read(version: version).bytes }
        let options = group.task.sampling.options
        let prompt = group.promptTokens
        let completions = group.completions.map {
            SampledCompletion(tokens: $0.completion.tokens, logprobs: $0.completion.logprobs, finishedWithEOS: $0.completion.finishedWithEos,
                              proof: Array($0.completion.proof))
        }
        return try await policies.compute.run {
            // the sampler feeds bos for an empty prompt
            let fed = prompt.isEmpty ? [policy.bosToken] : prompt
            guard fed.allSatisfy({ $0 >= 0 && Int($0) < policy.vocabSize }), fed.count <= policy.contextLength else {
                return .failed("prompt_tokens do not fit version \(version)'s vocabulary and context")
            }
            // the whole group in one prefill (batched within the verifier's memory bound)
            let verifications = CompletionVerifier.verify(policy: policy, prompt: fed, completions: completions, options: options, promptIndex: 0,
                                                          tolerances: tolerances)
            var worst: Float = 0
            for (index, verification) in verifications.enumerated() {
                worst = max(worst, verification.maxLogprobError)
                if let failure = verification.failures.first {
                    let at = failure.position.map { " at token \($0)" } ?? ""
                    return .failed("completion \(index): check '\(failure.check)'\(at): measured \(failure.measured), limit \(failure.limit) (\(failure.detail))")
                }
            }
            return .passed(worstLogprob: worst)
        }
    }

    /// Probation is the failure count itself (read on every group); a ban is written at once, so scorers and validators
    /// refuse the key's next group, and sent to the learner, which drops the key's groups it holds and audits the ban.
    func penalise(_ key: String, failures: Int, settings: ValidationSettings, reason: String) async throws {
        let fabric = context.fabric
        if failures == settings.probationFailures && failures < settings.banFailures {
            context.logger.warning("worker \(key.prefix(16))… on probation (every group checked): \(reason)")
            try await event(["event": "probation", "key": key, "failures": String(failures), "reason": reason])
        }
        guard failures >= settings.banFailures, try await registry.banReason(of: key) == nil else { return }
        let why = "failed validation \(failures) times; last: \(reason)"
        try await registry.ban(key, reason: why)
        let used = try await stepsThatUsed(key)
        var fields = ["event": "ban", "key": key, "by": fabric.identity.instance, "reason": why, "steps_that_used_its_groups": used.map(String.init).joined(separator: ",")]
        if !used.isEmpty {
            try await fabric.incrementCounter("banned_after_use")
            context.logger.error("worker \(key.prefix(16))… banned after steps \(used.map(String.init).joined(separator: ", ")) trained on its groups")
            fields["used"] = "1"
        }
        try await event(fields)
        var command = ControlCommand()
        command.envelope = fabric.envelope()
        command.banWorker = Tributary_V1_BanWorker.with {
            $0.workerKey = Data(Hex.decode(key) ?? [])
            $0.reason = why
        }
        // the learner may be between lives: the ban is already in Redis, the command only updates what it holds
        do {
            try await fabric.amqp.publish(exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: fabric.names.run),
                                          body: try command.encoded(), messageID: command.messageID, mandatory: false)
        } catch {
            context.logger.warning("ban of \(key.prefix(16))… not sent to the learner: \(error)")
        }
        context.logger.error("banned worker \(key.prefix(16))…: \(why)")
    }

    /// Learner steps whose batch held a group of `key` (the scored log names each group's key, the batch log each step's groups).
    func stepsThatUsed(_ key: String) async throws -> [Int] {
        let redis = context.fabric.redis
        let names = context.fabric.names
        var groups = Set<String>()
        let text = { (entry: RedisStreamEntry, field: String) in entry.fields[field].map { String(decoding: $0, as: UTF8.self) } }
        for entry in try await redis.xrange(names.scoredLogKey) where text(entry, "key") == key {
            if let group = text(entry, "group") { groups.insert(group) }
        }
        guard !groups.isEmpty else { return [] }
        var steps: [Int] = []
        for entry in try await redis.xrange(names.batchesLogKey) {
            let fed = (text(entry, "groups") ?? "").split(separator: ",").map(String.init)
            if fed.contains(where: groups.contains), let step = text(entry, "step").flatMap({ Int($0) }) { steps.append(step) }
        }
        return steps
    }

    /// One verdict: counted for the key (its reputation: passed, failed, unchecked), for the run and in the verdict log.
    func record(_ outcome: Verdict.Outcome, _ group: ScoredGroupMessage, key: String, detail: String = "") async throws {
        let fabric = context.fabric
        verdicts[outcome.rawValue]?.increment()
        var fields = ["verdict": outcome.rawValue, "group": group.rolloutMessageID, "task": group.task.taskID, "key": key,
                      "version": String(group.policyVersion), "by": fabric.identity.instance]
        if !detail.isEmpty { fields["detail"] = String(detail.prefix(1000)) }
        // the key's count and the log entry in one round trip
        var log: [any RedisArgument] = ["XADD", fabric.names.verdictsLogKey, "MAXLEN", "~", 100_000, "*"]
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) { log += [name, value] }
        let replies = try await fabric.redis.pipeline([["HINCRBY", fabric.names.workerStatsKey, "\(key).\(outcome.statName)", "1"], log])
        for reply in replies { if case let .error(message) = reply { throw RedisError.server(message: message, command: "HINCRBY/XADD") } }
    }

    func event(_ fields: [String: String]) async throws {
        let fabric = context.fabric
        _ = try await fabric.redis.xadd(fabric.names.eventsLogKey, fields: fields.mapValues { $0 as any RedisArgument }, maxLength: 10_000)
    }
}

/// What a validator decided about one group.
enum Verdict {
    enum Outcome: String, CaseIterable, Sendable {
        /// Not drawn: passed on unchecked.
        case unsampled
        /// Drawn, checked, passed on.
        case passed
        /// Drawn, checked, refused.
        case failed
        /// Drawn, but its version could not be loaded: passed on unchecked.
        case unchecked
        /// Its key was banned after the group was scored.
        case refusedBanned = "refused_banned"

        /// The per-key count in the worker stats (`KEY.validation_OUTCOME`).
        var statName: String { "validation_\(rawValue)" }
    }
}

/// The policy versions a validator holds, newest kept, each touched only on the compute queue.
final class PolicyCache: Sendable {
    let compute = ComputeQueue(label: "validator.model")
    private let loaded = Mutex<[UInt64: any Policy]>([:])

    /// The policy of `version`, fetched with `read` (verified shards) when not held; at most `keep` versions are held.
    func policy(version: UInt64, keep: Int, read: () async throws -> [UInt8]) async throws -> any Policy {
        if let held = loaded.withLock({ $0[version] }) { return held }
        let bytes = try await read()
        let policy = try await compute.run { try Policies.fromSafetensors(bytes) }
        loaded.withLock { held in
            held[version] = policy
            while held.count > max(1, keep), let oldest = held.keys.min() { held.removeValue(forKey: oldest) }
        }
        return policy
    }
}
