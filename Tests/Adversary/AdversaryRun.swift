import Checkpoints
import Foundation
import Messaging
import Runtime
import Signing
import Store
import TestSupport
import Wire

/// A real training run (learner, broadcaster, reward scorer, honest rollout workers, and one honest worker that reads
/// checkpoints through a hostile relay), with signed checkpoints, attacked by a malicious worker while it trains.
/// Shared by the adversary suite (which asserts on the report) and `tributary-bench adversary` (which prints it).
public struct AdversaryRecipe: Sendable {
    public var runFile: String
    public var run: String
    /// Run settings for the learner, e.g. ["--run.steps", "40"].
    public var learnerOverrides: [String]
    public var honestWorkers = 2
    public var scorers = 1
    /// Attack once the run reached this step (so a version past 0 exists to lie about).
    public var attackAtStep = 2
    /// false: the same run without adversary or relay (the bench's baseline).
    public var attack = true
    /// Stop the run (StopRun) once every attack was judged and the run stepped this many more times; nil: run to its end.
    public var stopAfterSteps: Int?
    public var timeoutSeconds = 600.0

    public init(runFile: String, run: String, learnerOverrides: [String]) {
        self.runFile = runFile
        self.run = run
        self.learnerOverrides = learnerOverrides
    }
}

public struct AdversaryReport: Sendable {
    public var outcomes: [MaliciousWorker.Outcome] = []
    /// Each relay trick and whether the relay's worker refused it and read the origin instead.
    public var relayOutcomes: [MaliciousWorker.Outcome] = []
    public var trustedProcessRestarts = 0
    /// Dead letters that no attack accounts for (an honest group refused).
    public var honestGroupsRefused = 0
    public var stepAtAttack = 0
    public var finalStep = 0
    public var accuracyBefore: Double?
    public var accuracyAfter: Double?
    public var checkpointsRefused = 0.0
    public var relayRollbacks = 0.0
    public var originFallbacks = 0.0
    public var seconds = 0.0
    public var stepsPerMinute = 0.0

    public var attacksTried: Int { outcomes.count + relayOutcomes.count }
    public var attacksRefused: Int { (outcomes + relayOutcomes).filter(\.refused).count }
}

public struct AdversaryRunFailed: Error, CustomStringConvertible {
    public var description: String
}

public enum AdversaryRun {
    /// One line per phase on stderr, so a slow or stuck run says where it is.
    static func progress(_ text: String) {
        FileHandle.standardError.write(Data("adversary: \(text)\n".utf8))
    }

    public static func execute(_ recipe: AdversaryRecipe, binaries: URL, logs: URL) async throws -> AdversaryReport {
        let names = Names(run: recipe.run)
        let amqpEndpoint = try AMQPEndpoint.fromEnvironment()
        let redisEndpoint = try RedisEndpoint.fromEnvironment()
        let fleet = try ServiceFleet(binaries: binaries, logs: logs, environment: ["TRIBUTARY_BLAS_THREADS": "1"])
        let redis = RedisClient(endpoint: redisEndpoint)
        try await redis.connect()
        // the run's topology, declared as its learner will (the other roles only check that it exists; this runs as an admin)
        let amqp = AMQPClient(endpoint: amqpEndpoint, topology: names.topology(queueType: .classic), name: "adversary-run")
        try await amqp.connect()
        let relayServer = recipe.attack ? try await RelayServer.start(in: logs) : nil
        defer {
            fleet.stopAll(gracePeriod: 0)
            relayServer?.stop()
        }
        do {
            let report = try await run(recipe, names: names, fleet: fleet, redis: redis, amqp: amqp, relayServer: relayServer,
                                       amqpEndpoint: amqpEndpoint, redisEndpoint: redisEndpoint)
            await cleanUp(names: names, redis: redis, amqp: amqp)
            return report
        } catch {
            await cleanUp(names: names, redis: redis, amqp: amqp)
            throw error
        }
    }

