import Checkpoints
import Config
import Foundation
import Logging
import Messaging
import Runtime
import Store
import TestSupport
import Wire

/// One training run of the fault table: the quickstart's task (or any run file) with fewer steps, the fleet supervised
/// as compose would, faults injected at seeded random steps after training started.
public struct ChaosRecipe: Sendable {
    /// The run file every process gets (its id rewritten per run, its steps endless: see `steps`).
    public var runFile: String
    /// The run trains endlessly and the harness stops it (StopRun: the learner evaluates and marks it stopped) once it
    /// reached this step and stepped three times after its last fault, so that no fault of fixed length can outlast a
    /// run that would have finished without it (a few smoke steps take under a second).
    public var steps: Int
    /// Run settings for the learner only, e.g. ["--run.eval_tasks", "200"].
    public var learnerOverrides: [String] = []
    public var rollouts = 3
    public var scorers = 2
    public var seed: UInt64
    /// How long fault 8 keeps a scorer stopped.
    public var scorerPauseSeconds = 30.0
    /// How long fault 9 keeps the worker cut off; nil: until the broker has dropped its connection (missed heartbeats).
    public var partitionSeconds: Double? = 60
    /// RabbitMQ's consumer timeout during a run with fault 7 (the default is 30 minutes).
    public var consumerTimeoutMs = 10_000
    /// A run that takes no step for this long is given up (not finished).
    public var stallSeconds = 180.0
    public var timeoutSeconds = 1800.0
    /// Every service's environment on top of the brokers'.
    public var environment: [String: String] = ["TRIBUTARY_BLAS_THREADS": "1"]
    /// The rollout workers run on this remote host (through its link; checkpoints from its relay, which the
    /// broadcaster waits for); nil: on this host, on loopback.
    public var remote: NetLab?
    /// The run's checkpoints live in this Redis (`checkpoints.redis_url`, the one relays replicate); nil: the run's Redis.
    public var checkpointRedis: PrivateRedis?
    /// One more rollout worker starts at this step, where the others run (an elastic join, timed).
    public var joinAtStep: Int?
    /// The joining worker reads checkpoints from the origin through the link instead of the relay (to time both).
    public var joinFromOrigin = false
    /// The work queues' type, for every service and the harness's own client (quorum on a cluster).
    public var queueType: QueueType = .classic

    public init(runFile: String, steps: Int, seed: UInt64) {
        self.runFile = runFile
        self.steps = steps
        self.seed = seed
    }
}

/// A fault-specific check (the crash point fired, the standby took over, a bad setting was refused).
public struct ChaosCheck: Sendable, Codable {
    public var name: String
    public var passed: Bool
    public var detail: String
}

/// One fault as injected: when, and how long until the run stepped again.
public struct Injection: Sendable, Codable {
    public var fault: Fault
    public var atStep: Int
    public var startedMs: Int64
    /// When the fault was over (the kill; the SIGCONT; the reconnect; the broker killed, whose restart is recovery).
    public var endedMs: Int64
    /// From `endedMs` to the first learner step after it; nil if none came.
    public var recoverySeconds: Double?
    public var checks: [ChaosCheck] = []
}

public struct ChaosReport: Sendable, Codable {
    public var run: String
    public var seed: UInt64
    public var faults: [Fault]
    public var injections: [Injection] = []
    public var finished = false
    public var finalStep = 0
    public var steps = 0
    public var account = TaskAccount()
    public var versionsRewritten = 0
    public var rewrittenVersions: [UInt64] = []
    public var versionsSeen = 0
    public var trustedProcessRestarts = 0
    public var accuracyBefore: Double?
    public var accuracyAfter: Double?
    public var seconds = 0.0
    public var logs = ""
    /// Why the run was given up, or what the harness could not do.
    public var problem: String?
    /// With a remote host or a join in the recipe: what the run measured across distance.
    public var distance: DistanceFigures?

    public var checks: [ChaosCheck] { injections.flatMap(\.checks) }
    /// Lost, twice and rewritten all zero, the run finished and every fault-specific check passed.
    public var passed: Bool {
        finished && account.lost == 0 && account.appliedTwice == 0 && versionsRewritten == 0 && checks.allSatisfy(\.passed)
    }
}

/// The harness's brokers and worker jail, shared by the runs of one bench or test suite.
public final class ChaosHarness: Sendable {
    public let brokers: ChaosBrokers
    public let jail: WorkerJail?
    public let binaries: URL
    public let logs: URL

    init(brokers: ChaosBrokers, jail: WorkerJail?, binaries: URL, logs: URL) {
        self.brokers = brokers
        self.jail = jail
        self.binaries = binaries
        self.logs = logs
    }

