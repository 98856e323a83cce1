import Dispatch
import Foundation
import Logging
import Messaging
import Model
import Store
import Synchronization
import Wire

/// What a service is doing, for its heartbeat and `tributary status`.
public final class StatusBoard: Sendable {
    public struct Snapshot: Sendable, Codable {
        public var role: String
        public var instance: String
        public var state: String
        public var policyVersion: Int
        public var throughput: Double
        public var throughputUnit: String
        public var detail: String
        public var metricsPort: Int
        public var pid: Int32
        public var host: String
        public var updatedAtUnixMs: Int64
    }

    private let snapshot: Mutex<Snapshot>

    init(identity: ServiceIdentity, throughputUnit: String) {
        snapshot = Mutex(Snapshot(role: identity.role, instance: identity.instance, state: "starting", policyVersion: -1, throughput: 0,
                                  throughputUnit: throughputUnit, detail: "", metricsPort: -1, pid: getpid(),
                                  host: ProcessInfo.processInfo.hostName, updatedAtUnixMs: 0))
    }

    public func update(_ body: (inout Snapshot) -> Void) { snapshot.withLock { body(&$0) } }
    public func set(state: String, detail: String = "") { update { $0.state = state; $0.detail = detail } }
    public var current: Snapshot { snapshot.withLock { $0 } }
}

/// A stop request (SIGTERM, SIGINT, `drain`, `shutdown`), awaitable.
public final class StopSignal: Sendable {
    private let state = Mutex<(requested: String?, waiters: [CheckedContinuation<Void, Never>])>((nil, []))

    public init() {}

    public var isRequested: Bool { state.withLock { $0.requested != nil } }
    public var reason: String? { state.withLock { $0.requested } }

    public func request(_ reason: String) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard state.requested == nil else { return [] }
            state.requested = reason
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    public func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.requested != nil { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}

/// Runs blocking, CPU-heavy work (the model) on a thread of its own, never on the cooperative pool.
public final class ComputeQueue: Sendable {
    private let queue: DispatchQueue

    public init(label: String) { queue = DispatchQueue(label: label) }

    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// A value only ever touched from one ComputeQueue, so it can cross into its closures.
public final class Confined<Value>: @unchecked Sendable {
    public var value: Value
    public init(_ value: Value) { self.value = value }
}

/// Everything a service's main loop gets.
public struct ServiceContext: Sendable {
    public let settings: Settings
    public let fabric: Fabric
    public let status: StatusBoard
    public let metrics: MetricsRegistry
    public let stop: StopSignal
    public let logger: Logger
    /// Control commands other than drain and shutdown (run commands, settings), for the learner.
    public let control: AsyncStream<ControlCommand>
}

public enum ServiceRuntime {
    /// Loads settings, connects, heartbeats, serves /metrics, listens for control commands and signals,
    /// runs `body` until it returns, then closes everything and exits 0 (1 on error).
    public static func main(role: String, abstract: String, specs: [Setting], throughputUnit: String = "items/s",
                            body: @escaping @Sendable (ServiceContext) async throws -> Void) async -> Never {
        // OpenBLAS 0.3.21 picks generic kernels on some CPUs; the choice happens at load, so re-exec with it set.
        BLAS.relaunchWithNativeKernelsIfNeeded()
        signal(SIGPIPE, SIG_IGN)
        let allSpecs = Fabric.settings + specs.filter { spec in !Fabric.settings.contains { $0.key == spec.key } }
        let settings: Settings
        do {
            settings = try Settings.load(role: "tributary-\(role)", abstract: abstract, specs: allSpecs)
        } catch {
            FileHandle.standardError.write(Data("tributary-\(role): \(error)\n".utf8))
            exit(2)
        }
        let level = Logger.Level(rawValue: settings["log.level"] ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "tributary.\(role)")
        logger.logLevel = level
        print(settings.effectiveDescription(role: "tributary-\(role)"))
        if settings.dryRun { exit(0) }

        do {
            BLAS.setThreads(try settings.int("blas.threads", in: 1...256))
            let runID = try settings.string("run.id")
            let fabric = try Fabric(settings: settings, role: role, runID: runID, logger: logger)
            logger[metadataKey: "instance"] = "\(fabric.identity.instance)"
            let status = StatusBoard(identity: fabric.identity, throughputUnit: throughputUnit)
            let metrics = MetricsRegistry(labels: ["role": role, "instance": fabric.identity.instance, "run": runID])
            let stop = StopSignal()
            let signals = installSignalHandlers(stop: stop, logger: logger)
            defer { _ = signals }

            let metricsPort = try settings.int("metrics.port", in: -1...65535)
            let server = metricsPort >= 0 ? try MetricsServer(port: metricsPort, registry: metrics) : nil
            status.update { $0.metricsPort = server?.port ?? -1 }
            if let server { logger.info("serving Prometheus metrics on :\(server.port)/metrics") }

            try await fabric.connect(timeoutSeconds: try settings.double("service.connect_timeout"))
            logger.info("connected: amqp \(fabric.amqp.endpoint), redis \(fabric.redis.endpoint)")

            let (control, controlContinuation) = AsyncStream<ControlCommand>.makeStream()
            let controlTask = Task { await listenForControl(fabric: fabric, stop: stop, forward: controlContinuation, logger: logger) }
            let heartbeatTask = Task { await heartbeat(fabric: fabric, status: status, stop: stop) }

            let context = ServiceContext(settings: settings, fabric: fabric, status: status, metrics: metrics, stop: stop, logger: logger,
                                         control: control)
            var exitCode: Int32 = 0
            do {
                try await body(context)
            } catch {
                logger.error("\(role) failed: \(error)")
                exitCode = 1
            }
            status.set(state: "stopped")
            controlTask.cancel()
            heartbeatTask.cancel()
            _ = try? await fabric.redis.del([fabric.names.heartbeatKey(role: role, instance: fabric.identity.instance)])
            // Closing the connection hands every unacknowledged delivery back to its queue.
            await fabric.close()
            server?.close()
            logger.info("\(role) stopped (\(stop.reason ?? "done"))")
            exit(exitCode)
        } catch {
            logger.error("\(role) could not start: \(error)")
            exit(1)
        }
    }