    static func cleanUp(names: Names, redis: RedisClient, amqp: AMQPClient) async {
        if let keys = try? await redis.scanKeys(matching: "\(names.prefix):*"), !keys.isEmpty { _ = try? await redis.del(keys) }
        for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue, names.policiesQueue, names.deadLettersQueue] {
            try? await amqp.delete(queue: queue)
        }
        await amqp.close()
        redis.close()
    }

    static func run(_ recipe: AdversaryRecipe, names: Names, fleet: ServiceFleet, redis: RedisClient, amqp: AMQPClient, relayServer: RelayServer?,
                    amqpEndpoint: AMQPEndpoint, redisEndpoint: RedisEndpoint) async throws -> AdversaryReport {
        let started = ContinuousClock.now
        let deadline = started + .seconds(recipe.timeoutSeconds)
        func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
            while true {
                if try await condition() { return }
                if let dead = fleet.firstExited() {
                    throw AdversaryRunFailed(description: "\(dead.executable) exited with \(dead.poll() ?? -1) while waiting for \(what):\n\(dead.logTail())")
                }
                guard ContinuousClock.now < deadline else { throw AdversaryRunFailed(description: "timed out waiting for \(what); logs in \(fleet.logs.path)") }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        func state() async throws -> RunState { try await RunState.read(redis, names: names) }
        func step() async throws -> Int { try await state().step ?? 0 }

        // Checkpoints signed by a key the test makes; every worker holds the public key.
        let signing = try SigningKey.generate()
        let keyFile = fleet.logs.appendingPathComponent("broadcaster.key")
        try Data((signing.hex + "\n").utf8).write(to: keyFile)
        let common = ["--config", recipe.runFile, "--run.id", names.run, "--service.connect_timeout", "30"]
        func launch(_ role: String, _ name: String, _ extra: [String] = []) throws {
            try fleet.launch("tributary-\(role)", name: name, arguments: common + ["--service.instance", name] + extra)
        }
        try launch("broadcaster", "broadcaster", ["--broadcaster.signing_key_file", keyFile.path])
        for index in 0..<recipe.scorers { try launch("reward", "reward-\(index)") }
        let verify = ["--rollout.checkpoint_public_key", signing.publicKey.hex]
        for index in 0..<recipe.honestWorkers {
            try launch("rollout", "rollout-\(index)", verify + ["--rollout.state_dir", fleet.logs.appendingPathComponent("rollout-\(index)").path])
        }
        // one more honest worker, reading checkpoints through the hostile relay (from the origin in a run without attacks)
        let relayed = relayServer.map { ["--rollout.checkpoint_redis_url", $0.url, "--rollout.relay_lag_seconds", "1"] } ?? []
        try launch("rollout", "rollout-relayed", verify + ["--rollout.state_dir", fleet.logs.appendingPathComponent("rollout-relayed").path] + relayed)
        let workers = recipe.honestWorkers + 1
        try await waitFor("\(workers) rollout workers to consume \(names.tasksQueue)") {
            ((try? await amqp.inspect(queue: names.tasksQueue))?.consumers ?? 0) >= workers
        }
        try launch("learner", "learner", ["--learner.autostart", "true"] + recipe.learnerOverrides)

        var report = AdversaryReport()
        let relay = relayServer.map { HostileRelay(names: names, origin: redisEndpoint, relay: RedisEndpoint(host: "127.0.0.1", port: $0.port)) }
        if let relay, let relayServer {
            // the relay's server already listens; the origin is the run's Redis
            var lastError = ""
            do {
                try await waitFor("the relay's Redis (\(relayServer.url)) and the origin to answer") {
                    do { try await relay.connect() } catch {
                        lastError = "\(error)"
                        return false
                    }
                    return true
                }
            } catch let failed as AdversaryRunFailed {
                throw AdversaryRunFailed(description: "\(failed.description); the last error: \(lastError); relay log: \(relayServer.server.process.logTail(lines: 5))")
            }
        }
        defer { relay?.close() }
        // the relay copies from the origin all along, tampering with what the current trick says
        let copier = Task {
            var reported: Set<String> = []
            while !Task.isCancelled, let relay {
                do { try await relay.sync() } catch {
                    if reported.insert("\(error)").inserted { progress("relay copy failed: \(error)") }
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        defer { copier.cancel() }

        progress("fleet up (\(workers) rollout workers); waiting for step \(recipe.attackAtStep)")
        try await waitFor("the run to reach step \(recipe.attackAtStep)") { try await step() >= recipe.attackAtStep }
        report.stepAtAttack = try await step()
        let adversary: MaliciousWorker? = recipe.attack ? try await MaliciousWorker.join(names: names, amqp: amqpEndpoint, redis: redisEndpoint) : nil
        if let adversary {
            defer { Task { await adversary.close() } }
            try await adversary.attackMessages { key in
                var command = ControlCommand()
                command.envelope = Envelope(runID: names.run, role: "control", instance: "operator")
                command.banWorker = Tributary_V1_BanWorker.with { $0.workerKey = Data(Hex.decode(key) ?? []); $0.reason = "adversary" }
                try await amqp.publish(exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: names.run),
                                       body: try command.encoded(), messageID: command.messageID)
            }
            progress("\(adversary.attacks.count) message attacks published at step \(report.stepAtAttack)")
            try await waitFor("\(adversary.expectedDeadLetters) attacks dead-lettered") {
                try await amqp.inspect(queue: names.deadLettersQueue).messages >= adversary.expectedDeadLetters
            }
            // each relay trick in turn, until the relayed worker read a version served under it from the origin instead
            if let relay {
                // the relayed worker's own counters say it noticed: a refused copy, or a `latest` that went back
                let port = try await metricsPort(of: "rollout-relayed", names: names, redis: redis)
                func counter(_ series: String) -> Double {
                    guard let port, let exposition = try? httpGet(port: port, path: "/metrics") else { return 0 }
                    return prometheusValue(series, in: exposition) ?? 0
                }
                for trick in HostileRelay.Trick.allCases {
                    let series = trick == .rolledBackLatest ? "tributary_relay_rollbacks_total" : "tributary_checkpoints_refused_total"
                    let before = counter(series)
                    relay.trick = trick
                    let seen = try await redis.xrange(names.loadsLogKey).count
                    var outcome = MaliciousWorker.Outcome(name: trick.rawValue, refused: false, detail: "the relayed worker loaded no version it served")
                    // met once it counted the trick and then loaded a version served under it (refused only if from the origin)
                    try await waitFor("the relayed worker to meet \(trick.rawValue)") {
                        guard counter(series) > before else { return false }
                        for entry in try await redis.xrange(names.loadsLogKey).dropFirst(seen) {
                            let fields = entry.fields.mapValues { String(decoding: $0, as: UTF8.self) }
                            guard fields["worker"] == "rollout-relayed", let version = fields["version"].flatMap(UInt64.init),
                                  relay.served[version] == trick else { continue }
                            outcome.refused = fields["source"] == "origin"
                            outcome.detail = "version \(version): counted in \(series), loaded from \(fields["source"] ?? "?")"
                            return true
                        }
                        return false
                    }
                    report.relayOutcomes.append(outcome)
                    progress("relay trick '\(trick.rawValue)': \(outcome.detail)")
                }
                relay.trick = nil
            }
        }
        let attacked = try await step()
        if let more = recipe.stopAfterSteps {
            try await waitFor("\(more) more steps after the attacks") { try await step() >= attacked + more }
            var stop = ControlCommand()
            stop.envelope = Envelope(runID: names.run, role: "control", instance: "operator")
            stop.stop = Tributary_V1_StopRun()
            try await amqp.publish(exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: names.run),
                                   body: try stop.encoded(), messageID: stop.messageID)
        }
        progress("waiting for the run to finish")
        // finished, or stopped when the recipe stopped it
        try await waitFor("the run to finish") { [.finished, .stopped].contains(try await state().status) }
        let finished = try await state()
        report.finalStep = finished.step ?? 0
        report.accuracyBefore = finished.accuracyBefore
        report.accuracyAfter = finished.accuracyAfter
        report.seconds = (ContinuousClock.now - started).seconds
        // steps 2..N (step 1 holds the pipeline's fill), as the pipeline bench counts them
        let steps = try await RunMetrics.read(redis, names: names).dropFirst()
        let stepSeconds = steps.reduce(0) { $0 + $1.stepSeconds }
        report.stepsPerMinute = stepSeconds > 0 ? Double(steps.count) * 60 / stepSeconds : 0

        progress("finished at step \(report.finalStep); reading the relayed worker's counters")
        // the relayed worker's own counters
        if relayServer != nil, let port = try await metricsPort(of: "rollout-relayed", names: names, redis: redis),
           let exposition = try? httpGet(port: port, path: "/metrics") {
            report.checkpointsRefused = prometheusValue("tributary_checkpoints_refused_total", in: exposition) ?? 0
            report.relayRollbacks = prometheusValue("tributary_relay_rollbacks_total", in: exposition) ?? 0
            report.originFallbacks = prometheusValue("tributary_checkpoint_origin_fallbacks_total", in: exposition) ?? 0
        }
        // every trusted process still the one started (none exited, so none restarted)
        report.trustedProcessRestarts = fleet.processes.filter { $0.poll() != nil }.count

        progress("collecting dead letters")
        var deadLetters: [String: String] = [:]
        var collected = 0
        let total = try await amqp.inspect(queue: names.deadLettersQueue).messages
        if total > 0 {
            for try await letter in amqp.consume(queue: names.deadLettersQueue, prefetch: 64) {
                deadLetters[letter.messageID ?? UUID().uuidString] = letter.headers["x-tributary-reason"] ?? ""
                try await letter.ack()
                collected += 1
                if collected >= total { break }
            }
        }
        let batches = try await redis.xrange(names.batchesLogKey).map { $0.fields.mapValues { String(decoding: $0, as: UTF8.self) } }
        if let adversary {
            report.outcomes = adversary.judge(deadLetters: deadLetters, batches: batches)
            let explained = Set(adversary.attacks.flatMap(\.messageIDs))
            report.honestGroupsRefused = deadLetters.keys.filter { !explained.contains($0) }.count
        } else {
            report.honestGroupsRefused = deadLetters.count
        }
        return report
    }

    static func metricsPort(of instance: String, names: Names, redis: RedisClient) async throws -> Int? {
        guard let beat = try await redis.get(names.heartbeatKey(role: "rollout", instance: instance)) else { return nil }
        return try JSONDecoder().decode(StatusBoard.Snapshot.self, from: Data(beat)).metricsPort
    }
}

/// The hostile relay's Redis: a redis-server of its own on a free loopback port (not a replica: its operator writes
/// what it likes into it), listening before the fleet starts.
struct RelayServer: Sendable {
    let server: RedisServerProcess
    var port: Int { server.port }
    var url: String { server.url }

    static func start(in logs: URL) async throws -> RelayServer {
        RelayServer(server: try await RedisServerProcess.start(["--save", "", "--appendonly", "no"], in: logs.appendingPathComponent("relay"), name: "relay"))
    }

    func stop() { server.stop() }
}
