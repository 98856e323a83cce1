import Messaging
import Synchronization

extension ServiceContext {
    /// Handles deliveries one at a time until the stream ends or a stop is requested. What was delivered
    /// but not handled stays unacknowledged, and goes back to its queue when the connection closes.
    public func consume(queue: String, prefetch: Int, _ handle: @escaping @Sendable (Delivery) async throws -> Void) async throws {
        let stream = fabric.amqp.consume(queue: queue, prefetch: prefetch)
        let stop = self.stop
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await delivery in stream {
                    if stop.isRequested { break }
                    try await handle(delivery)
                }
            }
            group.addTask { await stop.wait() }
            try await group.next()
            group.cancelAll()
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
