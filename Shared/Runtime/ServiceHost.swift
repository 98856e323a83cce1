import Config
import Foundation
import Logging
import Messaging
import Model
import RL
import ServiceLifecycle
import Wire

/// A role: a Service built from its context. Its `run()` reads as its step of the pipeline.
public protocol Role: Service {
    init(context: ServiceContext) throws
}

/// One role and its companions (control listener, heartbeat, metrics endpoint) in one ServiceGroup, connected to the
/// brokers. The process entry point runs one; tests construct one in process and drive it against the real brokers.
public final class ServiceHost: Sendable {
    public let context: ServiceContext
    private let group: ServiceGroup
    private let server: MetricsServer?

    /// Connects (retrying while the brokers come up) and builds the role. `signals`: SIGTERM and SIGINT drain (off in tests).
    public init<R: Role>(_ role: R.Type, name: String, settings: Settings, throughputUnit: String, logger: Logger, signals: Bool = true) async throws {
        let runID = try settings.string("run.id")
        let fabric = try Fabric(settings: settings, role: name, runID: runID, logger: logger)
        var logger = logger
        logger[metadataKey: "instance"] = "\(fabric.identity.instance)"
        let status = StatusBoard(identity: fabric.identity, throughputUnit: throughputUnit)
        // A role that runs candidate programs (reward, learner) declares the sandbox setting; this process's policy is it.
        if settings[SandboxPolicy.allowWeakIsolationKey] != nil {
            let policy = SandboxPolicy.configureProcess(allowWeakIsolation: try settings.bool(SandboxPolicy.allowWeakIsolationKey))
            if let caveat = policy.caveat {
                status.addCaveat(caveat)
                logger.warning("\(caveat)")
            }
            if let refusal = policy.refusal { logger.notice("code tasks will be refused: \(refusal)") }
        }
        let metricsPort = try settings.int("metrics.port")
        server = metricsPort >= 0 ? try MetricsServer(port: metricsPort, render: { ProcessMetrics.registry.emitToBuffer() }) : nil
        let port = server?.port ?? -1
        status.update { $0.metricsPort = port }
        if let server { logger.info("serving Prometheus metrics on :\(server.port)/metrics") }
        do {
            try await fabric.connect(timeoutSeconds: try settings.double("service.connect_timeout"))
        } catch {
            server?.close()
            throw error
        }
        logger.info("connected: amqp \(fabric.amqp.endpoint), redis \(fabric.redis.endpoint)")
        let stop = StopRequest()
        let (control, forward) = AsyncStream<ControlCommand>.makeStream()
        context = ServiceContext(settings: settings, fabric: fabric, status: status, stop: stop, logger: logger, control: control)
        let role: R
        do { role = try R(context: context) } catch {
            await fabric.close()
            server?.close()
            throw error
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let server { services.append(.init(service: MetricsEndpoint(server: server), serviceName: "metrics")) }
        services.append(.init(service: Heartbeat(fabric: fabric, status: status), serviceName: "heartbeat"))
        services.append(.init(service: ControlListener(fabric: fabric, stop: stop, forward: forward, logger: logger), serviceName: "control"))
        // The role's end (done or failed) stops its companions; a role that fails makes the group's run() throw.
        services.append(.init(service: role, successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: name))
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [],
                                                      logger: logger)
        configuration.logging.keys.serviceKey = "service"
        group = ServiceGroup(configuration: configuration)
        stop.onStop { [group] in await group.triggerGracefulShutdown() }
    }

    /// Runs until the role ends or is stopped, then closes the connections: whatever is still unacknowledged goes back to its queue.
    public func run() async throws {
        defer { server?.close() }
        do {
            try await group.run()
        } catch {
            context.status.set(state: "stopped", detail: "\(error)")
            await context.fabric.close()
            throw error
        }
        context.status.set(state: "stopped")
        await context.fabric.close()
    }

    /// Finish what is in hand, take nothing new, stop.
    public func drain() async { await context.stop.drain("drain") }
    /// Hand back what is in hand (nack with requeue), stop.
    public func shutdown() async { await context.stop.handBack("shutdown") }
    /// What SIGTERM and SIGINT do: the group's graceful shutdown, straight (a drain that bypasses the stop request).
    public func terminate() async { await group.triggerGracefulShutdown() }
}

/// The entry point of a role's executable: settings, logging, metrics, then one ServiceHost until it ends.
public enum ServiceProcess {
    /// Returns the process's exit status: 0 when the role ended or was stopped, 1 when it failed, 2 for bad settings.
    /// `runKeys` are settings the role prints itself once it knows its run (the learner's knobs).
    public static func main<R: Role>(_ role: R.Type, name: String, abstract: String, specs: [Setting], throughputUnit: String = "items/s",
                                     runKeys: Set<String> = []) async -> Int32 {
        // OpenBLAS 0.3.21 picks generic kernels on some CPUs; the choice happens at load, so re-exec with it set.
        BLAS.relaunchWithNativeKernelsIfNeeded()
        signal(SIGPIPE, SIG_IGN)
        let allSpecs = Fabric.settings + specs.filter { spec in !Fabric.settings.contains { $0.key == spec.key } }
        let settings: Settings
        do {
            settings = try Settings.load(role: "tributary-\(name)", abstract: abstract, specs: allSpecs)
        } catch {
            FileHandle.standardError.write(Data("tributary-\(name): \(error)\n".utf8))
            return 2
        }
        let level = Logger.Level(rawValue: settings["log.level"] ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "tributary.\(name)")
        logger.logLevel = level
        print(settings.effectiveDescription(role: "tributary-\(name)", excluding: runKeys))
        do {
            try Fabric.validate(settings)
        } catch {
            FileHandle.standardError.write(Data("tributary-\(name): \(error)\n".utf8))
            return 2
        }
        if settings.dryRun { return 0 }
        ProcessMetrics.bootstrap()
        do {
            BLAS.setThreads(try settings.int("blas.threads"))
            let host = try await ServiceHost(role, name: name, settings: settings, throughputUnit: throughputUnit, logger: logger)
            try await host.run()
            logger.info("\(name) stopped (\(host.context.stop.reason ?? "done"))")
            return 0
        } catch {
            logger.error("\(name) failed: \(error)")
            return 1
        }
    }
}
