import Foundation
import Messaging
import Runtime
import Store
import TestSupport
import Wire

/// What became of every task a run issued, counted from the learner's ledger, the batch log and the broker's
/// dead-letter queue: never from the learner's own set of applied ids, which is what is under test.
///
/// - trained: its id is in a step of the batch log;
/// - replaced: closed in the ledger without being trained (its group was dropped, stale or without signal, and the learner
///   issued another task in its place);
/// - dead-lettered: a task, group or scored group of it is in the dead-letter queue with a reason;
/// - in flight: open at the end, and its task or group was still in a work queue once the fleet had handed back what it
///   held (the harness drains them), or it was issued after the harness began to end the run, or its deadline in the
///   ledger had not passed then (the learner would still wait for it, then reissue it);
/// - lost: none of these: open, never trained, never dead-lettered, in no queue.
/// Applied twice counts every training of a task (or of a task of the same lineage) after its first.
public struct TaskAccount: Sendable, Codable, Equatable {
    public var issued = 0
    public var trained = 0
    public var replaced = 0
    public var deadLettered = 0
    public var inFlight = 0
    public var lost = 0
    public var appliedTwice = 0
    /// Trained ids the ledger never issued (a forged or foreign task trained on).
    public var trainedUnissued = 0
    /// Steps below the final one with no batch-log entry: a learner that died between its save and its log line leaves
    /// one, and its tasks then count as replaced (closed, not in the log) or lost (left open).
    public var unloggedSteps: [Int] = []
    /// Steps logged more than once (a step taken again after a rollback).
    public var stepsLoggedTwice: [Int] = []
    /// Up to ten ids of each kind, for a closer look.
    public var lostExamples: [String] = []
    public var twiceExamples: [String] = []
    /// The run's task deadline (seconds) when it has one: an open task issued within it of the end is in flight.
    public var deadlineSeconds: Double?

    public init() {}
}

/// One message of the run's dead-letter queue: the task it was for (when it decodes) and why it was parked.
public struct DeadLetter: Sendable {
    public var taskID: String?
    public var queue: String
    public var reason: String
}

public enum TaskAccounting {
    /// Reads the dead-letter queue empty (call once the fleet is stopped); every message is acknowledged.
    public static func drainDeadLetters(names: Names, amqp: AMQPClient, within seconds: Double = 60) async throws -> [DeadLetter] {
        try await drain(names.deadLettersQueue, amqp: amqp, within: seconds)
    }

    /// Takes every message a queue holds once its consumers are gone, acknowledging each: the tasks, groups and dead
    /// letters of a run that is ending, with the task each is for. A consumer's unacknowledged deliveries go back to the
    /// queue only once the broker has seen its connection close, so it waits for the queue to have no consumer first.
    public static func drain(_ queue: String, amqp: AMQPClient, within seconds: Double = 60) async throws -> [DeadLetter] {
        try await waitUntil("\(queue) to have no consumer", within: seconds) { try await amqp.inspect(queue: queue).consumers == 0 }
        var letters: [DeadLetter] = []
        while true {
            let total = try await amqp.inspect(queue: queue).messages
            guard total > 0 else { return letters }
            letters += try await take(total, from: queue, amqp: amqp, within: seconds)
        }
    }

    static func take(_ total: Int, from queue: String, amqp: AMQPClient, within seconds: Double) async throws -> [DeadLetter] {
        let stream = amqp.consume(queue: queue, prefetch: min(total, 64))
        let collector = Task {
            var letters: [DeadLetter] = []
            for try await delivery in stream {
                // a dead letter names the queue it came from; a work queue's message is from that queue
                let source = delivery.headers["x-tributary-queue"] ?? (delivery.queue == queue && !queue.hasSuffix("dead-letters") ? queue : delivery.routingKey)
                letters.append(DeadLetter(taskID: taskID(of: delivery.body, queue: source), queue: source,
                                          reason: delivery.headers["x-tributary-reason"] ?? delivery.headers["x-first-death-reason"] ?? ""))
                try await delivery.ack()
                if letters.count >= total { break }
            }
            return letters
        }
        let timeout = Task {
            try await Task.sleep(for: .seconds(seconds))
            collector.cancel()
        }
        defer { timeout.cancel() }
        return try await collector.value
    }

