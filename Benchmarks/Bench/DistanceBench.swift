import Chaos
import Foundation
import Store
import TestSupport

/// `tributary-bench distance`: the same short training with the rollout workers on a remote host (a network namespace,
/// scripts/netlab.sh) behind each link profile, reading checkpoints from a relay there (a Redis replica of the
/// checkpoint Redis, which the broadcaster waits for), and one more worker joining mid-run that reads the origin
/// through the link. Loopback is the same fleet on this host. Per profile and async level: rollout throughput per
/// worker and its retention against loopback, checkpoint fetch times from the relay and from the origin, the bytes that
/// crossed the link per checkpoint, the join, steps per minute, learner wait, staleness, held-out accuracy, and the
/// fault table's lost and applied-twice counts. Runs on brokers of its own (.state/distance-bench); needs root.
///
/// Knobs (environment): TRIBUTARY_DISTANCE_RUN_FILE (scripts/runs/quickstart.toml), TRIBUTARY_DISTANCE_EVAL_TASKS (200),
/// TRIBUTARY_DISTANCE_TASKS_IN_FLIGHT (the workers' rollout.tasks_in_flight; default: the setting's default).
func runDistanceBench(json: Bool, profiles: [LinkProfile?], levels: [Int], steps: Int, seed: UInt64?) throws {
    signal(SIGPIPE, SIG_IGN)
    if profiles.contains(where: { $0 != nil }), let reason = NetLab.unavailableReason() {
        throw BenchError(description: "remote hosts cannot be built here: \(reason)")
    }
    let environment = ProcessInfo.processInfo.environment
    let runFile = environment["TRIBUTARY_DISTANCE_RUN_FILE"] ?? repositoryRoot.appendingPathComponent("scripts/runs/quickstart.toml").path
    let evalTasks = environment["TRIBUTARY_DISTANCE_EVAL_TASKS"] ?? "200"
    let seed = seed ?? UInt64.random(in: 1...999_999)
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-distance-bench-\(getpid())")
    print("distance bench: seed \(seed); \(runFile), \(steps) steps; async levels \(levels); rollout.tasks_in_flight "
          + "\(environment["TRIBUTARY_DISTANCE_TASKS_IN_FLIGHT"] ?? "default"); executables in \(binaries.path); logs in \(logs.path)")
    let harness = try ChaosHarness.start(state: repositoryRoot.appendingPathComponent(".state/distance-bench"), binaries: binaries, logs: logs, jail: false)
    let checkpoints = try PrivateRedis.start(in: repositoryRoot.appendingPathComponent(".state/distance-bench/checkpoint-redis"))
    ChaosInterrupt.install { harness.close(); checkpoints.stop() }
    defer { harness.close(); checkpoints.stop() }

    var rows: [DistanceRow] = []
    for level in levels {
        for profile in profiles {
            var recipe = ChaosRecipe(runFile: runFile, steps: steps, seed: seed)
            // the harness's fleet has no validator: the learner reads the scored queue (quickstart.toml validates)
            recipe.learnerOverrides = ["--run.eval_tasks", evalTasks, "--run.async_level", String(level), "--validation.enabled", "false"]
            recipe.rollouts = 2
            if let inFlight = environment["TRIBUTARY_DISTANCE_TASKS_IN_FLIGHT"] { recipe.environment["TRIBUTARY_ROLLOUT_TASKS_IN_FLIGHT"] = inFlight }
            recipe.stallSeconds = 150
            recipe.checkpointRedis = checkpoints
            recipe.joinAtStep = max(2, steps / 3)
            recipe.joinFromOrigin = true
            let chosen = recipe
            let name = "\(profile.map { "rtt\(Int($0.rttMs))" } ?? "loopback")-a\(level)"
            let row = try blocking {
                let origin = RedisClient(endpoint: checkpoints.endpoint)
                defer { origin.close() }
                var lab: NetLab?
                if let profile {
                    lab = try await NetLab.start(profile: profile, amqpPort: harness.brokers.amqpPort, redisPort: harness.brokers.redisPort,
                                                 checkpointPort: checkpoints.port, relay: true, logs: logs.appendingPathComponent(name), origin: origin)
                }
                defer { lab?.stop() }
                var recipe = chosen
                recipe.remote = lab
                let report = try await harness.run([], recipe: recipe, name: name)
                return DistanceRow(profile: profile?.name ?? "loopback", level: level, report: report)
            }
            print(row.summary)
            rows.append(row)
        }
    }
    for index in rows.indices {
        let base = rows.first { $0.level == rows[index].level && $0.profile == "loopback" }
        if let base, base.groupsPerMinute > 0 { rows[index].retention = rows[index].groupsPerMinute / base.groupsPerMinute }
    }
    print("")
    print("distance table (seed \(seed), \(steps) steps of \(URL(fileURLWithPath: runFile).lastPathComponent), 2 rollout workers on the remote host "
          + "reading its relay, a third joining at step \(max(2, steps / 3)) reading the origin through the link; logs in \(logs.path)):")
    print(DistanceRow.markdown(rows))
    if json {
        let data = try JSONEncoder().encode(DistanceJSON(seed: seed, steps: steps, rows: rows))
        print(String(decoding: data, as: UTF8.self))
    }
}

/// A bench that cannot run or whose child failed, in a sentence.
struct BenchError: Error, CustomStringConvertible {
    var description: String
}

struct DistanceJSON: Encodable {
    var seed: UInt64
    var steps: Int
    var rows: [DistanceRow]
}

