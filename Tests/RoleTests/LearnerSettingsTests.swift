import Config
import Foundation
@testable import Learner
import Runtime
import TestSupport
import Testing
import Wire

/// A `set` that reaches the learner without the CLI's check (another client, an older CLI): the learner checks it
/// again with the same ranges and keeps the old value.
@Suite("Learner live settings", .serialized)
struct LearnerSettingsTests {
    /// The run's configuration as the learner stored it.
    func storedConfig(_ harness: RoleHarness) async throws -> RunConfig? {
        guard let toml = try await RunState.read(harness.fabric.redis, names: harness.names).config else { return nil }
        return try RunConfig(Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"))
    }

    @Test(.timeLimit(.minutes(3)))
    func theLearnerRefusesNonFiniteNegativeAndOutOfRangeValuesItIsSent() async throws {
        let run = RoleHarness.newRun("learner-set")
        let harness = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run,
                                                  arguments: LearnerRoleTests.arguments)
        defer { Task { await harness.cleanUp() } }
        try await harness.waitFor("the run to start") { try await RunState.read(harness.fabric.redis, names: harness.names).status == .running }
        let learner = Names.runRoutingKey(role: "learner", run: run)
        for (key, value) in [("trainer.learning_rate", "nan"), ("trainer.learning_rate", "inf"), ("trainer.learning_rate", "-1"),
                             ("trainer.learning_rate", "2"), ("inference.group_size", "-4"), ("run.async_level", "1000")] {
            try await harness.sendControl(.set(Tributary_V1_SetParameter.with { $0.key = key; $0.value = value }), to: learner)
        }
        // commands are applied in order: once this valid one shows, every bad one before it has been refused
        try await harness.sendControl(.set(Tributary_V1_SetParameter.with { $0.key = "trainer.learning_rate"; $0.value = "0.0005" }), to: learner)
        try await harness.waitFor("the valid set applied") { try await storedConfig(harness)?.learningRate == 0.0005 }
        let config = try #require(try await storedConfig(harness))
        #expect(config.groupSize == 2 && config.asyncLevel == 1, "\(config)")
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }
}
