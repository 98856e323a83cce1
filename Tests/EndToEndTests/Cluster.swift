import Foundation
import Messaging
import Checkpoints
import Config
import Runtime
import Store
import TestSupport

struct EndToEndFailure: Error, CustomStringConvertible {
    var description: String
}

extension LaunchedProcess {
    /// "rollout" for tributary-rollout.
    var role: String { String(executable.dropFirst("tributary-".count)) }
}

/// A run of the real executables against the real brokers, under its own run id.
final class Cluster: @unchecked Sendable {
    let run: String
    let directory: URL
    let redis: RedisClient
    let names: Names
    /// Every service started, killed on teardown if still running.
    let fleet: ServiceFleet
    var processes: [LaunchedProcess] { fleet.processes }
    private let common: [String]
    /// Run settings only the learner takes (other roles refuse flags they do not know).
    private let learnerOverrides: [String]

    init(run prefix: String, config: String = "scripts/runs/smoke.toml", overrides: [String] = []) async throws {
        run = "\(prefix)-\(UUID().uuidString.prefix(6).lowercased())"
        names = Names(run: run)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-e2e-\(run)")
        fleet = try ServiceFleet(binaries: binaryDirectory, logs: directory, environment: ["TRIBUTARY_BLAS_THREADS": "1"])
        common = ["--config", repositoryRoot.appendingPathComponent(config).path, "--run.id", run, "--service.connect_timeout", "30"]
        learnerOverrides = overrides
        redis = RedisClient(endpoint: try RedisEndpoint.fromEnvironment())
        try await redis.connect()
    }

    @discardableResult
    func launch(_ role: String, name: String? = nil, extra: [String] = []) throws -> LaunchedProcess {
        let instance = name ?? "\(role)-\(processes.filter { $0.role == role }.count)"
        return try fleet.launch("tributary-\(role)", name: instance,
                                arguments: common + ["--service.instance", instance] + (role == "learner" ? learnerOverrides : []) + extra)
    }

    /// A step count no test reaches: a test that must act while the run goes on (stop a worker, kill the learner) runs
    /// this long and ends the run itself, since a few steps of the smoke model take well under a second on a fast idle
    /// machine and could all be over before the test gets to act.
    static let endlessSteps = 1_000_000

    /// Broadcaster, reward, workers, then, once every worker consumes the task queue, the learner starting the run
    /// from the run file: so every worker takes part from the first task on, however slowly the processes start.
    func startAll(rollouts: Int = 2, rolloutExtra: [String] = [], broadcasterExtra: [String] = []) async throws {
        try launch("broadcaster", extra: broadcasterExtra)
        try launch("reward")
        for _ in 0..<rollouts { try launch("rollout", extra: rolloutExtra) }
        // The run's topology, declared as its learner will (the other roles wait until it exists; tests run as an admin).
        let amqp = AMQPClient(endpoint: try AMQPEndpoint.fromEnvironment(), topology: names.topology(queueType: .classic), name: "e2e-readiness")
        try await amqp.connect()
        let queue = names.tasksQueue
        do {
            try await waitFor("\(rollouts) rollout workers to consume \(queue)", within: 120) {
                ((try? await amqp.inspect(queue: queue))?.consumers ?? 0) >= rollouts
            }
        } catch {
            await amqp.close()
            throw error
        }
        await amqp.close()
        try launch("learner", extra: ["--learner.autostart", "true"])
    }

    func state() async throws -> [String: String] {
        try await redis.hgetall(names.stateKey).mapValues { String(decoding: $0, as: UTF8.self) }
    }

    func stream(_ key: String) async throws -> [[String: String]] {
        try await redis.xrange(key).map { $0.fields.mapValues { String(decoding: $0, as: UTF8.self) } }
    }

    /// Waits until the learner's state satisfies `condition`, failing early if a process dies.
    func waitForState(_ what: String, within seconds: Double, allowDead: Set<pid_t> = [], _ condition: ([String: String]) -> Bool) async throws {
        try await waitFor(what, within: seconds, allowDead: allowDead) { condition(try await state()) }
    }

    /// Waits until `condition` holds, failing early if a process dies. The deadline only bounds a failing test.
    func waitFor(_ what: String, within seconds: Double, allowDead: Set<pid_t> = [], _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            if let dead = fleet.firstExited(except: allowDead) {
                throw EndToEndFailure(description: "\(dead.role) exited with \(dead.poll()!) while waiting for \(what):\n\(dead.logTail())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        if try await condition() { return }
        throw EndToEndFailure(description: "timed out waiting for \(what); state: \(try await state()); logs in \(directory.path)")
    }

    /// SIGTERM to every live process; returns each one's exit code.
    func terminateAll(within seconds: Double = 60) async throws -> [(role: String, code: Int32)] {
        try await fleet.terminateAll(within: seconds).map { ($0.process.role, $0.code) }
    }

    /// Kills anything left and deletes the run's keys; the log folder stays for inspection on failure.
    func tearDown() async {
        fleet.stopAll(gracePeriod: 0)
        if let keys = try? await redis.scanKeys(matching: "\(names.prefix):*"), !keys.isEmpty { _ = try? await redis.del(keys) }
        let amqp = AMQPClient(endpoint: (try? AMQPEndpoint.fromEnvironment()) ?? AMQPEndpoint(), name: "e2e-cleanup")
        if (try? await amqp.connect()) != nil {
            for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue, names.validatedQueue, names.policiesQueue, names.deadLettersQueue] {
                try? await amqp.delete(queue: queue)
            }
            await amqp.close()
        }
        redis.close()
    }
}
