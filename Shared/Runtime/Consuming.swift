import Messaging
import ServiceLifecycle
import Synchronization

extension ServiceContext {
    /// Handles deliveries one at a time. On drain (SIGTERM, `drain`) the one in hand is finished and no more are taken;
    /// on hand-back (`shutdown`) the one in hand is nacked with requeue at once. Deliveries prefetched but not taken
    /// stay unacknowledged and go back to their queue when the connection closes.
    public func consume(queue: String, prefetch: Int, _ handle: @escaping @Sendable (Delivery) async throws -> Void) async throws {
        let stop = self.stop
        for try await delivery in fabric.amqp.consume(queue: queue, prefetch: prefetch).cancelOnGracefulShutdown() {
            if stop.isStopping { break }
            _ = try await stop.holding({ try await handle(delivery) }, handBack: { try? await delivery.nack(requeue: true) })
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
