import Foundation
import Logging
import Metrics
import Messaging
import Prometheus
import ServiceLifecycle
import Wire

/// Writes the status board to `tributary:RUN:hb:ROLE:INSTANCE` every 2 s with a 10 s TTL; deletes it when stopped.
struct Heartbeat: Service {
    let fabric: Fabric
    let status: StatusBoard

    func run() async throws {
        let key = fabric.names.heartbeatKey(role: fabric.identity.role, instance: fabric.identity.instance)
        let encoder = JSONEncoder()
        try? await cancelWhenGracefulShutdown {
            while true {
                status.update { $0.updatedAtUnixMs = WallClock.nowMs() }
                if let json = try? encoder.encode(status.current) {
                    _ = try? await fabric.redis.command(["SET", key, [UInt8](json), "EX", "10"])
                }
                try await Task.sleep(for: .seconds(2))
            }
        }
        _ = try? await fabric.redis.del([key])
    }
}

/// Control commands for `all`, this role, this instance and this role of this run: drain and shutdown stop the
/// process; the rest go to the role (the learner's run commands and settings).
struct ControlListener: Service {
    let fabric: Fabric
    let stop: StopRequest
    let forward: AsyncStream<ControlCommand>.Continuation
    let logger: Logger

    func run() async throws {
        defer { forward.finish() }
        let identity = fabric.identity
        let bindings = ["all", identity.role, "\(identity.role).\(identity.instance)",
                        Names.runRoutingKey(role: identity.role, run: fabric.names.run)].map {
            BindingSpec(queue: "", exchange: Names.controlExchange, routingKey: $0)
        }
        let stream = fabric.amqp.consume(queue: "", prefetch: 16, declare: .exclusiveTemporary, bindings: bindings)
        do {
            for try await delivery in stream.cancelOnGracefulShutdown() {
                // an exclusive queue dies with its connection: a void ack here has nothing left to redeliver
                do { try await delivery.ack() } catch AMQPError.deliveryVoid {}
                guard let command = try? ControlCommand.decode(delivery.body, deliveredID: delivery.messageID) else {
                    logger.warning("ignoring an undecodable control message \(delivery.messageID ?? "?")")
                    continue
                }
                guard command.envelope.runID == fabric.names.run || command.envelope.runID.isEmpty else { continue }
                switch command.command {
                case .drain:
                    logger.notice("drain command \(command.messageID): finishing what is in hand, then exiting")
                    await stop.drain("drain command")
                case .shutdown:
                    logger.notice("shutdown command \(command.messageID): handing back what is in hand, then exiting")
                    await stop.handBack("shutdown command")
                default: forward.yield(command)
                }
            }
        } catch {
            if !Task.isCancelled && !Task.isShuttingDownGracefully { logger.warning("control listener ended: \(error)") }
        }
        // its end (refused, say) stops no role: drain and shutdown still come as signals
        try? await gracefulShutdown()
    }
}

/// `GET /metrics` in Prometheus text format, from the process's swift-metrics registry.
struct MetricsEndpoint: Service {
    let server: MetricsServer

    func run() async throws {
        try? await gracefulShutdown()
        server.close()
    }
}

/// The process's Prometheus registry behind swift-metrics, with the histogram buckets Tributary's timings need.
public enum ProcessMetrics {
    public static let registry = PrometheusCollectorRegistry()

    /// Once per process, before any metric is made.
    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [.milliseconds(5), .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                                   .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
                                                   .seconds(60), .seconds(120)]
        // staleness in policy versions
        factory.valueHistogramBuckets["tributary_group_staleness"] = [0, 1, 2, 3, 4, 6, 8, 16]
        MetricsSystem.bootstrap(factory)
    }
}
