import Adversary
import Checkpoints
import Foundation
import Runtime
import Signing
import Synchronization
import TestSupport
import Wire

/// `tributary-bench adversary`: the adversary suite's attacks (Tests/Adversary) during a short real training run with
/// the quickstart's recipe, and the same run without them; plus what signing costs per group and per checkpoint.
///
/// Knobs (environment): TRIBUTARY_ADVERSARY_STEPS (default 200), TRIBUTARY_ADVERSARY_RUN_FILE (scripts/runs/quickstart.toml).
func runAdversaryBench(json: Bool) throws {
    signal(SIGPIPE, SIG_IGN)
    let environment = ProcessInfo.processInfo.environment
    let steps = environment["TRIBUTARY_ADVERSARY_STEPS"].flatMap { Int($0) } ?? 200
    let runFile = environment["TRIBUTARY_ADVERSARY_RUN_FILE"] ?? repositoryRoot.appendingPathComponent("scripts/runs/quickstart.toml").path
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-adversary-bench-\(getpid())")
    print("adversary bench: \(runFile), \(steps) steps; executables in \(binaries.path), service logs in \(logs.path)")

    let costs = try signingCosts()
    var reports: [Bool: AdversaryReport] = [:]
    for attack in [true, false] {
        var recipe = AdversaryRecipe(runFile: runFile, run: "bench-adversary-\(attack ? "on" : "off")-\(getpid())", learnerOverrides: ["--run.steps", String(steps)])
        recipe.attack = attack
        recipe.scorers = 2
        recipe.timeoutSeconds = 1800
        let folder = logs.appendingPathComponent(attack ? "attacked" : "baseline")
        print("\(attack ? "with" : "without") the adversary: run \(recipe.run) ...")
        let chosen = recipe
        let report = try blocking { try await AdversaryRun.execute(chosen, binaries: binaries, logs: folder) }
        for outcome in report.outcomes + report.relayOutcomes {
            print("  \(outcome.refused ? "refused" : "NOT REFUSED"): \(outcome.name) (\(outcome.detail))")
        }
        reports[attack] = report
    }
    let attacked = reports[true]!, baseline = reports[false]!
    func gain(_ report: AdversaryReport) -> Double { 100 * ((report.accuracyAfter ?? 0) - (report.accuracyBefore ?? 0)) }
    // Workers sign and the scorer verifies off the learner's path; bounded by the learner step's time spent on them all.
    let groupsPerStep = 32.0
    let stepSeconds = baseline.stepsPerMinute > 0 ? 60 / baseline.stepsPerMinute : 0
    let signingPerStep = groupsPerStep * (costs.signGroup + costs.verifyGroup) / 1e6
    let figures: [(key: String, value: Double)] = [
        ("attacks_tried", Double(attacked.attacksTried)),
        ("attacks_refused", Double(attacked.attacksRefused)),
        ("trusted_process_restarts", Double(attacked.trustedProcessRestarts + baseline.trustedProcessRestarts)),
        ("honest_groups_refused", Double(attacked.honestGroupsRefused + baseline.honestGroupsRefused)),
        ("accuracy_gain_points_attacked", gain(attacked)),
        ("accuracy_gain_points_baseline", gain(baseline)),
        ("accuracy_gain_difference_points", gain(attacked) - gain(baseline)),
        ("sign_group_us", costs.signGroup),
        ("verify_group_us", costs.verifyGroup),
        ("sign_checkpoint_us", costs.signCheckpoint),
        ("verify_checkpoint_us", costs.verifyCheckpoint),
        ("steps_per_min_attacked", attacked.stepsPerMinute),
        ("steps_per_min_baseline", baseline.stepsPerMinute),
        ("throughput_ratio_with_signing", stepSeconds > 0 ? stepSeconds / (stepSeconds + signingPerStep) : 0),
        ("relay_checkpoints_refused", attacked.checkpointsRefused),
        ("relay_rollbacks_seen", attacked.relayRollbacks),
        ("origin_fallbacks", attacked.originFallbacks),
    ]
    printFigures(title: "adversary (\(steps) steps of \(URL(fileURLWithPath: runFile).lastPathComponent), 3 rollout workers (one behind a hostile relay), 2 scorers; "
                 + "signing costs: median of 2000 on a quickstart-sized group (16 x 5 tokens) and a 1-shard manifest; "
                 + "throughput_ratio_with_signing = step time / (step time + 32 groups x (sign + verify)), since signing is not optional)",
                 figures, extra: ["logs": logs.path], json: json)
}

/// Median microseconds to sign and to verify a quickstart-sized group, and a checkpoint manifest.
func signingCosts() throws -> (signGroup: Double, verifyGroup: Double, signCheckpoint: Double, verifyCheckpoint: Double) {
    let identity = WorkerIdentity(key: try SigningKey.generate(), file: "(bench)")
    var group = RolloutGroup()
    group.envelope = Envelope(runID: "bench", role: "rollout", instance: "bench")
    group.task = RolloutTask.with { $0.taskID = "bench-1"; $0.prompt = "12+34="; $0.groupSize = 16 }
    group.promptTokens = [256] + "12+34=".utf8.map { Int32($0) }
    group.completions = (0..<16).map { _ in Completion.with { $0.tokens = [52, 54, 257, 0, 0]; $0.logprobs = [-0.1, -0.2, -0.3, -0.4, -0.5] } }
    group.workerID = "bench"
    func median(_ body: () throws -> Void) rethrows -> Double {
        var samples: [Double] = []
        for _ in 0..<2000 {
            let started = ContinuousClock.now
            try body()
            samples.append((ContinuousClock.now - started).seconds * 1e6)
        }
        return samples.sorted()[samples.count / 2]
    }
    let signGroup = try median { try identity.sign(&group) }
    let verifyGroup = try median { _ = try group.verifiedSigner() }
    let manifest = try CheckpointManifest.with {
        $0.runID = "bench"; $0.version = 1; $0.totalBytes = 200_000; $0.sha256 = String(repeating: "a", count: 64)
        $0.shards = [ShardInfo.with { $0.key = "tributary:bench:ckpt:1:shard:0"; $0.rawBytes = 200_000; $0.sha256 = String(repeating: "b", count: 64) }]
    }.serializedBytes() as [UInt8]
    let signature = identity.key.sign(manifest)
    let signCheckpoint = median { _ = identity.key.sign(manifest) }
    let verifyCheckpoint = median { _ = identity.publicKey.isValid(signature: signature, of: manifest) }
    return (signGroup, verifyGroup, signCheckpoint, verifyCheckpoint)
}

/// Runs async work to completion from this synchronous command.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let outcome: Result<T, Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}