    private static func installSignalHandlers(stop: StopSignal, logger: Logger) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                logger.notice("received \(number == SIGTERM ? "SIGTERM" : "SIGINT"): draining")
                stop.request(number == SIGTERM ? "SIGTERM" : "SIGINT")
            }
            source.resume()
            return source
        }
    }

    /// Control commands for `all`, this role, and this instance.
    private static func listenForControl(fabric: Fabric, stop: StopSignal, forward: AsyncStream<ControlCommand>.Continuation, logger: Logger) async {
        let identity = fabric.identity
        let bindings = ["all", identity.role, "\(identity.role).\(identity.instance)",
                        Names.runRoutingKey(role: identity.role, run: fabric.names.run)].map {
            BindingSpec(queue: "", exchange: Names.controlExchange, routingKey: $0)
        }
        do {
            for try await delivery in fabric.amqp.consume(queue: "", prefetch: 16, declare: .exclusiveTemporary, bindings: bindings) {
                try await delivery.ack()
                guard let command = try? ControlCommand.decode(delivery.body, deliveredID: delivery.messageID) else {
                    logger.warning("ignoring an undecodable control message \(delivery.messageID ?? "?")")
                    continue
                }
                guard command.envelope.runID == fabric.names.run || command.envelope.runID.isEmpty else { continue }
                switch command.command {
                case .drain: stop.request("drain command")
                case .shutdown: stop.request("shutdown command")
                default: forward.yield(command)
                }
            }
        } catch {
            if !Task.isCancelled { logger.warning("control listener ended: \(error)") }
        }
        forward.finish()
    }

    private static func heartbeat(fabric: Fabric, status: StatusBoard, stop: StopSignal) async {
        let key = fabric.names.heartbeatKey(role: fabric.identity.role, instance: fabric.identity.instance)
        let encoder = JSONEncoder()
        while !Task.isCancelled {
            status.update { $0.updatedAtUnixMs = Int64(Date().timeIntervalSince1970 * 1000) }
            if let json = try? encoder.encode(status.current) {
                _ = try? await fabric.redis.command(["SET", key, [UInt8](json), "EX", "10"])
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }
}
