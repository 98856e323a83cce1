import Chaos
import Foundation
import TestSupport
import Testing

/// Issue 14's clustered broker, shortened: a 3-node RabbitMQ cluster of the test's own (scripts/brokers.sh cluster on
/// free ports, under .state/cluster-tests), every service given all three nodes' URLs in `amqp.url` and quorum queues,
/// the smoke run trained on it, and the node holding the learner's connection (and the quorum queues' leaders) killed
/// with -9 mid-run. The chaos harness checks from the learner's ledger, the batch log, the dead-letter queue and the
/// broadcast taps that nothing was lost, applied twice or rewritten, and that the run finished; the stall (kill to the
/// learner's next step) is printed, not asserted. TRIBUTARY_CHAOS_SEED repeats a run's fault step.
@Suite("A clustered broker (issue 14)", .serialized)
struct BrokerClusterTests {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["TRIBUTARY_CHAOS_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...999_999)

    @Test("kill -9 of the cluster node the learner is connected to: clients move to the other nodes, nothing lost or applied twice",
          .timeLimit(.minutes(5)))
    func nodeKill() async throws {
        // off the cooperative pool: three nodes take half a minute to start, and as long to stop
        let harness = try await offPool("cluster-brokers") {
            try ChaosHarness.start(state: repositoryRoot.appendingPathComponent(".state/cluster-tests"), binaries: binaryDirectory,
                                   logs: FileManager.default.temporaryDirectory.appendingPathComponent("tributary-cluster-tests-\(getpid())"),
                                   jail: false, clusterNodes: 3)
        }
        var recipe = ChaosRecipe(runFile: repositoryRoot.appendingPathComponent("scripts/runs/smoke.toml").path, steps: 8, seed: Self.seed)
        recipe.queueType = .quorum
        // a task whose worker lost its connection with the node is redelivered; one lost outright would be reissued after 10 s
        recipe.learnerOverrides = ["--learner.task_deadline_seconds", "10"]
        recipe.rollouts = 2
        recipe.scorers = 1
        recipe.stallSeconds = 60
        recipe.timeoutSeconds = 180
        let run: Result<ChaosReport, any Error>
        do { run = .success(try await harness.run([.clusterNodeKill], recipe: recipe, name: "node-kill")) } catch { run = .failure(error) }
        _ = try? await offPool("cluster-brokers") { harness.close() }
        let report = try run.get()

        let row = FaultTable.markdown([FaultRow(report: report, baseline: nil)])
        let context = "seed \(Self.seed); logs in \(report.logs)\n\(row)"
        let injection = report.injections.first
        print("broker cluster: node killed at step \(injection?.atStep ?? -1); stall (kill -> next learner step) "
              + (injection?.recoverySeconds.map { String(format: "%.1f s", $0) } ?? "— (no step came)")
              + "; \(injection?.checks.map { "\($0.name): \($0.detail)" }.joined(separator: "; ") ?? "")")
        print(row)
        expectClean(report)
        #expect(injection?.recoverySeconds != nil, "the learner took no step after the kill\n\(context)")
        #expect(report.checks.count == 3, "the fault's checks: \(report.checks)\n\(context)")
    }
}
