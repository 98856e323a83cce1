import Config
import Foundation
@testable import Learner
import Messaging
import RL
import Runtime
import Store
import TestSupport
import Testing
import Wire

/// The learner alone, in process, fed scored groups by the test: what it takes, drops, counts and dead-letters.
@Suite("Learner in process", .serialized)
struct LearnerRoleTests {
    static let arguments = ["--learner.autostart", "--run.steps", "3", "--run.groups_per_step", "2", "--run.async_level", "1",
                            "--run.eval_tasks", "4", "--inference.group_size", "2", "--inference.max_new_tokens", "4",
                            "--model.layers", "1", "--model.channels", "32", "--model.heads", "2", "--model.context", "32"]

    /// A scored group of two completions whose advantages are `advantages`.
    func group(_ harness: RoleHarness, id: String, version: UInt64, advantages: [Double] = [1, -1], tokens: [Int32] = [50, 51, 258],
               key: UInt8 = 7) -> ScoredGroupMessage {
        var message = ScoredGroupMessage()
        message.envelope = harness.fabric.envelope()
        message.rolloutMessageID = "group-\(id)-\(UUID().uuidString.prefix(4))"
        // the task as the scorer copies it from the ledger: the learner trains on its own encoding of this prompt
        message.task = RolloutTask.with {
            $0.envelope.epoch = 1  // a run id's first epoch
            $0.taskID = id
            $0.prompt = "12+7="
        }
        message.policyVersion = version
        message.promptTokens = PromptFormat.bytes.promptTokens("12+7=")
        message.workerID = "test"
        message.workerKey = Data(repeating: key, count: 32)
        message.completions = advantages.map { advantage in
            ScoredCompletion.with {
                $0.completion = Completion.with {
                    $0.tokens = tokens
                    $0.logprobs = tokens.map { _ in -1.5 }
                }
                $0.advantage = advantage
                $0.reward = advantage > 0 ? 1 : 0
                $0.correct = advantage > 0
            }
        }
        return message
    }

