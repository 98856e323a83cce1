import ArgumentParser
import Foundation
import Messaging
import Checkpoints
import Config
import Runtime
import Wire
import Synchronization

struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters", abstract: "List or replay the run's dead-lettered messages.",
        discussion: "Dead letters are messages a service could not decode or validate (with the reason in x-tributary-reason), or that the broker dead-lettered (x-first-death-reason).",
        subcommands: [List.self, Replay.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show id, original queue, publishing user, sender, size and reason of each dead letter; they stay in the queue.")
        @OptionGroup var options: ControlOptions
        @Option(help: "Show at most this many.") var limit: Int = 100
        @Option(help: "Seconds to wait for the broker to deliver them.") var wait: Double = 5
        @Flag(help: "Print JSON instead of text.") var json = false

        func run() async throws {
            try await withSession(options, amqp: true) { session in
                let (letters, total) = try await DeadLetter.take(session, limit: limit, wait: wait)
                for letter in letters { try await letter.delivery.nack(requeue: true) }
                if json {
                    print(try Output.json(["run": session.names.run, "queue": session.names.deadLettersQueue, "total": total,
                                           "messages": letters.map(\.json)]))
                    return
                }
                guard !letters.isEmpty else {
                    print("run \(session.names.run): no dead letters (\(session.names.deadLettersQueue) is empty)")
                    return
                }
                print("run \(session.names.run): \(total) dead letters in \(session.names.deadLettersQueue)" +
                      (letters.count < total ? ", showing \(letters.count)" : ""))
                // USER is who published it as the broker checked it (user_id); BY is the instance it names itself.
                print(Output.table(["ID", "QUEUE", "USER", "BY", "BYTES", "REASON"],
                                   letters.map { [$0.id, $0.originalQueue, $0.delivery.userID ?? "?", $0.by, String($0.delivery.body.count), $0.reason] }))
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Republish dead letters to their original exchange and routing key, with their original message id, and remove them from the dead-letter queue.")
        @OptionGroup var options: ControlOptions
        @Option(name: .customLong("id"), help: ArgumentHelp("Message id to replay (repeatable).", valueName: "id")) var ids: [String] = []
        @Flag(help: "Replay every dead letter.") var all = false
        @Option(help: "Look at most at this many dead letters.") var limit: Int = 1000
        @Option(help: "Seconds to wait for the broker to deliver them.") var wait: Double = 5
        @Flag(help: "Replay also messages a service refused as invalid (a bad field, a bad signature): they are refused again, or forged.")
        var force = false

        func validate() throws {
            guard all != !ids.isEmpty else { throw ValidationError("give either --id ID (one or more) or --all") }
        }

        func run() async throws {
            let failures: Int = try await withSession(options, amqp: true) { session in
                let amqp = session.amqp!
                let (letters, total) = try await DeadLetter.take(session, limit: limit, wait: wait)
                var replayed = 0, failed = 0
                var missing = Set(ids)
                for letter in letters {
                    guard all || missing.contains(letter.id) else {
                        try await letter.delivery.nack(requeue: true)
                        continue
                    }
                    missing.remove(letter.id)
                    guard let target = letter.replayTarget(names: session.names) else {
                        try await letter.delivery.nack(requeue: true)
                        failed += 1
                        Output.warn("not replaying \(letter.id): its queue '\(letter.originalQueue)' is not a work queue of run \(session.names.run); it stays")
                        continue
                    }
                    guard force || letter.isReplayable else {
                        try await letter.delivery.nack(requeue: true)
                        failed += 1
                        Output.warn("not replaying \(letter.id): a service refused it (\(letter.reason)), and would again; it stays (--force to replay anyway)")
                        continue
                    }
                    do {
                        try await amqp.publish(exchange: target.exchange, routingKey: target.routingKey, body: letter.delivery.body,
                                               messageID: letter.delivery.messageID ?? UUID().uuidString, headers: letter.replayHeaders, mandatory: true)
                        try await letter.delivery.ack()
                        replayed += 1
                        print("replayed \(letter.id) to \(target.exchange.isEmpty ? "queue \(target.routingKey)" : "\(target.exchange) (\(target.routingKey))") (was: \(letter.reason))")
                    } catch {
                        try? await letter.delivery.nack(requeue: true)
                        failed += 1
                        Output.warn("could not replay \(letter.id): \(error); it stays in \(session.names.deadLettersQueue)")
                    }
                }
                for id in missing.sorted() { Output.warn("no dead letter with id \(id) in \(session.names.deadLettersQueue)") }
                print("replayed \(replayed) of \(total) dead letters" + (failed > 0 ? ", \(failed) failed" : ""))
                return failed + missing.count
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }
}

/// One message held from the dead-letter queue (unacknowledged until acked or handed back).
struct DeadLetter {
    var delivery: Delivery

    var id: String { delivery.messageID ?? "-" }
    var headers: [String: String] { delivery.headers }
    /// Where it was consumed from: its routing key, the queue's name, which both the broker and Fabric.deadLetter use. Not a
    /// header: the publisher writes those, while the broker restricts each role's routing keys on tributary.dead (a
    /// rollout worker's dead letters can only say `tributary.RUN.tasks`).
    var originalQueue: String { delivery.routingKey }
    var reason: String { headers["x-tributary-reason"] ?? headers["x-first-death-reason"].map { "broker: \($0)" } ?? "?" }
    var by: String { headers["x-tributary-by"] ?? (headers["x-first-death-reason"] != nil ? "broker" : "?") }

    /// Back to the run's work queue it came from, through that queue's own exchange and the run's routing key: never
    /// an exchange or key read from the message's headers, which whoever dead-lettered it (a rollout worker) wrote.
    /// Nil when the queue is not one of the run's work queues.
    func replayTarget(names: Names) -> (exchange: String, routingKey: String)? { Self.replayTarget(queue: originalQueue, names: names) }

    static func replayTarget(queue: String, names: Names) -> (exchange: String, routingKey: String)? {
        switch queue {
        case names.tasksQueue: (Names.tasksExchange, names.run)
        case names.rolloutsQueue: (Names.rolloutsExchange, names.run)
        case names.scoredQueue: (Names.scoredExchange, names.run)
        case names.validatedQueue: (Names.validatedExchange, names.run)
        case names.policiesQueue: (Names.controlExchange, names.policyRoutingKey)
        default: nil
        }
    }

    /// The original application headers, without the dead-letter notes, plus a replay mark.
    var replayHeaders: [String: AMQPFieldValue] {
        var kept: [String: AMQPFieldValue] = [:]
        for (key, value) in headers where !key.hasPrefix("x-") { kept[key] = .string(value) }
        kept["x-tributary-replayed-from"] = .string(delivery.queue)
        return kept
    }

    /// Whether a replay can help; see `isReplayable(headers:)`.
    var isReplayable: Bool { Self.isReplayable(headers: headers) }

    /// The broker dead-lettered it (rejected, expired, over the delivery limit), or a service's handling of it kept
    /// failing (Redis away, say): a replay can help. A message a service refused as invalid would be refused again.
    static func isReplayable(headers: [String: String]) -> Bool {
        if let reason = headers["x-tributary-reason"] { return reason.hasPrefix(Fabric.repeatedFailurePrefix) }
        return headers["x-first-death-reason"] != nil
    }

    var json: [String: Any] {
        ["id": id, "queue": originalQueue, "reason": reason, "by": by, "user": delivery.userID ?? "", "replayable": isReplayable,
         "bytes": delivery.body.count, "redelivered": delivery.redelivered, "headers": headers]
    }

    /// Takes up to `limit` dead letters, all held unacknowledged at once (so none comes round twice), waiting at most `wait` seconds.
    static func take(_ session: ControlSession, limit: Int, wait: Double) async throws -> (letters: [DeadLetter], total: Int) {
        let amqp = session.amqp!
        let queue = session.names.deadLettersQueue
        let total: Int
        do { total = try await amqp.inspect(queue: queue).messages } catch AMQPError.declarationFailed(_, 404, _) {
            throw ControlError("run \(session.names.run) has no \(queue) on the broker: no learner of this run has connected yet")
        }
        let wanted = min(total, max(1, limit))
        guard total > 0 else { return ([], 0) }
        let held = Held()
        let stream = amqp.consume(queue: queue, prefetch: wanted)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await delivery in stream where held.add(delivery) >= wanted { return }
            }
            group.addTask { try await Task.sleep(for: .seconds(wait)) }
            try await group.next()
            group.cancelAll()
        }
        return (held.all.map { DeadLetter(delivery: $0) }, total)
    }

    final class Held: Sendable {
        private let deliveries = Mutex<[Delivery]>([])
        func add(_ delivery: Delivery) -> Int { deliveries.withLock { $0.append(delivery); return $0.count } }
        var all: [Delivery] { deliveries.withLock { $0 } }
    }
}