    /// The task id inside a dead-lettered task, rollout group or scored group (stored bytes: no envelope checks).
    static func taskID(of body: [UInt8], queue: String) -> String? {
        let id: String?
        if queue.hasSuffix(".tasks") {
            id = (try? RolloutTask.fromStored(body))?.taskID
        } else if queue.hasSuffix(".rollouts") {
            id = (try? RolloutGroup.fromStored(body))?.task.taskID
        } else if queue.hasSuffix(".scored") {
            id = (try? ScoredGroupMessage.fromStored(body))?.task.taskID
        } else {
            id = nil
        }
        return id.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The account of a run the harness began to end at `endMs`; `queued` are the task ids still in its work queues then.
    /// Today from the ledger hash (task id → the task as issued, or `closed:` + fingerprint) and the batch log's `tasks`;
    /// when the ledger records how each task closed and its deadline (`TaskLedger.audit()`), this is the one function to
    /// switch to it.
    public static func account(names: Names, redis: RedisClient, deadLetters: [DeadLetter], queued: Set<String>, endMs: Int64, finalStep: Int,
                               deadlineSeconds: Double? = nil) async throws -> TaskAccount {
        var account = TaskAccount()
        account.deadlineSeconds = deadlineSeconds
        let ledger = try await redis.hgetall(names.ledgerKey)
        // open task id -> its deadline (Unix ms), where the ledger keeps deadlines (TaskLedger.deadlinesKey)
        var deadlines: [String: Int64] = [:]
        let scored = (try? await redis.command(["ZRANGE", names.ledgerKey + ":deadlines", "0", "-1", "WITHSCORES"]))?.array ?? []
        for index in stride(from: 0, to: scored.count - 1, by: 2) {
            if let id = scored[index].string, let score = scored[index + 1].string.flatMap({ Double($0) }) { deadlines[id] = Int64(score) }
        }
        let batches = try await redis.xrange(names.batchesLogKey).map { $0.fields.mapValues { String(decoding: $0, as: UTF8.self) } }

        var trainings: [String: Int] = [:]
        var stepsLogged: [Int: Int] = [:]
        for batch in batches {
            if let step = batch["step"].flatMap({ Int($0) }) { stepsLogged[step, default: 0] += 1 }
            for task in (batch["tasks"] ?? "").split(separator: ",") { trainings[String(task), default: 0] += 1 }
        }
        account.unloggedSteps = (0..<max(0, finalStep)).filter { stepsLogged[$0] == nil }
        account.stepsLoggedTwice = stepsLogged.filter { $0.value > 1 }.map(\.key).sorted()
        // by lineage: today a task's lineage is its id (a replacement is a new problem under a new id); a reissue of the
        // same problem under a new id (task deadlines) must map to its original here
        var byLineage: [String: Int] = [:]
        for (task, count) in trainings { byLineage[lineage(of: task, ledger: ledger), default: 0] += count }
        for (lineage, count) in byLineage.sorted(by: { $0.key < $1.key }) where count > 1 {
            account.appliedTwice += count - 1
            if account.twiceExamples.count < 10 { account.twiceExamples.append(lineage) }
        }
        account.trainedUnissued = trainings.keys.filter { ledger[$0] == nil }.count

        let deadLettered = Set(deadLetters.filter { !$0.reason.isEmpty }.compactMap(\.taskID))
        let window = deadlineSeconds.map { Int64($0 * 1000) } ?? 0
        account.issued = ledger.count
        for (task, stored) in ledger.sorted(by: { $0.key < $1.key }) {
            if trainings[task] != nil {
                account.trained += 1
            } else if deadLettered.contains(task) {
                account.deadLettered += 1
            } else if stored.isEmpty || stored.starts(with: closedMark) {
                account.replaced += 1
            } else if queued.contains(task) || (deadlines[task].map { $0 >= endMs } ?? false) {
                account.inFlight += 1
            } else if let issued = try? RolloutTask.fromStored(stored), issued.envelope.sentAtUnixMs >= endMs - window {
                account.inFlight += 1
            } else {
                account.lost += 1
                if account.lostExamples.count < 10 { account.lostExamples.append(task) }
            }
        }
        return account
    }

    static let closedMark = Array("closed:".utf8)

    /// The problem a task id stands for: a task reissued past its deadline is its first id with `.rN` (the learner's
    /// Learner.lineage), and training two of one lineage is training it twice.
    static func lineage(of task: String, ledger: [String: [UInt8]]) -> String {
        guard let mark = task.range(of: ".r", options: .backwards), !task[mark.upperBound...].isEmpty,
              task[mark.upperBound...].allSatisfy(\.isNumber) else { return task }
        return String(task[..<mark.lowerBound])
    }

    /// The run's task deadline in seconds, when its configuration (the run state's TOML) sets one.
    public static func deadlineSeconds(config: String?) -> Double? {
        guard let config else { return nil }
        for line in config.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == "task_deadline_seconds", let value = Double(parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))) {
                return value
            }
        }
        return nil
    }
}
