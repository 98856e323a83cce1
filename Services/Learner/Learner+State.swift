import Checkpoints
import Compression
import Config
import Foundation
import Messaging
import Runtime
import Store
import Wire

extension Learner {
    /// Durable first (weights, optimizer, reference, step, and the batch's tasks closed as trained, in one fenced
    /// transaction), then the groups that fed the step are acknowledged.
    func commit(_ batch: Batch, snapshot: PolicySnapshot) async throws {
        let tasks = batch.groups.map(\.message.task)
        // the batch log is the audit of what fed each step: written with the step, so a crash cannot leave a step unlogged
        let batchEntry: [any RedisArgument] = [
            "XADD", names.batchesLogKey, "MAXLEN", "~", String(RunMetrics.keptEntries), "*",
            "step", String(step - 1), "min_version", String(max(Int(versionBase), Int(version) - 1 - config.asyncLevel)), "epoch", String(epoch),
            "versions", batch.groups.map { String($0.message.policyVersion) }.joined(separator: ","),
            "groups", batch.groups.map(\.message.rolloutMessageID).joined(separator: ","),
            "tasks", batch.groups.map(\.message.task.taskID).joined(separator: ","),
            "produced_version", String(version), "produced_sha256", snapshot.sha256]
        try await saveLearnerState(snapshot, ackAfter: batch.groups.map(\.delivery), also: try ledger.closeCommands(tasks, .trained, step: step) + [batchEntry])
        try await workers.countTrained(batch.groups.map { $0.message.workerKeyHex })
        // closed marks older than the kept steps go: a group for them is refused as unknown instead of late
        if step > ledgerKeepSteps, step % 16 == 0 {
            try await ledger.prune(below: step - ledgerKeepSteps)
        }
    }

    func snapshotPolicy() async throws -> PolicySnapshot {
        let trainer = self.trainer
        return try await compute.run {
            let raw = trainer.value.model.safetensorsBytes()
            return PolicySnapshot(rawBytes: raw.count, compressed: try Zstd.compress(raw, level: 1), sha256: sha256Hex(raw))
        }
    }

    func publishPolicy(_ snapshot: PolicySnapshot) async throws {
        let key = names.checkpoints.staging(version: version)
        try await lease.exec([["SET", key, snapshot.compressed]])
        let sha = snapshot.sha256
        var saved = PolicySaved()
        saved.envelope = envelope()
        saved.version = version
        saved.stagingKey = key
        saved.bytes = UInt64(snapshot.rawBytes)
        saved.sha256 = sha
        saved.savedAtUnixMs = WallClock.nowMs()
        try await fabric.publish(saved, exchange: Names.controlExchange, routingKey: names.policyRoutingKey)
    }

    /// Weights, optimizer, step (and, once, the frozen reference policy) with `also` in one fenced transaction, on disk
    /// before it returns (Redis fsyncs every write: `appendfsync always`); then the deliveries are acknowledged.
    func saveLearnerState(_ snapshot: PolicySnapshot, ackAfter deliveries: [Delivery], also: [[any RedisArgument]] = [], withReference: Bool = false) async throws {
        let trainer = self.trainer
        let (optimizer, reference) = try await compute.run {
            (try Zstd.compress(trainer.value.optimizer.stateBytes(), level: 1),
             withReference ? try trainer.value.referenceSafetensorsBytes().map { try Zstd.compress($0, level: 1) } : nil)
        }
        var fields: [any RedisArgument] = ["HSET", names.learnerStateKey, "step", String(step), "task_index", String(taskIndex),
                                           "epoch", String(epoch), "version_base", String(versionBase),
                                           "weights", snapshot.compressed, "optimizer", optimizer, "sha256", snapshot.sha256,
                                           "saved_ms", String(WallClock.nowMs())]
        if let reference { fields += ["reference", reference] }
        try await lease.exec([fields] + also)
        CrashPoint.hit(CrashPoint.learnerAfterSave)
        try await acknowledge(deliveries)
    }

