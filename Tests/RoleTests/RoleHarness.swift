import Config
import Foundation
import Logging
import Messaging
import Runtime
import Signing
import Store
import TestSupport
import Testing
import Wire

/// One role built and run in this process against the real brokers, and the test's own connections to them.
struct RoleHarness {
    let run: String
    let names: Names
    let host: ServiceHost
    let task: Task<Error?, Never>
    /// The test's side: publishes as an admin and reads queues and keys.
    let fabric: Fabric

    /// `name` is the role ("learner", "rollout", ...); `arguments` are its flags, as on its command line.
    static func start<R: Role>(_ role: R.Type, name: String, specs: [Setting], run: String, arguments: [String]) async throws -> RoleHarness {
        let environment = ProcessInfo.processInfo.environment.filter { $0.key == "TRIBUTARY_AMQP_URL" || $0.key == "TRIBUTARY_REDIS_URL" }
        let all = Fabric.settings + specs.filter { spec in !Fabric.settings.contains { $0.key == spec.key } }
        let settings = try Settings.load(role: name, abstract: "", specs: all,
                                         arguments: ["--run.id", run, "--metrics.port", "-1", "--service.connect_timeout", "10"] + arguments,
                                         environment: environment)
        var logger = Logger(label: "test.\(name)")
        logger.logLevel = .notice
        // The test's side first: as an admin it declares the run's topology, which a role other than the learner only checks.
        let testSettings = try Settings.load(role: "test", abstract: "", specs: Fabric.settings + [Setting("run.id", "default", "")],
                                             arguments: ["--run.id", run, "--service.instance", "test-\(run)"], environment: environment)
        let fabric = try Fabric(settings: testSettings, role: "test", runID: run, logger: logger, declaresTopology: true)
        try await fabric.connect(timeoutSeconds: 10)
        let host = try await ServiceHost(role, name: name, settings: settings, throughputUnit: "items/s", logger: logger, signals: false)
        let task = Task<Error?, Never> {
            do { try await host.run() } catch { return error }
            return nil
        }
        return RoleHarness(run: run, names: Names(run: run), host: host, task: task, fabric: fabric)
    }

    static func newRun(_ prefix: String) -> String { "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())" }

    func waitFor(_ what: String, within seconds: Double = 60, _ condition: () async throws -> Bool) async throws {
        try await waitUntil(what, within: seconds, condition)
    }

    /// Waits for the role's run() to end: nil when it returned, its error when it threw.
    func exit(within seconds: Double = 60) async throws -> Error? {
        let task = self.task
        return try await withThrowingTaskGroup(of: Error?.self) { group in
            group.addTask { await task.value }
            group.addTask {
                try await Task.sleep(for: .seconds(seconds))
                throw TimedOut(what: "the role to exit", seconds: seconds)
            }
            let result = try await group.next() ?? nil
            group.cancelAll()
            return result
        }
    }

    func messages(in queue: String) async throws -> Int { try await fabric.amqp.inspect(queue: queue).messages }

    func sendControl(_ command: ControlCommand.OneOf_Command, to routingKey: String) async throws {
        var message = ControlCommand()
        message.envelope = fabric.envelope()
        message.command = command
        try await fabric.publish(message, exchange: Names.controlExchange, routingKey: routingKey)
    }

    /// Deletes the run's queues and keys.
    func cleanUp() async {
        for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue, names.validatedQueue, names.policiesQueue, names.deadLettersQueue] {
            try? await fabric.amqp.delete(queue: queue)
        }
        if let keys = try? await fabric.redis.scanKeys(matching: "\(names.prefix):*"), !keys.isEmpty { _ = try? await fabric.redis.del(keys) }
        await fabric.close()
    }
}

/// A rollout worker the test plays: a fresh key, registered for the run, that says it loaded `versions`.
struct TestWorker {
    let identity: WorkerIdentity

    static func join(_ harness: RoleHarness, loaded versions: [UInt64] = [0], register: Bool = true) async throws -> TestWorker {
        let identity = WorkerIdentity(key: try SigningKey.generate(), file: "(test)")
        let registry = WorkerRegistry(names: harness.names, redis: harness.fabric.redis)
        if register { try await registry.register(identity.publicKey, instance: "test-worker") }
        for version in versions { try await registry.recordLoad(identity.publicKey, version: version, sha256: "test") }
        return TestWorker(identity: identity)
    }

    var key: String { identity.publicKey.hex }

    /// The group with this worker's key and signature (a fresh message id, so each copy is a new message).
    func signed(_ group: RolloutGroup, _ harness: RoleHarness) throws -> RolloutGroup {
        var signed = group
        signed.envelope = harness.fabric.envelope()
        try identity.sign(&signed)
        return signed
    }
}