    /// Each group's task is issued first (open in the ledger, unless it already closed), as the learner would have.
    func publish(_ harness: RoleHarness, _ messages: [ScoredGroupMessage]) async throws {
        for message in messages {
            _ = try await harness.fabric.redis.command(["HSETNX", harness.names.ledgerKey, message.task.taskID, try message.task.encoded()])
            try await harness.fabric.publish(message, exchange: Names.scoredExchange, routingKey: harness.run)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func takesFreshGroupsAndDropsDuplicateStaleZeroSignalAndInvalidOnes() async throws {
        let run = RoleHarness.newRun("learner-role")
        let harness = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run, arguments: Self.arguments)
        defer { Task { await harness.cleanUp() } }
        try await harness.waitFor("the run to start") { try await RunState.read(harness.fabric.redis, names: harness.names).status == .running }

        // step 0 → 1: one duplicate (another group for task a, under its own message id), one zero-signal, one out of the vocabulary, one from the future, two fresh
        try await publish(harness, [
            group(harness, id: "a", version: 0), group(harness, id: "a", version: 0), group(harness, id: "z", version: 0, advantages: [0, 0]),
            group(harness, id: "oov", version: 0, tokens: [50, 9999]), group(harness, id: "future", version: 5), group(harness, id: "b", version: 0),
        ])
        try await harness.waitFor("step 1") { try await RunMetrics.read(harness.fabric.redis, names: harness.names).count == 1 }
        // step 1 → 2 from version 1; then at step 2 (async level 1) a version-0 group is stale
        try await publish(harness, [group(harness, id: "c", version: 1), group(harness, id: "d", version: 1),
                                    group(harness, id: "old", version: 0), group(harness, id: "a", version: 0),
                                    group(harness, id: "e", version: 2), group(harness, id: "f", version: 1)])
        try await harness.waitFor("the run to finish") { try await RunState.read(harness.fabric.redis, names: harness.names).status == .finished }

        let steps = try await RunMetrics.read(harness.fabric.redis, names: harness.names)
        #expect(steps.map(\.step) == [1, 2, 3])
        #expect(steps[0].groups == 2 && steps[0].duplicates == 1 && steps[0].zeroSignal == 1 && steps[0].staleDropped == 0)
        #expect(steps[0].staleness == ["0": 2])
        #expect(steps[2].staleDropped == 1 && steps[2].duplicates == 1, "\(steps[2])")
        #expect(steps[2].staleness == ["0": 1, "1": 1], "\(steps[2])")
        // the ledger closed exactly the trained tasks as trained, and the stale one as replaced
        let ledger = TaskLedger(names: harness.names, redis: harness.fabric.redis)
        for id in ["a", "b", "c", "d", "e", "f"] {
            guard case .closed(.trained, _) = try await ledger.lookup(id) else { Issue.record("task \(id) is not closed as trained"); continue }
        }
        guard case .closed(.replaced, _) = try await ledger.lookup("old") else { Issue.record("stale task 'old' is not closed as replaced"); return }
        // the two invalid groups are parked with reasons naming the field
        try await harness.waitFor("the dead letters") { try await harness.messages(in: harness.names.deadLettersQueue) == 2 }
        let counters = try await harness.fabric.counters()
        #expect(counters["dead_lettered"] == 2 && counters["duplicate_groups"] == 2 && counters["stale_groups_dropped"] == 1)
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }

    @Test(.timeLimit(.minutes(3)))
    func aBanDropsTheKeysGroupsAlreadyHeldAndLaterOnes() async throws {
        let run = RoleHarness.newRun("learner-ban")
        let harness = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run, arguments: Self.arguments)
        defer { Task { await harness.cleanUp() } }
        try await harness.waitFor("the run to start") { try await RunState.read(harness.fabric.redis, names: harness.names).status == .running }
        let banned = Data(repeating: 9, count: 32)
        let bannedHex = String(repeating: "09", count: 32)
        // held: the batch (2 per step) holds this group when the ban arrives
        let held = group(harness, id: "held", version: 0, key: 9)
        try await publish(harness, [held])
        try await harness.waitFor("the group taken") { try await harness.messages(in: harness.names.scoredQueue) == 0 }
        try await harness.sendControl(.banWorker(Tributary_V1_BanWorker.with { $0.workerKey = banned; $0.reason = "test" }),
                                      to: Names.runRoutingKey(role: "learner", run: run))
        let registry = WorkerRegistry(names: harness.names, redis: harness.fabric.redis)
        try await harness.waitFor("the ban recorded") { try await registry.banReason(of: bannedHex) == "test" }
        let later = group(harness, id: "later", version: 0, key: 9)
        try await publish(harness, [group(harness, id: "b1", version: 0), later, group(harness, id: "b2", version: 0)])
        try await harness.waitFor("step 1") { try await RunMetrics.read(harness.fabric.redis, names: harness.names).count == 1 }
        let batch = try #require(try await harness.fabric.redis.xrange(harness.names.batchesLogKey).first)
        #expect(String(decoding: batch.fields["tasks"] ?? [], as: UTF8.self) == "b1,b2")
        try await harness.waitFor("both banned groups dead-lettered") { try await harness.messages(in: harness.names.deadLettersQueue) == 2 }
        let stats = try #require(try await registry.summaries().first { $0.key == bannedHex })
        #expect(stats.counts["refused.banned"] == 2 && stats.counts["trained"] == nil, "\(stats.counts)")
        #expect(try await registry.summaries().first { $0.key == String(repeating: "07", count: 32) }?.counts["trained"] == 2)
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }

