import Checkpoints
import Config
import Foundation
import Messaging
import Model
@testable import Rollout
import Runtime
import Signing
import Store
import Testing
import Wire

/// A rollout worker alone, in process: `drain` finishes the group in hand, `shutdown` hands the task back.
@Suite("Rollout worker in process", .serialized)
struct RolloutRoleTests {
    /// A policy slow enough to sample that a command arrives mid-generation, as version 0 with the run's format.
    func prepare(_ harness: RoleHarness) async throws {
        let model = GPT(config: GPTConfig(contextLength: 64, layers: 4, heads: 4, channels: 256), seed: 3)
        let store = CheckpointStore(names: harness.names, redis: harness.fabric.redis)
        _ = try await store.write(version: 0, safetensors: model.safetensorsBytes(), shardBytes: 1 << 20)
        try await store.setLatest(0)
        let config = try RunConfig(Settings.fromTOML("[run]\nid = \"\(harness.run)\"\n", specs: RunConfig.settings, source: "test"))
        try await RunState(other: RunFormat.stateFields(config: config, tokenizerJSON: nil, eos: model.eosToken, vocabSize: model.vocabSize))
            .write(to: harness.fabric.redis, names: harness.names)
    }

    func task(_ harness: RoleHarness, id: String) -> RolloutTask {
        var task = RolloutTask()
        task.envelope = harness.fabric.envelope()
        task.taskID = id
        task.prompt = "12+7="
        task.groupSize = 256
        task.sampling = SamplingSettings.with {
            $0.temperature = 1
            $0.topP = 1
            $0.maxNewTokens = 48
            $0.seed = 7
        }
        return task
    }

    func startWorker(_ run: String) async throws -> RoleHarness {
        try await RoleHarness.start(RolloutWorker.self, name: "rollout", specs: SettingsCatalog.rollout, run: run,
                                    arguments: ["--service.instance", "rollout-\(run)"])
    }

    @Test(.timeLimit(.minutes(2)))
    func drainFinishesTheGroupInHandAndTakesNoMore() async throws {
        let harness = try await startWorker(RoleHarness.newRun("rollout-drain"))
        defer { Task { await harness.cleanUp() } }
        try await prepare(harness)
        for id in ["t1", "t2"] { try await harness.fabric.publish(task(harness, id: id), exchange: Names.tasksExchange, routingKey: harness.run) }
        try await harness.waitFor("generation to start") { harness.host.context.status.current.state == "generating" }
        try await harness.sendControl(.drain(Tributary_V1_Drain()), to: "rollout.rollout-\(harness.run)")
        #expect(try await harness.exit() == nil)
        #expect(harness.host.context.stop.mode == .draining)
        // the group in hand was finished and published, its task acknowledged; the other task is still there
        #expect(try await harness.messages(in: harness.names.rolloutsQueue) == 1)
        try await harness.waitFor("the untaken task back in its queue") { try await harness.messages(in: harness.names.tasksQueue) == 1 }
    }

    @Test(.timeLimit(.minutes(2)))
    func shutdownHandsTheTaskInHandBackAtOnce() async throws {
        let harness = try await startWorker(RoleHarness.newRun("rollout-shutdown"))
        defer { Task { await harness.cleanUp() } }
        try await prepare(harness)
        try await harness.fabric.publish(task(harness, id: "t1"), exchange: Names.tasksExchange, routingKey: harness.run)
        try await harness.waitFor("generation to start") { harness.host.context.status.current.state == "generating" }
        try await harness.sendControl(.shutdown(Tributary_V1_Shutdown()), to: "rollout.rollout-\(harness.run)")
        // back in the queue before the worker has even finished the forward it was in
        try await harness.waitFor("the task back in its queue") { try await harness.messages(in: harness.names.tasksQueue) == 1 }
        #expect(try await harness.exit() == nil)
        #expect(harness.host.context.stop.mode == .handingBack)
        #expect(try await harness.messages(in: harness.names.rolloutsQueue) == 0)
    }

    @Test(.timeLimit(.minutes(2)))
    func sigtermStopsAWorkerWaitingForAPolicyAtOnce() async throws {
        // it would wait 600 s for the version; the stop must end that wait (the exit deadline is 60 s)
        let harness = try await RoleHarness.start(RolloutWorker.self, name: "rollout", specs: SettingsCatalog.rollout, run: RoleHarness.newRun("rollout-sigterm"),
                                                  arguments: ["--rollout.version_wait_seconds", "600"])
        defer { Task { await harness.cleanUp() } }
        try await prepare(harness)
        // a task no policy can serve yet: the worker waits (up to rollout.version_wait_seconds, 120 s) for version 5
        var waiting = task(harness, id: "t-future")
        waiting.minPolicyVersion = 5
        try await harness.fabric.publish(waiting, exchange: Names.tasksExchange, routingKey: harness.run)
        try await harness.waitFor("the worker to wait for the policy") { harness.host.context.status.current.state == "waiting for policy" }
        await harness.host.terminate()
        #expect(try await harness.exit(within: 60) == nil)
        try await harness.waitFor("the task back in its queue") { try await harness.messages(in: harness.names.tasksQueue) == 1 }
    }

