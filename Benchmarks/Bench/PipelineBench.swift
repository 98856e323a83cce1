import Foundation
import Messaging
import Model
import Checkpoints
import Config
import Runtime
import Store
import Synchronization
import TestSupport

/// `tributary-bench pipeline`: the real executables (learner, broadcaster, reward, rollout workers) launched as child
/// processes against the brokers of scripts/brokers.sh, the same short training at async level 0 and at 2.
/// Figures come from the run's Redis streams: learner wait fraction and steps per minute from `metrics`
/// (step 1 excluded: it holds the pipeline's fill and the workers' first checkpoint load), checkpoint times from
/// `broadcast` (saved -> announced) and `loads` (saved -> loaded by every worker).
///
/// Knobs (environment): TRIBUTARY_PIPELINE_STEPS (default 200: about a minute per level here), _WORKERS (rollout workers, 2), _SCORERS (reward scorers, 2: one scorer was the bottleneck),
/// _GROUPS (groups per step, 32), _GROUP_SIZE (16), _LEVELS ("0,2"), _NATIVE_BLAS (1: give the children
/// OPENBLAS_CORETYPE when OpenBLAS would fall back to generic kernels, as the model bench does for itself),
/// _VALIDATORS (0: validation off; n > 0 runs n tributary-validator with validation on) at _VALIDATION_FRACTION (0.1).
func runPipelineBench(json: Bool) throws {
    signal(SIGPIPE, SIG_IGN)
    let recipe = PipelineRecipe.fromEnvironment()
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-pipeline-bench-\(getpid())")
    try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
    print("pipeline bench: executables in \(binaries.path), service logs in \(logs.path)")
    print("recipe: \(recipe.summary)")
    pipelineBenchInstallStopHandlers()

    var results: [PipelineRunResult] = []
    for level in recipe.asyncLevels {
        let run = "bench-a\(level)-\(getpid())"
        print("async level \(level): run \(run), load average \(pipelineBenchLoadAverage()) ...")
        let result = try pipelineBenchRun(run: run, asyncLevel: level, recipe: recipe, binaries: binaries, logs: logs)
        print(result.report)
        results.append(result)
    }

    var figures: [(key: String, value: Double)] = []
    for result in results {
        figures.append(("learner_wait_fraction_async\(result.asyncLevel)", result.waitFraction))
        figures.append(("steps_per_min_async\(result.asyncLevel)", result.stepsPerMinute))
    }
    let broadcast = results.flatMap(\.broadcastMs)
    let loaded = results.flatMap(\.loadedMs)
    figures.append(("checkpoint_broadcast_ms", pipelineBenchMedian(broadcast)))
    figures.append(("checkpoint_loaded_ms", pipelineBenchMedian(loaded)))
    for result in results {
        figures.append(("checkpoint_broadcast_ms_async\(result.asyncLevel)", pipelineBenchMedian(result.broadcastMs)))
        figures.append(("checkpoint_loaded_ms_async\(result.asyncLevel)", pipelineBenchMedian(result.loadedMs)))
    }
    var extra = ["recipe": recipe.summary, "logs": logs.path, "load_average_end": pipelineBenchLoadAverage(),
                 "blas_core": recipe.nativeBLAS ? (BLAS.suggestedCoreType ?? BLAS.coreName) : BLAS.coreName]
    for result in results { extra["load_average_async\(result.asyncLevel)"] = result.loadAverage }
    printFigures(title: "pipeline (\(recipe.workers) rollout workers, \(recipe.scorers) reward scorers, 1 broadcaster, 1 learner; blas.threads 1 each; "
                 + "wait fraction = sum wait_s / sum step_s over steps 2..N; checkpoint ms = median over versions, both runs)",
                 figures, extra: extra, json: json)
}

/// The short training both async levels run: the quickstart's task, model and warm start, fewer steps.
struct PipelineRecipe {
    var steps = 200
    var workers = 2
    var scorers = 2
    var groupsPerStep = 32
    var groupSize = 16
    var asyncLevels = [0, 2]
    var nativeBLAS = true
    var validators = 0
    var validationFraction = 0.1
    var timeoutSeconds = 900.0

