import Checkpoints
import Compression
import Config
import Foundation
import Messaging
import Runtime
import Store
import Wire

extension Learner {
    /// Durable first (weights, optimizer, reference, step, applied ids, in one MULTI/EXEC), then the groups that fed the step are acknowledged.
    func commit(_ batch: Batch, snapshot: PolicySnapshot) async throws {
        let tasks = batch.groups.map(\.message.task.taskID)
        try await saveLearnerState(snapshot, ackAfter: batch.groups.map(\.delivery), newlyApplied: tasks)
        applied.formUnion(tasks)
        try await ledger.close(batch.groups.map(\.message.task))
        try await workers.countTrained(batch.groups.map { $0.message.workerKeyHex })
    }

    func snapshotPolicy() async throws -> PolicySnapshot {
        let trainer = self.trainer
        return try await compute.run {
            let raw = trainer.value.model.safetensorsBytes()
            return PolicySnapshot(rawBytes: raw.count, compressed: try Zstd.compress(raw, level: 1), sha256: sha256Hex(raw))
        }
    }

    func publishPolicy(_ snapshot: PolicySnapshot) async throws {
        let (key, sha) = try await store.stage(version: version, compressed: snapshot.compressed, sha256: snapshot.sha256)
        var saved = PolicySaved()
        saved.envelope = fabric.envelope()
        saved.version = version
        saved.stagingKey = key
        saved.bytes = UInt64(snapshot.rawBytes)
        saved.sha256 = sha
        saved.savedAtUnixMs = WallClock.nowMs()
        try await fabric.publish(saved, exchange: Names.controlExchange, routingKey: names.policyRoutingKey)
    }

    /// Weights, optimizer, step and applied task ids (and, once, the frozen reference policy) in one MULTI/EXEC; then the
    /// deliveries are acknowledged.
    func saveLearnerState(_ snapshot: PolicySnapshot, ackAfter deliveries: [Delivery], newlyApplied: [String] = [], withReference: Bool = false) async throws {
        let trainer = self.trainer
        let (optimizer, reference) = try await compute.run {
            (try Zstd.compress(trainer.value.optimizer.stateBytes(), level: 1),
             withReference ? try trainer.value.referenceSafetensorsBytes().map { try Zstd.compress($0, level: 1) } : nil)
        }
        var fields: [any RedisArgument] = ["HSET", names.learnerStateKey, "step", String(step), "task_index", String(taskIndex),
                                           "weights", snapshot.compressed, "optimizer", optimizer]
        if let reference { fields += ["reference", reference] }
        var commands: [[any RedisArgument]] = [["MULTI"], fields]
        if !newlyApplied.isEmpty { commands.append(["SADD", names.appliedGroupsKey] + newlyApplied.map { $0 as any RedisArgument }) }
        commands.append(["EXEC"])
        let replies = try await fabric.redis.pipeline(commands)
        if let failure = replies.compactMap(\.errorMessage).first ?? (replies.last?.array ?? []).compactMap(\.errorMessage).first {
            throw LearnerStateError(key: names.learnerStateKey, problem: "saving failed: \(failure)")
        }
        try await acknowledge(deliveries)
    }

    /// Acks after the step is durable. One on a replaced connection settles nothing: the group comes back and is
    /// dropped as already applied (counted as `acks_voided`).
    func acknowledge(_ deliveries: [Delivery]) async throws {
        var voided = 0
        for delivery in deliveries {
            do { try await delivery.ack() } catch AMQPError.deliveryVoid { voided += 1 }
        }
        if voided > 0 { try await fabric.incrementCounter("acks_voided", by: voided) }
    }

    func restore() async throws {
        let saved = try await fabric.redis.hgetall(names.learnerStateKey)
        guard let stepText = saved["step"].map({ String(decoding: $0, as: UTF8.self) }), let savedStep = Int(stepText),
              let weights = saved["weights"], let optimizer = saved["optimizer"] else {
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
        step = savedStep
        taskIndex = saved["task_index"].flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
        let members = try await fabric.redis.command(["SMEMBERS", names.appliedGroupsKey])
        applied = Set((members.array ?? []).compactMap(\.string))
        context.logger.notice("restored step \(step), \(applied.count) applied groups\(referenceBytes == nil ? "" : ", the reference policy")")
    }

    /// The model's tokenizer (or none: the byte tokenizer) and the facts other roles need to read the run's tokens, in
    /// one transaction with `state`, so no reader sees a tokenizer and a SHA-256 from two different runs.
    func publishFormat(_ state: RunState) async throws {
        var state = state
        state.other.merge(RunFormat.stateFields(config: config, tokenizerJSON: tokenizerJSON, eos: eosToken, vocabSize: vocabSize)) { $1 }
        var hset: [any RedisArgument] = ["HSET", names.stateKey]
        for (field, value) in state.hash { hset += [field, value] }
        let write: [any RedisArgument] = tokenizerJSON.map { ["SET", names.tokenizerKey, $0] } ?? ["DEL", names.tokenizerKey]
        let replies = try await fabric.redis.pipeline([["MULTI"], write, hset, ["EXEC"]])
        let errors = replies.compactMap(\.errorMessage) + (replies.last?.array ?? []).compactMap(\.errorMessage)
        if let error = errors.first { throw RunFormatError(problem: "publishing the run's format: \(error)") }
    }

    func setState(_ state: RunState) async throws { try await state.write(to: fabric.redis, names: names) }
}

/// The learner's own resumable state could not be saved or read.
struct LearnerStateError: Error, CustomStringConvertible {
    var key: String
    var problem: String
    var description: String { "learner state \(key): \(problem)" }
}