    /// Brokers of its own under `state` and, with `jail`, the network namespace for fault 9 (needs root); with
    /// `clusterNodes`, RabbitMQ is a cluster of that many nodes (fault 14).
    public static func start(state: URL, binaries: URL, logs: URL, jail wantsJail: Bool, clusterNodes: Int = 0) throws -> ChaosHarness {
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let jail = wantsJail ? try WorkerJail.create() : nil
        do {
            let brokers = try ChaosBrokers.start(state: state, jailHost: jail?.hostAddress, clusterNodes: clusterNodes)
            return ChaosHarness(brokers: brokers, jail: jail, binaries: binaries, logs: logs)
        } catch {
            jail?.remove()
            throw error
        }
    }

    /// One run with `faults` injected in order, each at its own random step.
    public func run(_ faults: [Fault], recipe: ChaosRecipe, name: String) async throws -> ChaosReport {
        if faults.contains(.rolloutPartition), jail == nil { throw ChaosError("fault 9 needs the worker jail (ChaosHarness.start(jail: true))") }
        if faults.contains(.clusterNodeKill), brokers.clusterNodes.count < 3 {
            throw ChaosError("fault 14 needs a RabbitMQ cluster of three nodes or more (ChaosHarness.start(clusterNodes: 3))")
        }
        let run = try await ChaosRun(harness: self, faults: faults, recipe: recipe, name: name)
        return await run.execute()
    }

    /// Stops the brokers and removes the jail.
    public func close() {
        brokers.stop()
        jail?.remove()
    }

    /// The harness's own clients lose their broker on purpose (faults 5 and 6): their reconnect warnings are noise.
    static var quietLogger: Logger {
        var logger = Logger(label: "tributary.chaos")
        logger.logLevel = .error
        return logger
    }

    static func progress(_ text: String) {
        FileHandle.standardError.write(Data("chaos: \(text)\n".utf8))
    }
}

