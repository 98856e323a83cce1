import Logging
import Messaging
import ServiceLifecycle
import Synchronization

extension ServiceContext {
    /// Handles deliveries one at a time. On drain (SIGTERM, `drain`) the one in hand is finished and no more are taken;
    /// on hand-back (`shutdown`) the one in hand is nacked with requeue at once. Deliveries prefetched but not taken
    /// stay unacknowledged and go back to their queue when the connection closes.
    ///
    /// A delivery whose handling throws is one message's failure, not the process's: it goes back to the queue (after a
    /// pause that grows with its failures), and once it has failed `service.max_message_failures` times here it is
    /// dead-lettered with the last error.
    ///
    /// With `concurrency` above 1, up to that many deliveries are handled at once, each as above.
    ///
    /// With `growTo`, the prefetch and the concurrency can grow while it runs: after each delivery taken it is asked for
    /// the number wanted now, and when that is more than held, one more consumer of the difference opens on the queue
    /// (RabbitMQ fixes a consumer's prefetch when it starts; the consumers all feed the same handling).
    public func consume(queue: String, prefetch: Int, concurrency: Int = 1, growTo: (@Sendable () -> Int)? = nil,
                        _ handle: @escaping @Sendable (Delivery) async throws -> Void) async throws {
        let failures = MessageFailures(limit: try settings.int("service.max_message_failures"))
        let (deliveries, sink) = AsyncThrowingStream<Delivery, Error>.makeStream()
        let amqp = fabric.amqp
        var consumers: [Task<Void, Never>] = []
        func open(prefetch: Int) {
            consumers.append(Task {
                do {
                    for try await delivery in amqp.consume(queue: queue, prefetch: prefetch) { sink.yield(delivery) }
                    sink.finish()
                } catch {
                    sink.finish(throwing: error)
                }
            })
        }
        // leaving (stopped, or the stream ended) cancels every consumer; what they prefetched goes back with the connection
        defer { consumers.forEach { $0.cancel() } }
        open(prefetch: prefetch)
        var (held, limit) = (prefetch, max(1, concurrency))
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for try await delivery in deliveries.cancelOnGracefulShutdown() {
                if stop.isStopping { break }
                if let wanted = growTo?(), wanted > held {
                    open(prefetch: wanted - held)
                    limit += wanted - held
                    held = wanted
                }
                if running >= limit {
                    try await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { try await self.process(delivery, from: queue, failures: failures, handle) }
            }
            consumers.forEach { $0.cancel() }  // nothing new while the ones in hand finish
            try await group.waitForAll()
        }
    }

    /// One delivery: refused when another run's user published it, else handled, handed back or dead-lettered.
    private func process(_ delivery: Delivery, from queue: String, failures: MessageFailures,
                         _ handle: @escaping @Sendable (Delivery) async throws -> Void) async throws {
        // The work exchanges are shared by runs, so the broker lets a per-run user publish with another run's routing
        // key; its user_id (which the broker does check) says which run it belongs to.
        if let publisher = delivery.userID, let publisherRun = RunUser.run(ofUser: publisher), publisherRun != fabric.names.run {
            await fabric.deadLetter(delivery, reason: "published by \(publisher), a user of run \(publisherRun), not of run \(fabric.names.run)")
            return
        }
        do {
            _ = try await stop.holding({ try await handle(delivery) }, handBack: { try? await delivery.nack(requeue: true) })
        } catch is CancellationError {
            throw CancellationError()
        } catch AMQPError.deliveryVoid {
            // not this message's failure: its connection was replaced, and the broker delivers it again
            logger.notice("message \(delivery.messageID ?? "?") from \(queue) came on a replaced connection; it will be redelivered")
        } catch {
            let count = failures.record(delivery)
            if count >= failures.limit {
                await fabric.deadLetter(delivery, reason: "\(Fabric.repeatedFailurePrefix)\(count) times; last: \(error)")
            } else {
                logger.warning("message \(delivery.messageID ?? "?") from \(queue) failed (\(count) of \(failures.limit)): \(error); handed back")
                try? await delivery.nack(requeue: true)
                try? await Task.sleep(for: .milliseconds(200 * (1 << min(count, 5))))
            }
        }
    }
}

/// How often each message failed in this process (bounded: the oldest entries go first).
final class MessageFailures: Sendable {
    let limit: Int
    private let counts = Mutex<(order: [String], count: [String: Int])>(([], [:]))

    init(limit: Int) { self.limit = limit }

    func record(_ delivery: Delivery) -> Int {
        let id = delivery.messageID ?? "\(delivery.queue):\(delivery.body.count):\(delivery.body.prefix(64).reduce(0) { $0 &* 31 &+ Int($1) })"
        return counts.withLock { state in
            if state.count[id] == nil {
                state.order.append(id)
                if state.order.count > 10_000 { state.count.removeValue(forKey: state.order.removeFirst()) }
            }
            state.count[id, default: 0] += 1
            return state.count[id]!
        }
    }
}

/// Events per second over a sliding window, for heartbeats.
public final class RateMeter: Sendable {
    private let events = Mutex<[(ContinuousClock.Instant, Int)]>([])
    private let window: Duration

    public init(window: Duration = .seconds(30)) { self.window = window }

    public func record(_ count: Int = 1) {
        let now = ContinuousClock.now
        events.withLock { events in
            events.append((now, count))
            events.removeAll { now - $0.0 > window }
        }
    }

    public var perSecond: Double {
        events.withLock { events in
            guard let first = events.first else { return 0 }
            let span = ContinuousClock.now - first.0
            let seconds = max(1, Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18)
            return Double(events.reduce(0) { $0 + $1.1 }) / seconds
        }
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    public var milliseconds: Double { seconds * 1000 }
}