    @Test(.timeLimit(.minutes(2)))
    func aWorkerWaitingForAVersionServesItsTaskOnceTheVersionIsAnnounced() async throws {
        let harness = try await RoleHarness.start(RolloutWorker.self, name: "rollout", specs: SettingsCatalog.rollout, run: RoleHarness.newRun("rollout-announced"),
                                                  arguments: ["--rollout.version_wait_seconds", "600"])
        defer { Task { await harness.cleanUp() } }
        try await prepare(harness)
        var waiting = task(harness, id: "t-next")
        waiting.minPolicyVersion = 1
        waiting.groupSize = 2
        waiting.sampling.maxNewTokens = 4
        try await harness.fabric.publish(waiting, exchange: Names.tasksExchange, routingKey: harness.run)
        try await harness.waitFor("the worker to wait for version 1") { harness.host.context.status.current.state == "waiting for policy" }
        // what the broadcaster does: version 1 written, `latest` moved, then announced with its hash
        let store = CheckpointStore(names: harness.names, redis: harness.fabric.redis)
        let model = GPT(config: GPTConfig(contextLength: 64, layers: 1, heads: 2, channels: 32), seed: 9)
        let manifest = try await store.write(version: 1, safetensors: model.safetensorsBytes(), shardBytes: 1 << 20)
        try await store.setLatest(1)
        var announcement = CheckpointAnnouncement()
        announcement.envelope = harness.fabric.envelope()
        announcement.version = 1
        announcement.sha256 = manifest.sha256
        try await harness.fabric.publish(announcement, exchange: Names.checkpointsExchange, routingKey: "")
        try await harness.waitFor("the group published") { try await harness.messages(in: harness.names.rolloutsQueue) == 1 }
        #expect(harness.host.context.status.current.policyVersion == 1)
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func anAnnouncementWakesEveryWaiterItSatisfiesAndNoOther() async throws {
        let announced = AnnouncedVersion()
        // deadlines far away: only the announcement can end these waits before the time limit
        let far = ContinuousClock.now + .seconds(600)
        let forThree = Task { await announced.wait(atLeast: 3, until: far) }
        let forFive = Task { await announced.wait(atLeast: 5, until: far) }
        announced.announce(3)
        #expect(await forThree.value)
        #expect(announced.current == 3)
        announced.announce(2)  // older: changes nothing
        #expect(announced.current == 3)
        forFive.cancel()  // a cancelled wait (a task handed back) ends at once, unsatisfied
        #expect(await !forFive.value)
        // a version already announced does not wait; a deadline already past ends the wait unsatisfied
        #expect(await announced.wait(atLeast: 1, until: far))
        #expect(await !announced.wait(atLeast: 4, until: ContinuousClock.now))
        let later = Task { await announced.wait(atLeast: 6, until: far) }
        announced.announce(7)
        #expect(await later.value)
    }

    @Test(.timeLimit(.minutes(2)))
    func aWorkerWithThePublicKeyRefusesAnUnsignedCheckpointAndTakesTheSignedOne() async throws {
        let key = try SigningKey.generate()
        let harness = try await RoleHarness.start(RolloutWorker.self, name: "rollout", specs: SettingsCatalog.rollout, run: RoleHarness.newRun("rollout-signed"),
                                                  arguments: ["--rollout.checkpoint_public_key", key.publicKey.hex])
        defer { Task { await harness.cleanUp() } }
        try await prepare(harness)  // version 0, unsigned
        var small = task(harness, id: "t-signed")
        small.groupSize = 2
        small.sampling.maxNewTokens = 4
        try await harness.fabric.publish(small, exchange: Names.tasksExchange, routingKey: harness.run)
        try await harness.waitFor("the unsigned checkpoint refused") { harness.host.context.status.current.state == "refused checkpoint" }
        #expect(try await harness.messages(in: harness.names.rolloutsQueue) == 0)
        // the broadcaster's signed version 0 replaces it: the worker loads it and serves the task
        let model = GPT(config: GPTConfig(contextLength: 64, layers: 1, heads: 2, channels: 32), seed: 4)
        _ = try await CheckpointStore(names: harness.names, redis: harness.fabric.redis, signer: key)
            .write(version: 0, safetensors: model.safetensorsBytes(), shardBytes: 1 << 20)
        try await harness.waitFor("the group published") { try await harness.messages(in: harness.names.rolloutsQueue) == 1 }
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }

    @Test(.timeLimit(.minutes(2)))
    func aCheckpointWhoseHashDiffersFromTheAnnouncedOneIsRefused() async throws {
        let harness = try await startWorker(RoleHarness.newRun("rollout-pinned"))
        defer { Task { await harness.cleanUp() } }
        try await prepare(harness)
        let manifest = try await CheckpointStore(names: harness.names, redis: harness.fabric.redis).manifest(version: 0)
        // a worker of this process's context, driven directly: what the broker announced pins what a relay may serve
        let worker = try RolloutWorker(context: harness.host.context)
        worker.policy.announced.withLock { $0[0] = String(repeating: "0", count: 64) }
        await #expect(throws: CheckpointStoreError.self) { try await worker.load(version: 0, from: worker.store) }
        #expect(worker.policy.version.load(ordering: .relaxed) == -1)
        worker.policy.announced.withLock { $0[0] = manifest.sha256 }
        try await worker.load(version: 0, from: worker.store)
        #expect(worker.policy.version.load(ordering: .relaxed) == 0)
        await harness.host.shutdown()
        #expect(try await harness.exit() == nil)
    }
}