    static func fromEnvironment() -> PipelineRecipe {
        let environment = ProcessInfo.processInfo.environment
        func int(_ name: String) -> Int? { environment["TRIBUTARY_PIPELINE_\(name)"].flatMap { Int($0) } }
        var recipe = PipelineRecipe()
        recipe.steps = int("STEPS") ?? recipe.steps
        recipe.workers = max(1, int("WORKERS") ?? recipe.workers)
        recipe.scorers = max(1, int("SCORERS") ?? recipe.scorers)
        recipe.groupsPerStep = int("GROUPS") ?? recipe.groupsPerStep
        recipe.groupSize = int("GROUP_SIZE") ?? recipe.groupSize
        recipe.nativeBLAS = (int("NATIVE_BLAS") ?? 1) != 0
        recipe.validators = max(0, int("VALIDATORS") ?? recipe.validators)
        recipe.validationFraction = environment["TRIBUTARY_PIPELINE_VALIDATION_FRACTION"].flatMap { Double($0) } ?? recipe.validationFraction
        if let levels = environment["TRIBUTARY_PIPELINE_LEVELS"] {
            recipe.asyncLevels = levels.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        return recipe
    }

    /// The learner's run settings as flags (everything explicit, so both levels train the same thing).
    func learnerFlags(run: String, asyncLevel: Int) -> [String] {
        let settings: [(String, String)] = [
            ("run.id", run), ("run.async_level", String(asyncLevel)), ("run.steps", String(steps)),
            ("run.groups_per_step", String(groupsPerStep)), ("run.seed", "1"), ("run.eval_tasks", "200"),
            ("environment.name", "arithmetic"), ("environment.digits", "2"), ("environment.operands", "2"),
            ("environment.operations", "add"),
            ("inference.group_size", String(groupSize)), ("inference.temperature", "1.0"), ("inference.max_new_tokens", "4"),
            ("trainer.learning_rate", "0.001"), ("trainer.warmup_steps", "3000"), ("trainer.warmup_target_accuracy", "0.15"),
            ("trainer.warmup_learning_rate", "0.003"), ("trainer.warmup_batch", "64"),
            ("model.layers", "2"), ("model.heads", "4"), ("model.channels", "64"), ("model.context", "16"),
            ("learner.autostart", "true"),
            ("validation.enabled", validators > 0 ? "true" : "false"), ("validation.fraction", String(validationFraction)),
        ]
        return settings.flatMap { ["--\($0.0)", $0.1] }
    }

    var summary: String {
        "2-digit addition, GPT 2x4x64 ctx 16, warm start to 15% probe accuracy, then \(steps) GRPO steps of \(groupsPerStep) groups x \(groupSize), "
            + "seed 1; \(workers) rollout, \(scorers) reward, 1 broadcaster, 1 learner"
            + (validators > 0 ? ", \(validators) validator at p = \(validationFraction)" : "")
    }
}

struct PipelineRunResult {
    var asyncLevel: Int
    var steps: Int
    var waitFraction: Double
    var waitFractionAllSteps: Double
    var stepsPerMinute: Double
    var meanTrainSeconds: Double
    var meanStepSeconds: Double
    var staleDropped: Int
    var zeroSignal: Int
    var staleness: [Int: Int]
    var broadcastMs: [Double]
    var loadedMs: [Double]
    var loadedVersions: Int
    var accuracyBefore: String
    var accuracyAfter: String
    var wallSeconds: Double
    var cpuSeconds: [(name: String, seconds: Double)]
    var loadAverage: String