    @Test(.timeLimit(.minutes(3)))
    func tasksNotFilledByTheirDeadlineAreReissuedAndTheirLateGroupsFeedNothing() async throws {
        let run = RoleHarness.newRun("learner-deadline")
        let harness = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run,
                                                  arguments: Self.arguments + ["--learner.task_deadline_seconds", "1"])
        defer { Task { await harness.cleanUp() } }
        try await harness.waitFor("the run to start") { try await RunState.read(harness.fabric.redis, names: harness.names).status == .running }
        let ledger = TaskLedger(names: harness.names, redis: harness.fabric.redis)
        let first = try await ledger.audit(nowMs: .max)
        #expect(first.open == 4, "groups_per_step 2 x (async level 1 + 1) tasks issued: \(first)")
        // nobody serves them (every task is lost, as if purged): each is reissued under a new id, with a new seed
        try await harness.waitFor("every first task expired") { try await ledger.audit(nowMs: 0).expired >= 4 }
        let issued = try await harness.fabric.redis.hgetall(harness.names.ledgerKey)
        let reissued = try issued.filter { !$0.value.starts(with: Array("closed:".utf8)) }.map { try RolloutTask.fromStored($0.value) }
        #expect(reissued.count == 4 && reissued.allSatisfy { $0.taskID.contains(".r") }, "\(reissued.map(\.taskID))")
        let expiredID = try #require(issued.first { $0.value.starts(with: Array("closed:expired:".utf8)) }?.key)
        try await harness.waitFor("the reissues counted") { try await harness.fabric.counters()["tasks_reissued"] ?? 0 >= 4 }
        // a late group for an expired task is acknowledged, counted, and trains nothing
        var late = group(harness, id: expiredID, version: 0)
        late.task.taskID = expiredID
        try await harness.fabric.publish(late, exchange: Names.scoredExchange, routingKey: harness.run)
        try await harness.waitFor("the late group counted") { try await harness.fabric.counters()["late_groups"] == 1 }
        #expect(try await harness.messages(in: harness.names.scoredQueue) == 0)
        #expect(try await RunMetrics.read(harness.fabric.redis, names: harness.names).isEmpty)
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }

    /// The run file StartRun carries for `run` with the test's knobs.
    static func runFile(_ run: String, steps: Int = 3) -> String {
        """
        [run]
        id = "\(run)"
        steps = \(steps)
        groups_per_step = 2
        async_level = 1
        eval_tasks = 4
        [inference]
        group_size = 2
        max_new_tokens = 4
        [model]
        layers = 1
        channels = 32
        heads = 2
        context = 32
        """
    }

    @Test(.timeLimit(.minutes(3)))
    func aSecondLearnerStandsByAndAReusedRunIDStartsANewEpochOnlyWhenAskedTo() async throws {
        let run = RoleHarness.newRun("learner-epoch")
        let first = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run,
                                                arguments: Self.arguments + ["--service.instance", "learner-first"])
        defer { Task { await first.cleanUp() } }
        try await first.waitFor("the run to start") { try await RunState.read(first.fabric.redis, names: first.names).status == .running }
        // a second learner of the same run waits as a standby: it never takes the lease the first one holds
        let second = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run,
                                                 arguments: Self.arguments + ["--service.instance", "learner-second"])
        try await first.waitFor("the standby's heartbeat") {
            guard let beat = try await first.fabric.redis.get(first.names.heartbeatKey(role: "learner", instance: "learner-second")) else { return false }
            return try JSONDecoder().decode(StatusBoard.Snapshot.self, from: Data(beat)).state == "standby"
        }
        #expect(try await LearnerLease.holder(names: first.names, redis: first.fabric.redis)?.instance == "learner-first")

        // the first one stops the run and exits (releasing the lease): the standby takes over, finds the run stopped
        // and, though autostart is on, does not start it over by guessing
        try await first.sendControl(.stop(Tributary_V1_StopRun()), to: Names.runRoutingKey(role: "learner", run: run))
        try await first.waitFor("the run stopped") { try await RunState.read(first.fabric.redis, names: first.names).status == .stopped }
        await first.host.drain()
        #expect(try await first.exit() == nil)
        try await first.waitFor("the standby to hold the lease") {
            try await LearnerLease.holder(names: first.names, redis: first.fabric.redis)?.instance == "learner-second"
        }
        let control = Names.runRoutingKey(role: "learner", run: run)
        try await second.sendControl(.startRun(Tributary_V1_StartRun.with { $0.configToml = Self.runFile(run, steps: 7) }), to: control)
        // refused (neither fresh nor resume): the run that starts is the fresh one sent next, with its 3 steps
        try await second.sendControl(.startRun(Tributary_V1_StartRun.with { $0.configToml = Self.runFile(run); $0.fresh = true }), to: control)
        try await second.waitFor("epoch 2 running") {
            let state = try await RunState.read(second.fabric.redis, names: second.names)
            return state.other["epoch"] == "2" && state.status == .running
        }
        let state = try await RunState.read(second.fabric.redis, names: second.names)
        #expect(state.other["version_base"] == "1" && state.version == 1, "versions go on above the old epoch's: \(state)")
        let started = try Settings.fromTOML(try #require(state.config), specs: RunConfig.settings, source: "run state")
        #expect(try started.int("run.steps") == 3, "the StartRun without --fresh or --resume (7 steps) was refused")
        let open = try await second.fabric.redis.hgetall(second.names.ledgerKey).keys
        #expect(!open.isEmpty && open.allSatisfy { $0.hasPrefix("\(run)-e2-") }, "\(open.sorted())")
        // a group of the old epoch's task feeds nothing and is counted
        var old = group(second, id: "\(run)-1", version: 0)
        old.task.envelope.epoch = 1
        try await second.fabric.publish(old, exchange: Names.scoredExchange, routingKey: run)
        try await second.waitFor("the old epoch's group counted") { try await second.fabric.counters()["stale_epoch_groups"] == 1 }
        await second.host.drain()
        #expect(try await second.exit() == nil)
    }

    @Test(.timeLimit(.minutes(2)))
    func aLearnerThatFailsWritesFailedWithTheReasonAndWatchExitsOne() async throws {
        let run = RoleHarness.newRun("learner-fail")
        let missing = "/nonexistent/model-\(run)"
        let harness = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: run,
                                                  arguments: Self.arguments + ["--model.path", missing])
        defer { Task { await harness.cleanUp() } }
        let error = try await harness.exit()
        #expect(error != nil)
        let state = try await RunState.read(harness.fabric.redis, names: harness.names)
        #expect(state.status == .failed)
        #expect(state.reason?.contains("model.path") == true && state.reason?.contains(missing) == true, "\(state)")
        // the CLI sees it at its first look (were it not to, it would give up with exit 4 after --timeout)
        let watch = try await Self.runCLI(["watch", "--run.id", run, "--until-finished", "--timeout", "60"])
        #expect(watch.status == 1, "\(watch.output)")
        #expect(watch.output.contains("failed") && watch.output.contains("model.path"))
    }

    @Test(.timeLimit(.minutes(2)), arguments: [
        (["--learner.prefetch", "1"], "learner.prefetch"),
        (["--inference.max_new_tokens", "40"], "inference.max_new_tokens"),
    ])
    func settingsThatLeaveNoPossibleWorkAreRefusedByName(extra: [String], setting: String) async throws {
        let harness = try await RoleHarness.start(LearnerRole.self, name: "learner", specs: SettingsCatalog.learner, run: RoleHarness.newRun("learner-nowork"),
                                                  arguments: Self.arguments + extra)
        defer { Task { await harness.cleanUp() } }
        #expect(try await harness.exit() != nil)
        let state = try await RunState.read(harness.fabric.redis, names: harness.names)
        #expect(state.status == .failed && state.reason?.contains(setting) == true, "\(state)")
    }

    static func runCLI(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runCommandOffPool([binaryDirectory.appendingPathComponent("tributary").path] + arguments)
    }
}
