import Adversary
import Foundation
import TestSupport
import Testing

/// The trust model under attack: real executables, real brokers, honest workers (one of them behind a hostile relay),
/// and a malicious worker trying every forgery while the run trains (Tests/Adversary).
@Suite("Adversary", .serialized)
struct AdversaryTests {
    @Test(.timeLimit(.minutes(10)))
    func everyAttackIsRefusedAndTheRunKeepsStepping() async throws {
        let run = "e2e-adversary-\(UUID().uuidString.prefix(6).lowercased())"
        var recipe = AdversaryRecipe(runFile: repositoryRoot.appendingPathComponent("scripts/runs/smoke.toml").path, run: run,
                                     learnerOverrides: ["--run.steps", String(Cluster.endlessSteps)])
        recipe.stopAfterSteps = 3
        recipe.timeoutSeconds = 420  // bounds a failing run below the test's limit, so it says where it stopped
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-\(run)")
        let report = try await AdversaryRun.execute(recipe, binaries: binaryDirectory, logs: logs)

        for outcome in report.outcomes + report.relayOutcomes {
            #expect(outcome.refused, "\(outcome.name): \(outcome.detail) (logs in \(logs.path))")
        }
        let names = Set((report.outcomes + report.relayOutcomes).map(\.name))
        for attack in ["forged answer", "swapped prompt", "other sampling settings", "future policy version", "unloaded policy version", "u64 max policy version",
                       "task never issued", "task filled twice", "replayed group", "another worker's id", "bad signature", "unsigned group", "banned key",
                       "oversize group", "malformed group", "NaN log-probs",
                       "swapped shard", "swapped manifest", "zstd bomb in a shard", "rolled-back latest"] {
            #expect(names.contains(attack), "attack '\(attack)' was not tried")
        }
        #expect(report.attacksRefused == report.attacksTried)
        #expect(report.trustedProcessRestarts == 0)
        #expect(report.honestGroupsRefused == 0)
        #expect(report.finalStep >= report.stepAtAttack + 3, "the run kept stepping: \(report.stepAtAttack) -> \(report.finalStep)")
        // the relayed worker refused the three tampered copies and noticed the rollback (its own /metrics)
        #expect(report.checkpointsRefused >= 3, "checkpoints refused: \(report.checkpointsRefused)")
        #expect(report.relayRollbacks >= 1 && report.originFallbacks >= 4, "rollbacks \(report.relayRollbacks), origin reads \(report.originFallbacks)")
    }
}
