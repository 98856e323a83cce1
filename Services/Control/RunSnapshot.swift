import Foundation
import Messaging
import Checkpoints
import Config
import Runtime

/// Everything `status` and `watch` show about a run, read at one moment.
struct RunSnapshot {
    struct QueueDepth {
        var role: String
        var name: String
        var messages: Int
        var consumers: Int
    }

    var run: String
    var state: [String: String]
    var config: RunConfig?
    var fleet: [StatusBoard.Snapshot]
    var queues: [QueueDepth]
    var counters: [String: String]
    var recent: [StepMetrics]
    var latestCheckpoint: UInt64?
    var nowMs: Int64
    /// Every worker key's summary when the run validates (its reputation), else empty.
    var workers: [WorkerRegistry.Summary] = []

    /// The learner's status, or `lost` when it says it is working but no learner heartbeat is live (killed with -9).
    var runStatus: RunStatus? {
        guard let written = RunState(hash: state).status else { return nil }
        if written.isActive, !fleet.contains(where: { $0.role == "learner" }) { return .lost }
        return written
    }
    var status: String? { runStatus?.rawValue }
    var latest: StepMetrics? { recent.last }

    /// Reads Redis and, when the session has AMQP, the depths of the run's queues. `history` metrics entries are kept.
    static func read(_ session: ControlSession, history: Int = 1) async throws -> RunSnapshot {
        let names = session.names
        let state = try await session.state()
        var config: RunConfig?
        if let toml = state["config"], !toml.isEmpty {
            config = try? RunConfig(Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"))
        }
        var queues: [QueueDepth] = []
        if let amqp = session.amqp {
            for (role, queue) in [("tasks", names.tasksQueue), ("rollouts", names.rolloutsQueue), ("scored", names.scoredQueue),
                                  ("validated", names.validatedQueue), ("policies", names.policiesQueue), ("dead letters", names.deadLettersQueue)] {
                let depth: (messages: Int, consumers: Int)
                do { depth = try await amqp.inspect(queue: queue) } catch AMQPError.declarationFailed(_, 404, _) {
                    continue  // not declared yet: the run's learner has never connected
                }
                queues.append(QueueDepth(role: role, name: queue, messages: depth.messages, consumers: depth.consumers))
            }
        }
        var workers: [WorkerRegistry.Summary] = []
        if let validation = config?.validation, validation.enabled {
            workers = try await WorkerRegistry(names: names, redis: session.redis).summaries(probationFailures: validation.probationFailures)
        }
        return RunSnapshot(run: names.run, state: state, config: config, fleet: try await session.heartbeats(), queues: queues,
                           counters: try await session.counters(), recent: try await RunMetrics.read(session.redis, names: names, count: max(1, history)),
                           latestCheckpoint: try await CheckpointStore(names: names, redis: session.checkpointRedis).latest(), nowMs: Output.nowMs,
                           workers: workers)
    }

    // MARK: Text

    func summaryLines() -> [String] {
        guard let status else {
            return ["run \(run): not started (no \(Names(run: run).stateKey) in Redis); start it with tributary run start --config run.toml"]
        }
        var lines: [String] = []
        let steps = config.map { "/\($0.steps)" } ?? ""
        var head = "run \(run)  \(status)\(runStatus == .lost ? " (no learner heartbeat)" : "")  step \(state["step"] ?? "?")\(steps)  version \(state["version"] ?? "?")"
        if let latestCheckpoint { head += "  checkpoint \(latestCheckpoint)" }
        if let elapsed = elapsedSeconds { head += "  elapsed \(Output.seconds(elapsed))" }
        lines.append(head)
        var accuracy: [String] = []
        if let before = state["accuracy_before"].flatMap(Double.init) { accuracy.append(String(format: "held-out accuracy before %.1f%%", before * 100)) }
        if let after = state["accuracy_after"].flatMap(Double.init) { accuracy.append(String(format: "after %.1f%%", after * 100)) }
        if !accuracy.isEmpty { lines.append("  " + accuracy.joined(separator: ", ")) }
        if let point = latest {
            var parts = ["step \(point.step)"]
            func add(_ value: Double, _ label: String, _ format: String) { parts.append("\(label) \(String(format: format, value))") }
            add(point.rewardMean, "reward", "%.3f")
            add(point.accuracy, "batch accuracy", "%.3f")
            add(point.loss, "loss", "%.4f")
            if point.kl != 0 { add(point.kl, "kl", "%.5f") }
            add(point.waitSeconds, "wait", "%.2fs")
            add(point.stepSeconds, "step", "%.2fs")
            add(point.tokensPerSecond, "tokens/s", "%.0f")
            add(Double(point.staleDropped), "stale", "%.0f")
            add(Double(point.zeroSignal), "zero-signal", "%.0f")
            if !point.staleness.isEmpty {
                parts.append("ages " + point.staleness.keys.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map { "\($0):\(point.staleness[$0]!)" }.joined(separator: " "))
            }
            lines.append("  last step: " + parts.joined(separator: "  "))
        } else if let reward = state["reward_mean"] {
            lines.append("  reward \(reward)")
        }
        if let config {
            lines.append("  \(config.environment.name), \(config.groupsPerStep) groups x \(config.groupSize) per step, async level \(config.asyncLevel), lr \(config.learningRate), temperature \(config.temperature)")
        }
        return lines
    }

    var elapsedSeconds: Double? {
        guard let started = state["started_at_ms"].flatMap({ Int64($0) }) else { return nil }
        let end = state["finished_at_ms"].flatMap { Int64($0) } ?? nowMs
        return Double(max(0, end - started)) / 1000
    }

    func fleetLines() -> [String] {
        guard !fleet.isEmpty else { return ["fleet: no live instances (no heartbeat in the last 10 s)"] }
        let byRole = Dictionary(grouping: fleet, by: \.role).map { "\($0.value.count) \($0.key)" }.sorted()
        let rows = fleet.map { beat in
            [beat.role, beat.instance, beat.state, beat.policyVersion < 0 ? "-" : String(beat.policyVersion),
             String(format: "%.1f %@", beat.throughput, beat.throughputUnit), Output.seconds(Double(max(0, nowMs - beat.updatedAtUnixMs)) / 1000),
             beat.detail]
        }
        return ["fleet: \(byRole.joined(separator: ", "))", Output.table(["ROLE", "INSTANCE", "STATE", "VERSION", "THROUGHPUT", "AGE", "DETAIL"], rows)]
    }

    func queueLines() -> [String] {
        guard !queues.isEmpty else { return [] }
        let rows = queues.map { [$0.role, $0.name, String($0.messages), String($0.consumers)] }
        return ["queues:", Output.table(["QUEUE", "NAME", "READY", "CONSUMERS"], rows)]
    }

    func counterLines() -> [String] {
        guard !counters.isEmpty else { return [] }
        return ["counters: " + counters.keys.sorted().map { "\($0)=\(counters[$0]!)" }.joined(separator: "  ")]
    }

    var text: String { (summaryLines() + fleetLines() + queueLines() + validationLines() + counterLines()).joined(separator: "\n") }

    /// When the run validates: p, the probation and ban thresholds, the validators and their queue, and each worker
    /// key's verdicts (passed, failed, not sampled, not checkable) with its probation or ban.
    func validationLines() -> [String] {
        guard let validation = config?.validation, validation.enabled else { return [] }
        let validators = fleet.filter { $0.role == "validator" }.count
        let queue = queues.first { $0.role == "scored" }.map { ", \($0.messages) scored groups waiting" } ?? ""
        var lines = [String(format: "validation: p = %g (live: tributary set validation.fraction P), probation after %d failed, ban after %d; %d validator%@%@",
                            validation.fraction, validation.probationFailures, validation.banFailures, validators, validators == 1 ? "" : "s", queue)]
        let rows = workers.map { worker -> [String] in
            let counts = worker.counts
            let standing = worker.banned != nil ? "banned" : worker.onProbation ? "probation" : ""
            return [String(printable(worker.key).prefix(16)), worker.registration.map { printable($0.instance) } ?? "-",
                    String(counts["validation_passed"] ?? 0), String(counts["validation_failed"] ?? 0),
                    String(counts["validation_unsampled"] ?? 0), String(counts["validation_unchecked"] ?? 0), standing]
        }
        if !rows.isEmpty { lines.append(Output.table(["WORKER KEY", "INSTANCE", "PASSED", "FAILED", "NOT SAMPLED", "NOT CHECKABLE", "STANDING"], rows)) }
        return lines
    }

    // MARK: JSON

    var json: [String: Any] {
        var object: [String: Any] = ["run": run, "state": state.filter { $0.key != "config" }, "counters": counters]
        object["fleet"] = fleet.map { beat -> [String: Any] in
            ["role": beat.role, "instance": beat.instance, "state": beat.state, "policy_version": beat.policyVersion,
             "throughput": beat.throughput, "throughput_unit": beat.throughputUnit, "detail": beat.detail, "host": beat.host,
             "pid": Int(beat.pid), "metrics_port": beat.metricsPort, "age_s": Double(max(0, nowMs - beat.updatedAtUnixMs)) / 1000]
        }
        object["queues"] = Dictionary(uniqueKeysWithValues: queues.map { ($0.role, ["name": $0.name, "messages": $0.messages, "consumers": $0.consumers] as [String: Any]) })
        if let latestCheckpoint { object["latest_checkpoint"] = latestCheckpoint }
        if let point = latest, let data = try? JSONEncoder().encode(point) {
            object["last_step"] = try? JSONSerialization.jsonObject(with: data)
        }
        if let status { object["status"] = status }
        if let reason = state["reason"] { object["reason"] = reason }
        if let config { object["steps"] = config.steps }
        if let validation = config?.validation, validation.enabled {
            object["validation"] = [
                "fraction": validation.fraction, "probation_failures": validation.probationFailures, "ban_failures": validation.banFailures,
                "validators": fleet.filter { $0.role == "validator" }.count,
                "workers": workers.map { worker -> [String: Any] in
                    ["key": worker.key, "passed": worker.counts["validation_passed"] ?? 0, "failed": worker.counts["validation_failed"] ?? 0,
                     "unsampled": worker.counts["validation_unsampled"] ?? 0, "unchecked": worker.counts["validation_unchecked"] ?? 0,
                     "probation": worker.onProbation, "banned": worker.banned != nil]
                },
            ] as [String: Any]
        }
        return object
    }
}