/// One profile at one async level.
struct DistanceRow: Encodable {
    var profile: String
    var level: Int
    var groupsPerMinute: Double
    var retention: Double?
    var stepsPerMinute: Double
    var waitFraction: Double
    var fetchRelayMs: Double?
    var fetchOriginMs: Double?
    var bytesPerCheckpointOverLink: Double?
    var relayBytesPerCheckpoint: Double?
    var checkpointRawBytes: Int
    var joinToFirstGroupSeconds: Double?
    var joinFetchMs: Double?
    var joinGenerateMs: Double?
    var joinLoadedSeconds: Double?
    var joinTaskWaitMs: Double?
    var announceMs: Double?
    var taskPolicyWaitMs: Double?
    var staleness: [Int: Int]
    var accuracyBefore: Double?
    var accuracyAfter: Double?
    var finalStep: Int
    var lost: Int
    var appliedTwice: Int
    var finished: Bool
    var problem: String?

    init(profile: String, level: Int, report: ChaosReport) {
        let figures = report.distance ?? DistanceFigures()
        self.profile = profile
        self.level = level
        groupsPerMinute = figures.groupsPerMinutePerWorker
        stepsPerMinute = figures.stepsPerMinute
        waitFraction = figures.waitFraction
        fetchRelayMs = figures.fetchRelayMs
        fetchOriginMs = figures.fetchOriginMs
        bytesPerCheckpointOverLink = figures.bytesPerCheckpointOverLink
        relayBytesPerCheckpoint = figures.relayBytesPerCheckpoint
        checkpointRawBytes = figures.checkpointRawBytes
        joinToFirstGroupSeconds = figures.joinToFirstGroupSeconds
        joinFetchMs = figures.joinFetchMs
        joinGenerateMs = figures.joinGenerateMs
        joinLoadedSeconds = figures.joinLoadedSeconds
        joinTaskWaitMs = figures.joinTaskWaitMs
        announceMs = figures.announceMs
        taskPolicyWaitMs = figures.taskPolicyWaitMs
        staleness = figures.staleness
        accuracyBefore = report.accuracyBefore
        accuracyAfter = report.accuracyAfter
        finalStep = report.finalStep
        lost = report.account.lost
        appliedTwice = report.account.appliedTwice
        finished = report.finished
        problem = report.problem
    }

    static func format(_ value: Double?, _ pattern: String = "%.0f") -> String { value.map { String(format: pattern, $0) } ?? "—" }

    var summary: String {
        "\(profile), async \(level): \(Self.format(groupsPerMinute, "%.1f")) groups/min/worker, \(Self.format(stepsPerMinute, "%.1f")) steps/min, "
            + "wait \(Self.format(waitFraction, "%.2f")), fetch relay \(Self.format(fetchRelayMs)) ms / origin \(Self.format(fetchOriginMs)) ms, "
            + "\(Self.format(bytesPerCheckpointOverLink)) B/ckpt over link (raw \(checkpointRawBytes)), join \(Self.format(joinToFirstGroupSeconds, "%.1f")) s "
            + "(first policy at \(Self.format(joinLoadedSeconds, "%.1f")) s, its task waited \(Self.format(joinTaskWaitMs)) ms), "
            + "save to announce \(Self.format(announceMs)) ms, task policy wait \(Self.format(taskPolicyWaitMs)) ms, "
            + "accuracy \(Self.format(accuracyBefore, "%.3f")) -> \(Self.format(accuracyAfter, "%.3f")), lost \(lost), twice \(appliedTwice)"
            + (finished ? "" : ", NOT FINISHED: \(problem ?? "")")
    }

    static func markdown(_ rows: [DistanceRow]) -> String {
        var lines = ["| link | async | groups/min/worker | retention | steps/min | learner wait | fetch relay ms | fetch origin ms | bytes/ckpt to relay (raw) | origin reads bytes/ckpt "
                     + "| join → first group s (fetch ms, generate ms) | save → announce ms | task waits for policy ms | staleness 0/1/2/3+ | accuracy before → after | lost | twice |",
                     "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows {
            let stale = [0, 1, 2].map { String(row.staleness[$0] ?? 0) } + [String(row.staleness.filter { $0.key >= 3 }.values.reduce(0, +))]
            lines.append("| \(row.profile) | \(row.level) | \(format(row.groupsPerMinute, "%.1f")) | \(format(row.retention, "%.2f")) "
                         + "| \(format(row.stepsPerMinute, "%.1f")) | \(format(row.waitFraction, "%.2f")) | \(format(row.fetchRelayMs)) | \(format(row.fetchOriginMs)) "
                         + "| \(format(row.relayBytesPerCheckpoint)) (\(row.checkpointRawBytes)) "
                         + "| \(format(row.bytesPerCheckpointOverLink.flatMap { all in row.relayBytesPerCheckpoint.map { all - $0 } })) "
                         + "| \(format(row.joinToFirstGroupSeconds, "%.1f")) (\(format(row.joinFetchMs)), \(format(row.joinGenerateMs))) "
                         + "| \(format(row.announceMs)) | \(format(row.taskPolicyWaitMs)) "
                         + "| \(stale.joined(separator: "/")) | \(format(row.accuracyBefore, "%.3f")) → \(format(row.accuracyAfter, "%.3f")) "
                         + "| \(row.lost) | \(row.appliedTwice)\(row.finished ? "" : " (not finished)") |")
        }
        return lines.joined(separator: "\n")
    }
}
