import Foundation
import Messaging
import RL
import Runtime
import Signing
import Wire

/// One step's batch as it was collected: the groups taken (with their deliveries, acknowledged once the step is
/// durable) and what was dropped on the way.
struct Batch {
    struct Taken {
        var delivery: Delivery
        var message: ScoredGroupMessage
        var age: Int
    }

    var groups: [Taken] = []
    var staleDropped = 0, zeroSignal = 0, duplicates = 0
    /// Every completion seen, dropped groups included (a zero-signal group still says how often the policy is right).
    var rewards: [Double] = []
    var correct = 0
    var waited = Duration.zero
    let started = ContinuousClock.now

    var accuracy: Double { rewards.isEmpty ? 0 : Double(correct) / Double(rewards.count) }
    var rewardMean: Double { rewards.isEmpty ? 0 : rewards.reduce(0, +) / Double(rewards.count) }
    /// Groups used by age in versions.
    var staleness: [String: Int] { Dictionary(groups.map { (String($0.age), 1) }, uniquingKeysWith: +) }

    func contains(_ taskID: String) -> Bool { groups.contains { $0.message.task.taskID == taskID } }

    /// The prompt is the learner's own encoding of the issued task's prompt (the scorer copied the task from the
    /// ledger), never the tokens a worker sent.
    func samples(format: PromptFormat) -> [TrainingSample] {
        groups.flatMap { taken in
            let prompt = format.promptTokens(taken.message.task.prompt)
            return taken.message.completions.map { scored in
                TrainingSample(promptTokens: prompt, completionTokens: scored.completion.tokens,
                               behaviourLogprobs: scored.completion.logprobs, advantage: scored.advantage)
            }
        }
    }
}

extension Learner {
    /// Takes scored groups until a batch is full; nil when the run is stopped or the process drains or hands back
    /// (what was taken goes back to the queue).
    func collectBatch() async throws -> Batch? {
        var batch = Batch()
        heldTasks = []
        bannedWorkers = Set(try await workers.bans().keys)
        while true {
            while batch.groups.count < config.groupsPerStep {
                guard let delivery = try await nextGroup(waited: &batch.waited) else {
                    await handBack(batch.groups.map(\.delivery))
                    return nil
                }
                try await admit(delivery, into: &batch)
                heldTasks = Set(batch.groups.map(\.message.task.taskID))
            }
            // a ban that arrived while the batch filled drops the groups it already holds of that key
            let banned = batch.groups.filter { bannedWorkers.contains($0.message.workerKeyHex) }
            if banned.isEmpty { return batch }
            batch.groups.removeAll { bannedWorkers.contains($0.message.workerKeyHex) }
            for taken in banned { try await dropBanned(taken.delivery, taken.message) }
        }
    }

    /// A banned key's group: dead-lettered, counted against the key, its task closed and replaced.
    func dropBanned(_ delivery: Delivery, _ message: ScoredGroupMessage) async throws {
        let signer = message.workerKeyHex
        try await workers.count(signer, "refused.banned", detail: "banned before its group was trained on")
        try await publishTasks(count: 1, closing: [(message.task, .replaced)])
        await fabric.deadLetter(delivery, reason: "group of banned worker \(signer.prefix(16))…")
    }

    /// The next scored group, applying control commands as they come; groups that arrive while paused are held.
    func nextGroup(waited: inout Duration) async throws -> Delivery? {
        while !stopRun {
            if !paused, !heldWhilePaused.isEmpty { return heldWhilePaused.removeFirst() }
            let started = ContinuousClock.now
            guard let event = await events.next() else { return nil }
            if !paused { waited += ContinuousClock.now - started }
            switch event {
            case let .group(delivery):
                if paused { heldWhilePaused.append(delivery) } else { return delivery }
            case let .control(command):
                try await apply(command)
            case .tick:
                try await tick()
            case let .consumerEnded(why):
                throw LearnerStateError(key: names.learnerInputQueue(validating: config.validation.enabled), problem: why)
            }
        }
        return nil
    }