    /// Acks after the step is durable. One on a replaced connection settles nothing: the group comes back and is
    /// dropped as a duplicate, its task closed as trained (counted as `acks_voided`).
    func acknowledge(_ deliveries: [Delivery]) async throws {
        var voided = 0
        for delivery in deliveries {
            do { try await delivery.ack() } catch AMQPError.deliveryVoid { voided += 1 }
        }
        if voided > 0 { try await fabric.incrementCounter("acks_voided", by: voided) }
    }

    func restore() async throws {
        let saved = try await reloadDurableState()
        guard let savedStep = saved["step"].flatMap({ Int(String(decoding: $0, as: UTF8.self)) }) else {
            throw LearnerStateError(key: names.learnerStateKey, problem: "holds no step")
        }
        step = savedStep
        epoch = saved["epoch"].flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 1
        versionBase = saved["version_base"].flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0
        taskIndex = saved["task_index"].flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
        // the run stood still while no learner ran: its open tasks' clocks did too (their groups may be waiting in the queue)
        if let savedMs = saved["saved_ms"].flatMap({ Int64(String(decoding: $0, as: UTF8.self)) }) {
            try await extendDeadlines(byMs: WallClock.nowMs() - savedMs)
        }
        context.logger.notice("restored step \(step) of epoch \(epoch) (version \(version))\(saved["reference"] == nil ? "" : ", the reference policy")")
    }

    /// The model, optimizer and reference policy from the last durable step (a restart, or a step that was not finite).
    @discardableResult
    func reloadDurableState() async throws -> [String: [UInt8]] {
        let saved = try await fabric.redis.hgetall(names.learnerStateKey)
        guard saved["step"] != nil, let weights = saved["weights"], let optimizer = saved["optimizer"] else {
            throw LearnerStateError(key: names.learnerStateKey, problem: "incomplete (step, weights and optimizer are needed)")
        }
        let weightBytes = try Zstd.decompress(weights, maxOutputSize: CheckpointStore.maxCheckpointBytes)
        let optimizerBytes = try Zstd.decompress(optimizer, maxOutputSize: CheckpointStore.maxCheckpointBytes)
        let referenceBytes = try saved["reference"].map { try Zstd.decompress($0, maxOutputSize: CheckpointStore.maxCheckpointBytes) }
        if config.klCoefficient != 0, referenceBytes == nil {
            throw LearnerStateError(key: names.learnerStateKey, problem: "holds no reference policy, which trainer.kl_coefficient = \(config.klCoefficient) needs")
        }
        let trainer = self.trainer
        try await compute.run {
            try trainer.value.model.loadWeights(safetensors: weightBytes)
            try trainer.value.optimizer.loadState(optimizerBytes)
            if let referenceBytes { try trainer.value.loadReference(safetensors: referenceBytes) }
        }
        return saved
    }

    /// The model's tokenizer (or none: the byte tokenizer) and the facts other roles need to read the run's tokens, in
    /// one transaction with `state`, so no reader sees a tokenizer and a SHA-256 from two different runs.
    func publishFormat(_ state: RunState) async throws {
        var state = state
        state.other.merge(RunFormat.stateFields(config: config, tokenizerJSON: tokenizerJSON, eos: eosToken, vocabSize: vocabSize)) { $1 }
        var hset: [any RedisArgument] = ["HSET", names.stateKey]
        for (field, value) in state.hash { hset += [field, value] }
        let write: [any RedisArgument] = tokenizerJSON.map { ["SET", names.tokenizerKey, $0] } ?? ["DEL", names.tokenizerKey]
        try await lease.exec([write, hset])
    }

    func setState(_ state: RunState) async throws {
        if let write = state.writeCommand(names: names) { try await lease.exec([write]) }
    }
}

/// The learner's own resumable state could not be saved or read.
struct LearnerStateError: Error, CustomStringConvertible {
    var key: String
    var problem: String
    var description: String { "learner state \(key): \(problem)" }
}