    var report: String {
        let histogram = staleness.keys.sorted().map { "\($0):\(staleness[$0]!)" }.joined(separator: " ")
        let cpu = cpuSeconds.map { "\($0.name) \(String(format: "%.1f", $0.seconds))" }.joined(separator: ", ")
        return """
              steps \(steps) in \(String(format: "%.1f", wallSeconds)) s from learner launch (warm start and evaluations included)
              wait fraction \(String(format: "%.3f", waitFraction)) (all steps \(String(format: "%.3f", waitFractionAllSteps))), \
            \(String(format: "%.1f", stepsPerMinute)) steps/min, mean step \(String(format: "%.3f", meanStepSeconds)) s, mean train \(String(format: "%.3f", meanTrainSeconds)) s
              stale dropped \(staleDropped), zero-signal \(zeroSignal), staleness of used groups {\(histogram)}
              checkpoint saved->announced median \(String(format: "%.0f", pipelineBenchMedian(broadcastMs))) ms, saved->loaded by every worker \
            median \(String(format: "%.0f", pipelineBenchMedian(loadedMs))) ms (\(loadedVersions) versions loaded by all)
              held-out accuracy \(accuracyBefore) -> \(accuracyAfter); CPU seconds: \(cpu); load average \(loadAverage)
            """
    }
}

/// One run: launch the fleet, wait for the learner to finish, read the streams, stop and reap every child, clean up.
func pipelineBenchRun(run: String, asyncLevel: Int, recipe: PipelineRecipe, binaries: URL, logs: URL) throws -> PipelineRunResult {
    let redis = try RedisConnection(endpoint: .fromEnvironment())
    let names = Names(run: run)
    try pipelineBenchDeleteKeys(redis, names: names)
    var environment: [String: String] = [:]
    if recipe.nativeBLAS, let core = BLAS.suggestedCoreType { environment["OPENBLAS_CORETYPE"] = core }
    let fleet = try ServiceFleet(binaries: binaries, logs: logs, environment: environment)
    defer {
        for exit in fleet.stopAll(gracePeriod: 30) {
            if exit.forced { print("  \(exit.process.name) ignored SIGTERM for 30 s: SIGKILL") }
            if exit.code != 0 { print("  \(exit.process.name) exited with \(exit.code) (see its log)") }
        }
        try? pipelineBenchDeleteKeys(redis, names: names)
        try? pipelineBenchDeleteQueues(names)
    }
    let common = ["--run.id", run, "--blas.threads", "1"]
    try fleet.launch("tributary-broadcaster", name: "broadcaster-a\(asyncLevel)", arguments: common + ["--service.instance", "bench-broadcaster"])
    for index in 1...recipe.scorers {
        try fleet.launch("tributary-reward", name: "reward\(index)-a\(asyncLevel)", arguments: common + ["--service.instance", "bench-reward-\(index)"])
    }
    for index in stride(from: 1, through: recipe.validators, by: 1) {
        try fleet.launch("tributary-validator", name: "validator\(index)-a\(asyncLevel)", arguments: common + ["--service.instance", "bench-validator-\(index)"])
    }
    var workerNames: [String] = []
    for index in 1...recipe.workers {
        workerNames.append("bench-rollout-\(index)")
        try fleet.launch("tributary-rollout", name: "rollout\(index)-a\(asyncLevel)", arguments: common + ["--service.instance", "bench-rollout-\(index)"])
    }
    let launched = ContinuousClock.now
    try fleet.launch("tributary-learner", name: "learner-a\(asyncLevel)",
                     arguments: recipe.learnerFlags(run: run, asyncLevel: asyncLevel) + ["--blas.threads", "1", "--service.instance", "bench-learner"])

    // Wait for the learner to mark the run finished (it evaluates, then idles until SIGTERM).
    let deadline = ContinuousClock.now + .seconds(recipe.timeoutSeconds)
    var lastStep = ""
    var state: [String: String] = [:]
    while true {
        if pipelineBenchStopRequested.load(ordering: .relaxed) { throw PipelineBenchError(problem: "interrupted") }
        if let dead = fleet.firstExited() {
            throw PipelineBenchError(problem: "\(dead.name) (pid \(dead.pid)) exited early with \(dead.poll()!); log tail:\n\(dead.logTail())")
        }
        state = try redis.hgetall(names.stateKey).mapValues { String(decoding: $0, as: UTF8.self) }
        if state["status"] == "finished", state["accuracy_after"] != nil { break }
        if let step = state["step"], step != lastStep, let number = Int(step), number % 10 == 0 {
            lastStep = step
            print("  step \(step) / \(recipe.steps)")
        }
        guard ContinuousClock.now < deadline else {
            throw PipelineBenchError(problem: "run \(run) did not finish within \(Int(recipe.timeoutSeconds)) s (state: \(state)); logs in \(logs.path)")
        }
        usleep(200_000)
    }
    let wall = (ContinuousClock.now - launched)
    let cpu = pipelineBenchCPUSeconds(fleet.processes)
    let loadAverage = pipelineBenchLoadAverage()

    // Learner steps: wait and step time, excluding step 1 (pipeline fill and the workers' first load).
    let entries = try redis.xrange(names.metricsKey)
    let metrics = entries.compactMap { StepMetrics(entry: $0) }
    guard metrics.count >= 3, metrics.count == entries.count else {
        throw PipelineBenchError(problem: "run \(run) wrote \(entries.count) metrics entries, \(metrics.count) of them whole steps")
    }
    func number(_ entry: RedisStreamEntry, _ field: String) -> Double { entry.fields[field].flatMap { Double(String(decoding: $0, as: UTF8.self)) } ?? 0 }
    let steady = Array(metrics.dropFirst())
    let waitSteady = steady.reduce(0) { $0 + $1.waitSeconds }
    let stepSteady = steady.reduce(0) { $0 + $1.stepSeconds }
    let waitAll = metrics.reduce(0) { $0 + $1.waitSeconds }
    let stepAll = metrics.reduce(0) { $0 + $1.stepSeconds }
    let spanMs = pipelineBenchEntryMs(entries.last!.id) - pipelineBenchEntryMs(entries.first!.id)
    // The per-step figures, kept beside the service logs for a closer look.
    let columns = ["step", "wait_s", "train_s", "step_s", "groups", "zero_signal", "stale_dropped", "staleness", "accuracy", "kl"]
    let table = ([(["ms"] + columns).joined(separator: "\t")] + zip(entries, metrics).map { entry, step in
        let fields = step.streamFields
        return ([String(Int(pipelineBenchEntryMs(entry.id)))] + columns.map { fields[$0] ?? "" }).joined(separator: "\t")
    }).joined(separator: "\n") + "\n"
    try? table.write(to: logs.appendingPathComponent("metrics-a\(asyncLevel).tsv"), atomically: true, encoding: .utf8)
    var staleness: [Int: Int] = [:]
    for step in metrics {
        for (key, count) in step.staleness { staleness[Int(key) ?? -1, default: 0] += count }
    }

    // Checkpoints: saved -> announced per version; saved -> loaded by every worker for versions all of them loaded.
    var savedMs: [Int: Double] = [:]
    var broadcastMs: [Double] = []
    for entry in try redis.xrange(names.broadcastLogKey) {
        let version = Int(number(entry, "version"))
        savedMs[version] = number(entry, "saved_ms")
        broadcastMs.append(number(entry, "announced_ms") - number(entry, "saved_ms"))
    }
    var loads: [Int: [String: Double]] = [:]
    for entry in try redis.xrange(names.loadsLogKey) {
        let worker = entry.fields["worker"].map { String(decoding: $0, as: UTF8.self) } ?? "?"
        loads[Int(number(entry, "version")), default: [:]][worker] = number(entry, "loaded_ms")
    }
    var loadedMs: [Double] = []
    for (version, byWorker) in loads where workerNames.allSatisfy({ byWorker[$0] != nil }) {
        guard let saved = savedMs[version] else { continue }
        loadedMs.append(byWorker.values.max()! - saved)
    }

    return PipelineRunResult(
        asyncLevel: asyncLevel, steps: metrics.count, waitFraction: waitSteady / max(stepSteady, 1e-9),
        waitFractionAllSteps: waitAll / max(stepAll, 1e-9), stepsPerMinute: Double(metrics.count - 1) / max(spanMs / 60_000, 1e-9),
        meanTrainSeconds: steady.reduce(0) { $0 + $1.trainSeconds } / Double(steady.count), meanStepSeconds: stepSteady / Double(steady.count),
        staleDropped: metrics.reduce(0) { $0 + $1.staleDropped }, zeroSignal: metrics.reduce(0) { $0 + $1.zeroSignal },
        staleness: staleness, broadcastMs: broadcastMs, loadedMs: loadedMs, loadedVersions: loadedMs.count,
        accuracyBefore: state["accuracy_before"].map { String(format: "%.3f", Double($0) ?? 0) } ?? "?",
        accuracyAfter: state["accuracy_after"].map { String(format: "%.3f", Double($0) ?? 0) } ?? "?",
        wallSeconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18, cpuSeconds: cpu, loadAverage: loadAverage)
}

/// User + system CPU seconds of every child still running, from /proc.
private func pipelineBenchCPUSeconds(_ processes: [LaunchedProcess]) -> [(name: String, seconds: Double)] {
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    return processes.filter { $0.poll() == nil }.compactMap { child in
        guard let stat = try? String(contentsOfFile: "/proc/\(child.pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3 of the man page, utime 14 and stime 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (child.name, (user + system) / ticks)
    }
}

struct PipelineBenchError: Error, CustomStringConvertible {
    var problem: String
    var description: String { "pipeline bench: \(problem)" }
}

private let pipelineBenchStopRequested = Atomic<Bool>(false)
nonisolated(unsafe) private var pipelineBenchSignalSources: [DispatchSourceSignal] = []

/// SIGINT/SIGTERM to the bench ends the wait, so the fleet is stopped and reaped on the way out.
func pipelineBenchInstallStopHandlers() {
    pipelineBenchSignalSources = [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { pipelineBenchStopRequested.store(true, ordering: .relaxed) }
        source.resume()
        return source
    }
}

private func pipelineBenchDeleteKeys(_ redis: RedisConnection, names: Names) throws {
    let keys = try redis.scanKeys(matching: "\(names.prefix):*")
    if !keys.isEmpty { _ = try redis.del(keys) }
}

private func pipelineBenchDeleteQueues(_ names: Names) throws {
    let queues = [names.tasksQueue, names.rolloutsQueue, names.scoredQueue, names.validatedQueue, names.policiesQueue, names.deadLettersQueue]
    try blockingAwait {
        let client = AMQPClient(endpoint: try .fromEnvironment(), name: "bench-pipeline-cleanup")
        try await client.connect()
        for queue in queues { try? await client.delete(queue: queue) }
        await client.close()
    }
}

private func pipelineBenchEntryMs(_ id: String) -> Double { Double(id.split(separator: "-").first ?? "0") ?? 0 }

private func pipelineBenchMedian(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return -1 }  // nothing measured (JSON has no NaN)
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

private func pipelineBenchLoadAverage() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
}