    /// Checks a group and decides (GroupAdmission): into the batch, or dropped, counted and (when it used up a task) replaced.
    func admit(_ delivery: Delivery, into batch: inout Batch) async throws {
        let message: ScoredGroupMessage
        do {
            guard delivery.body.count <= 2 * WireLimits.maxGroupBytes else {
                throw WireError.invalidField(type: "ScoredGroup", messageID: delivery.messageID ?? "?", field: "(message)",
                                             reason: "is \(delivery.body.count) bytes, over the \(2 * WireLimits.maxGroupBytes) a scored group may have")
            }
            message = try ScoredGroupMessage.decode(delivery.body, deliveredID: delivery.messageID)
        } catch let error as WireError {
            return await fabric.deadLetter(delivery, reason: error.reason)
        }
        var problem: String?
        do {
            try message.validate(ScoredGroupMessage.Limits(run: names.run, learnerVersion: version, vocabularySize: vocabSize, contextLength: contextLength))
        } catch let error as WireError {
            problem = error.reason
        }
        // A group of an older epoch of this run id (in flight when it was started afresh) feeds nothing here.
        if message.task.envelope.epoch < epoch {
            try await fabric.incrementCounter("stale_epoch_groups")
            return try await acknowledge([delivery])
        }
        // One group per issued task, whatever its message id: only a group of a task still open in the ledger can feed
        // a step (a worker that died before its ack served the task twice; a reissued task's first copy comes late).
        if problem == nil, !batch.contains(message.task.taskID) {
            switch try await ledger.lookup(message.task.taskID) {
            case .open: break
            case .closed(.trained, _):
                batch.duplicates += 1
                gauges.duplicates.increment()
                try await fabric.incrementCounter("duplicate_groups")
                return try await acknowledge([delivery])
            case .closed:
                // its task was replaced or reissued: the copy that took its place feeds the step
                try await fabric.incrementCounter("late_groups")
                return try await acknowledge([delivery])
            case .unknown:
                problem = "task '\(message.task.taskID)' is not open in this run's ledger (never issued, or closed more than \(ledgerKeepSteps) steps ago)"
            }
        }
        let facts = GroupAdmission.Facts(groupID: message.task.taskID, policyVersion: message.policyVersion,
                                         advantages: message.completions.map(\.advantage), problem: problem)
        let verdict = GroupAdmission.decide(facts, step: Int(version), asyncLevel: config.asyncLevel) { batch.contains($0) }
        if case .invalid = verdict {} else if case .duplicate = verdict {} else {
            batch.rewards += message.completions.map(\.reward)
            batch.correct += message.completions.filter(\.correct).count
        }
        switch verdict {
        case let .take(age):
            // a worker banned after its group was scored: its group feeds nothing, and its task goes to someone else
            if bannedWorkers.contains(message.workerKeyHex) { return try await dropBanned(delivery, message) }
            batch.groups.append(Batch.Taken(delivery: delivery, message: message, age: age))
            gauges.staleness.record(age)
        case .duplicate:
            // The same message again while its first copy is held: the broker redelivers only after the connection the
            // first came on was lost, so the copy in hand is the live one. Hold it instead (acked with the step); acking
            // it now would lose the group if the learner died before its step was durable.
            if delivery.redelivered, let held = batch.groups.firstIndex(where: { $0.message.rolloutMessageID == message.rolloutMessageID }) {
                batch.groups[held].delivery = delivery
                return
            }
            // another group for a task this batch already holds
            batch.duplicates += 1
            gauges.duplicates.increment()
            try await fabric.incrementCounter("duplicate_groups")
            try await acknowledge([delivery])
        case .stale, .zeroSignal:
            // Dropped groups feed no step: replace them, then acknowledge at once (the prefetch window stays open).
            if case .stale = verdict {
                batch.staleDropped += 1
                gauges.staleDropped.increment()
                try await fabric.incrementCounter("stale_groups_dropped")
            } else {
                batch.zeroSignal += 1
                gauges.zeroSignal.increment()
            }
            try await publishTasks(count: 1, closing: [(message.task, .replaced)])
            try await acknowledge([delivery])
        case let .invalid(reason):
            await fabric.deadLetter(delivery, reason: reason)
        }
    }
}

extension ScoredGroupMessage {
    /// The key the scorer verified, as bans and per-worker counts name it.
    var workerKeyHex: String { Hex.encode(Array(workerKey)) }
}