/// A small seeded generator (SplitMix64): the same seed draws the same fault steps.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class ChaosRun: @unchecked Sendable {
    let harness: ChaosHarness
    let faults: [Fault]
    let recipe: ChaosRecipe
    let names: Names
    let runFile: URL
    let logs: URL
    let fleet: SupervisedFleet
    let amqp: AMQPClient
    let redis: RedisClient
    let watch: VersionWatch
    var rng: SeededGenerator
    var report: ChaosReport
    let started = ContinuousClock.now
    /// The run's first step counts from here (a fresh epoch restarts it).
    var epochStartedMs: Int64 = 0
    /// When the harness began to end the run; tasks issued after it are in flight by definition.
    var endingMs: Int64?
    /// Task ids whose task or group was still in a work queue at the end.
    var queued: Set<String> = []

    init(harness: ChaosHarness, faults: [Fault], recipe: ChaosRecipe, name: String) async throws {
        self.harness = harness
        self.faults = faults
        self.recipe = recipe
        let run = "chaos-\(name)-\(getpid())"
        names = Names(run: run)
        logs = harness.logs.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        runFile = logs.appendingPathComponent("run.toml")
        try Self.runFileText(base: recipe.runFile, run: run, steps: Self.endlessSteps).write(to: runFile, atomically: true, encoding: .utf8)
        let brokers = harness.brokers
        var environment = recipe.environment.merging(brokers.serviceEnvironment) { $1 }.merging(["TRIBUTARY_QUEUE_TYPE": recipe.queueType.rawValue]) { $1 }
        // fault 9 tells the cut-off worker's drop by the tasks queue's consumer count: one consumer per worker, so the
        // workers' tasks in flight stay fixed (a worker whose number grows opens one more consumer per growth)
        if faults.contains(.rolloutPartition), environment["TRIBUTARY_ROLLOUT_TASKS_IN_FLIGHT"] == nil {
            environment["TRIBUTARY_ROLLOUT_TASKS_IN_FLIGHT"] = "4"
        }
        fleet = SupervisedFleet(fleet: try ServiceFleet(binaries: harness.binaries, logs: logs, environment: environment))
        amqp = AMQPClient(endpoints: try brokers.amqpEndpoints, topology: names.topology(queueType: recipe.queueType), name: "chaos-harness",
                          logger: ChaosHarness.quietLogger)
        redis = RedisClient(endpoint: brokers.redisEndpoint)
        watch = VersionWatch(names: names, amqp: try brokers.amqpEndpoints, redis: recipe.checkpointRedis?.endpoint ?? brokers.redisEndpoint)
        rng = SeededGenerator(state: recipe.seed ^ Self.stableHash(name))
        report = ChaosReport(run: run, seed: recipe.seed, faults: faults, steps: recipe.steps, logs: logs.path)
    }

    static let endlessSteps = 1_000_000

    /// FNV-1a: the run's name picks its own random stream from the seed (Swift's hashValue differs per process).
    static func stableHash(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// The base run file with this run's id and step count.
    static func runFileText(base: String, run: String, steps: Int) throws -> String {
        let text = try String(contentsOfFile: base, encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            let key = line.split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces) ?? ""
            if key == "id" { return "id = \"\(run)\"" }
            if key == "steps" { return "steps = \(steps)" }
            return String(line)
        }.joined(separator: "\n")
    }

    func execute() async -> ChaosReport {
        do {
            try await connect()
            try await launchFleet()
            if let step = recipe.joinAtStep { try await joinWorker(at: step) }
            try await injectAll()
            try await awaitFinish()
        } catch {
            report.problem = "\(error)"
            ChaosHarness.progress("\(names.run): \(error)")
        }
        await collect()
        return report
    }

    func connect() async throws {
        try await amqp.connect()
        try await redis.connect()
        try await watch.connect()
        // what an earlier run under this name left
        if let keys = try? await redis.scanKeys(matching: "\(names.prefix):*"), !keys.isEmpty { _ = try await redis.del(keys) }
        if faults.contains(.learnerPausePastConsumerTimeout) {
            let (brokers, timeout) = (harness.brokers, recipe.consumerTimeoutMs)
            try await offPool("consumer-timeout") { try brokers.setConsumerTimeout(milliseconds: timeout) }
        }
    }

    // MARK: The fleet

    func arguments(_ instance: String) -> [String] {
        ["--config", runFile.path, "--run.id", names.run, "--service.connect_timeout", "30", "--service.instance", instance]
            + (recipe.checkpointRedis.map { ["--checkpoints.redis_url", $0.url] } ?? [])
    }

    var learnerArguments: [String] { arguments("learner") + ["--learner.autostart", "true"] + recipe.learnerOverrides }

    /// The crash points armed at launch, by instance, at the planned steps.
    var crashPoints: [String: String] = [:]
    /// The step each fault is injected at, drawn before launch (crash points are armed by step).
    var plannedSteps: [Int] = []

    func planSteps() {
        // spread over the first two thirds of the run, each in its own slice, from step 2 on
        let last = max(3, recipe.steps * 2 / 3)
        let slice = max(1, (last - 2) / max(1, faults.count))
        plannedSteps = faults.indices.map { index in 2 + index * slice + Int.random(in: 0..<slice, using: &rng) }
        for (fault, step) in zip(faults, plannedSteps) {
            // the learner saves once at the start and once per step; the broadcaster writes versions 0, 1, ...
            switch fault {
            case .learnerKillAfterSave: crashPoints["learner", default: ""] += ",learner.after-save@\(step + 1)"
            case .broadcasterKillMidWrite: crashPoints["broadcaster", default: ""] += ",broadcaster.mid-write@\(step + 1)"
            default: break
            }
        }
    }

    func crashEnvironment(_ instance: String) -> [String: String] {
        crashPoints[instance].map { ["TRIBUTARY_CRASH_AT": String($0.dropFirst())] } ?? [:]
    }

    func launchFleet() async throws {
        planSteps()
        ChaosHarness.progress("\(names.run): faults \(faults.map(\.number).joined(separator: ",")) at steps \(plannedSteps), seed \(recipe.seed); logs in \(logs.path)")
        let relays = recipe.remote?.hasRelay == true ? ["--broadcaster.replicas", "1"] : []
        try fleet.launch(role: "broadcaster", instance: "broadcaster", arguments: arguments("broadcaster") + relays, environment: crashEnvironment("broadcaster"))
        for index in 0..<recipe.scorers { try fleet.launch(role: "reward", instance: "reward-\(index)", arguments: arguments("reward-\(index)")) }
        for index in 0..<recipe.rollouts {
            let instance = "rollout-\(index)"
            if index == 0, faults.contains(.rolloutPartition), let jail = harness.jail {
                try fleet.launch(role: "rollout", instance: instance, arguments: arguments(instance), environment: harness.brokers.jailedEnvironment,
                                 wrapper: jail.wrapper)
            } else {
                try launchRollout(instance)
            }
        }
        fleet.startSupervising()
        let queue = names.tasksQueue
        try await waitUntil("\(recipe.rollouts) rollout workers to consume \(queue)", within: 180) {
            ((try? await self.amqp.inspect(queue: queue))?.consumers ?? 0) >= self.recipe.rollouts
        }
        try fleet.launch(role: "learner", instance: "learner", arguments: learnerArguments, environment: crashEnvironment("learner"))
        epochStartedMs = WallClock.nowMs()
    }

    // MARK: Reading the run

    func state() async throws -> RunState { try await RunState.read(redis, names: names) }

    func step() async -> Int { (try? await state().step) ?? 0 }

    /// The first learner step recorded after `ms` (the metrics stream's entry ids are Redis's clock in ms).
    func firstStepAfter(_ ms: Int64) async -> Int64? {
        guard let entries = try? await redis.xrange(names.metricsKey, from: String(ms + 1), count: 1), let first = entries.first else { return nil }
        return Int64(first.id.split(separator: "-").first ?? "")
    }

    /// Waits for the run to reach `target`; throws when it stalls.
    func awaitStep(_ target: Int) async throws {
        if let status = try? await state().status, status.isFinal { throw ChaosError("the run ended (\(status)) before step \(target)") }
        var last = await step()
        var lastChange = ContinuousClock.now
        while last < target {
            try await Task.sleep(for: .milliseconds(100))
            let now = await step()
            if now != last {
                (last, lastChange) = (now, ContinuousClock.now)
            } else if (ContinuousClock.now - lastChange).seconds > recipe.stallSeconds {
                throw ChaosError("no step for \(Int(recipe.stallSeconds)) s at step \(last) (waiting for step \(target))")
            }
            if let status = try? await state().status, status.isFinal { throw ChaosError("the run ended (\(status)) at step \(last) before step \(target)") }
        }
    }

    /// Waits for the learner's next step after the fault was over, and records the time it took.
    func recordRecovery(_ injection: inout Injection) async {
        let deadline = ContinuousClock.now + .seconds(recipe.stallSeconds)
        while ContinuousClock.now < deadline {
            if let ms = await firstStepAfter(injection.endedMs) {
                injection.recoverySeconds = Double(ms - injection.endedMs) / 1000
                return
            }
            if let state = try? await state(), state.status?.isFinal == true { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func injectAll() async throws {
        for (fault, step) in zip(faults, plannedSteps) {
            var injection: Injection
            do {
                injection = try await inject(fault, at: step)
            } catch {
                report.injections.append(Injection(fault: fault, atStep: step, startedMs: WallClock.nowMs(), endedMs: WallClock.nowMs(),
                                                   checks: [ChaosCheck(name: "injected", passed: false, detail: "\(error)")]))
                throw error
            }
            // a crash point that never fired injected nothing to recover from
            if !injection.checks.contains(where: { !$0.passed && $0.name.hasPrefix("crash point") }) { await recordRecovery(&injection) }
            ChaosHarness.progress("\(names.run): fault \(fault.number) at step \(injection.atStep): steps resumed after "
                                  + (injection.recoverySeconds.map { String(format: "%.1f s", $0) } ?? "— (none)"))
            report.injections.append(injection)
        }
    }

    /// Until the run reached its steps and three more after its last fault; then StopRun, and until the learner has
    /// evaluated and marked it stopped. Given up when no step comes for `stallSeconds`.
    func awaitFinish() async throws {
        let deadline = started + .seconds(recipe.timeoutSeconds)
        let target = max(recipe.steps, await step() + 3)
        var last = -1
        var lastChange = ContinuousClock.now
        while true {
            let current = try? await state()
            // a fresh epoch (fault 11) counts its own steps
            let step = (current?.startedAtMs ?? 0) >= epochStartedMs ? current?.step ?? 0 : 0
            if step >= target { break }
            if let status = current?.status, status.isFinal { throw ChaosError("the run ended (\(status)) at step \(step) before step \(target): \(current?.reason ?? "")") }
            if step != last {
                (last, lastChange) = (step, ContinuousClock.now)
            } else if (ContinuousClock.now - lastChange).seconds > recipe.stallSeconds {
                throw ChaosError("no step for \(Int(recipe.stallSeconds)) s at step \(step) (status \(current?.status?.rawValue ?? "?"))")
            }
            guard ContinuousClock.now < deadline else { throw ChaosError("step \(target) not reached within \(Int(recipe.timeoutSeconds)) s (step \(step))") }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await endRun()
    }

    /// Ends the run so that what is in flight can be told from what was lost: the rollout workers and scorers stopped
    /// (SIGTERM: each hands back what it holds), the tasks and groups left in their queues drained (the learner's finish
    /// purges the task queue), then StopRun (the learner hands back its batch, evaluates and marks the run stopped), the
    /// rest of the fleet stopped, and the scored groups drained.
    func endRun() async throws {
        endingMs = WallClock.nowMs()
        let workers = fleet.instances(role: "rollout") + fleet.instances(role: "reward")
        for instance in workers { fleet.signal(instance, SIGCONT); fleet.signal(instance, SIGTERM, restart: false) }
        for instance in workers {
            if let process = fleet.process(instance), (try? await process.waitForExit(within: 60)) == nil {
                fleet.signal(instance, SIGKILL, restart: false)
                _ = try? await process.waitForExit(within: 30)
            }
        }
        for queue in [names.tasksQueue, names.rolloutsQueue] {
            queued.formUnion(try await TaskAccounting.drain(queue, amqp: amqp).compactMap(\.taskID))
        }
        let stopSent = WallClock.nowMs()
        var stop = ControlCommand()
        stop.envelope = Envelope(runID: names.run, role: "control", instance: "chaos")
        stop.command = .stop(Tributary_V1_StopRun())
        try await amqp.publish(exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: names.run),
                               body: try stop.encoded(), messageID: stop.messageID)
        try await waitUntil("the learner to evaluate and end the run after StopRun", within: recipe.stallSeconds) {
            guard let state = try? await self.state(), let status = state.status else { return false }
            return (status == .stopped || status == .finished) && state.accuracyAfter != nil && (state.finishedAtMs ?? 0) >= stopSent - 1000
        }
        report.finished = true
    }

    // MARK: The figures

    func collect() async {
        let final = try? await state()
        report.finalStep = final?.step ?? 0
        report.accuracyBefore = final?.accuracyBefore
        report.accuracyAfter = final?.accuracyAfter
        report.trustedProcessRestarts = fleet.trustedRestarts
        // every service stopped (SIGTERM: held work goes back to its queue), so the dead letters and the ledger hold still
        for exit in fleet.stopAll(gracePeriod: 30) where exit.forced {
            ChaosHarness.progress("\(names.run): \(exit.process.name) ignored SIGTERM for 30 s: SIGKILL")
        }
        if faults.contains(.learnerPausePastConsumerTimeout) {
            let brokers = harness.brokers
            _ = try? await offPool("consumer-timeout") { try brokers.resetConsumerTimeout() }
        }
        do {
            // a run given up on: whatever is left in its queues now
            for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue] {
                queued.formUnion(try await TaskAccounting.drain(queue, amqp: amqp).compactMap(\.taskID))
            }
            let letters = try await TaskAccounting.drainDeadLetters(names: names, amqp: amqp)
            report.account = try await TaskAccounting.account(names: names, redis: redis, deadLetters: letters, queued: queued, endMs: endingMs ?? WallClock.nowMs(),
                                                              finalStep: report.finalStep,
                                                              deadlineSeconds: TaskAccounting.deadlineSeconds(config: final?.config))
        } catch {
            report.problem = (report.problem.map { $0 + "; " } ?? "") + "accounting failed: \(error)"
        }
        let rewritten = watch.rewritten
        report.versionsRewritten = rewritten.count
        report.rewrittenVersions = rewritten.keys.sorted()
        report.versionsSeen = watch.versionsSeen
        report.seconds = (ContinuousClock.now - started).seconds
        if recipe.remote != nil || recipe.joinAtStep != nil { report.distance = await distanceFigures() }
        await watch.close()
        // the batch log beside the service logs (the keys go next): what a lost or twice-applied task was part of
        if let batches = try? await redis.xrange(names.batchesLogKey) {
            let lines = batches.map { entry in
                let fields = entry.fields.mapValues { String(decoding: $0, as: UTF8.self) }
                return "\(entry.id)\t\(fields["step"] ?? "")\t\(fields["tasks"] ?? "")"
            }
            try? (["entry\tstep\ttasks"] + lines).joined(separator: "\n").write(to: logs.appendingPathComponent("batches.tsv"), atomically: true, encoding: .utf8)
        }
        // the run's keys and queues: the harness's brokers serve many runs
        if let keys = try? await redis.scanKeys(matching: "\(names.prefix):*"), !keys.isEmpty { _ = try? await redis.del(keys) }
        if let checkpoints = recipe.checkpointRedis {
            let client = RedisClient(endpoint: checkpoints.endpoint)
            if let keys = try? await client.scanKeys(matching: "\(names.prefix):*"), !keys.isEmpty { _ = try? await client.del(keys) }
            client.close()
        }
        for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue, names.policiesQueue, names.deadLettersQueue] {
            try? await amqp.delete(queue: queue)
        }
        await amqp.close()
        redis.close()
    }
}
