import Chaos
import Foundation
import TestSupport

/// `tributary-bench chaos`: issue 13's fault table. A fault-free run of the quickstart's task (fewer steps), then one
/// run per fault, each fault injected at a seeded random step after training started; per row what was lost, applied
/// twice or rewritten, the trusted restarts, the time until steps resumed, and accuracy against the fault-free run.
/// Runs on brokers of its own (it kills them), started on free ports under .state/chaos-bench; fault 9 needs root.
///
/// Knobs (environment): TRIBUTARY_CHAOS_RUN_FILE (scripts/runs/quickstart.toml), TRIBUTARY_CHAOS_EVAL_TASKS (200).
func runChaosBench(json: Bool, faults: [Fault], steps: Int, seed: UInt64?, scorerPause: Double, partition: Double) throws {
    signal(SIGPIPE, SIG_IGN)
    let environment = ProcessInfo.processInfo.environment
    let runFile = environment["TRIBUTARY_CHAOS_RUN_FILE"] ?? repositoryRoot.appendingPathComponent("scripts/runs/quickstart.toml").path
    let evalTasks = environment["TRIBUTARY_CHAOS_EVAL_TASKS"] ?? "200"
    let seed = seed ?? UInt64.random(in: 1...999_999)
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-chaos-bench-\(getpid())")
    var faults = faults
    var skipped: [String] = []
    if faults.contains(.rolloutPartition), geteuid() != 0 {
        faults.removeAll { $0 == .rolloutPartition }
        skipped.append("9 (a network namespace needs root)")
    }
    print("chaos bench: seed \(seed); \(runFile), \(steps) steps; faults \(faults.map(\.number).joined(separator: ",")); "
          + "executables in \(binaries.path); run logs in \(logs.path)")

    let harness = try ChaosHarness.start(state: repositoryRoot.appendingPathComponent(".state/chaos-bench"), binaries: binaries, logs: logs,
                                         jail: faults.contains(.rolloutPartition))
    ChaosInterrupt.install { harness.close() }
    defer { harness.close() }
    var recipe = ChaosRecipe(runFile: runFile, steps: steps, seed: seed)
    // the harness's fleet has no validator: the learner reads the scored queue (quickstart.toml validates)
    recipe.learnerOverrides = ["--run.eval_tasks", evalTasks, "--validation.enabled", "false"]
    recipe.scorerPauseSeconds = scorerPause
    recipe.partitionSeconds = partition
    recipe.stallSeconds = 150

    var reports: [ChaosReport] = []
    let chosen = recipe
    let baseline = try blocking { try await harness.run([], recipe: chosen, name: "baseline") }
    print(FaultTable.markdown([FaultRow(report: baseline, baseline: nil)]))
    for fault in faults {
        let report = try blocking { try await harness.run([fault], recipe: chosen, name: "fault\(fault.number)") }
        print(FaultTable.markdown([FaultRow(report: report, baseline: baseline)]).split(separator: "\n").dropFirst(2).joined(separator: "\n"))
        reports.append(report)
    }
    let rows = [FaultRow(report: baseline, baseline: nil)] + reports.map { FaultRow(report: $0, baseline: baseline) }
    print("")
    print("fault table (seed \(seed), \(steps) steps of \(URL(fileURLWithPath: runFile).lastPathComponent), \(recipe.rollouts) rollout workers, "
          + "\(recipe.scorers) reward scorers; scorer stopped \(Int(scorerPause)) s, worker cut off \(Int(partition)) s, consumer timeout \(recipe.consumerTimeoutMs / 1000) s; "
          + "recovery = fault over -> next learner step):")
    print(FaultTable.markdown(rows))
    if !skipped.isEmpty { print("not run: \(skipped.joined(separator: ", "))") }
    print("targets met: \(rows.dropFirst().filter(\.meetsTargets).count) of \(rows.count - 1) faults; run logs in \(logs.path)")
    if json { print(try FaultTable.json(rows, seed: seed)) }
}
