import Checkpoints
import Config
import Foundation
import Messaging
import Model
@testable import Reward
import RL
import Runtime
import Store
import Testing
import Wire

/// A reward scorer alone, in process: it shapes rewards and normalises advantages as the run file says.
@Suite("Reward scorer in process", .serialized)
struct RewardRoleTests {
    @Test(.timeLimit(.minutes(2)))
    func rewardShapingAndMeanOnlyAdvantagesComeFromTheRunFile() async throws {
        let harness = try await RoleHarness.start(RewardScorer.self, name: "reward", specs: SettingsCatalog.reward, run: RoleHarness.newRun("reward-role"),
                                                  arguments: [])
        defer { Task { await harness.cleanUp() } }
        // The run as the learner would publish it: length control at 4 tokens, 0.1 per token, advantages r - mean.
        let toml = "[run]\nid = \"\(harness.run)\"\n[reward]\ntarget_lengths = \"4\"\nlength_penalty_per_token = 0.1\nmean_only = true\n"
        let config = try RunConfig(Settings.fromTOML(toml, specs: RunConfig.settings, source: "test"))
        let settings = try Settings.fromTOML(toml, specs: RunConfig.settings, source: "test")
        try await RunState(config: settings.toml(keys: RunConfig.settings.map(\.key)),
                           other: RunFormat.stateFields(config: config, tokenizerJSON: nil, eos: ByteTokenizer.eos, vocabSize: ByteTokenizer.vocabSize))
            .write(to: harness.fabric.redis, names: harness.names)
        try await CheckpointStore(names: harness.names, redis: harness.fabric.redis).setLatest(0)

        let format = PromptFormat.bytes
        let issued = RolloutTask.with {
            $0.taskID = "t-1"
            $0.prompt = "12+7="
            $0.answer = "19"
            $0.groupSize = 2
            $0.metadata = [RunConfig.targetLengthMetadataKey: "4"]
        }
        try await TaskLedger(names: harness.names, redis: harness.fabric.redis).record([issued])
        let worker = try await TestWorker.join(harness)
        var group = RolloutGroup()
        group.envelope = harness.fabric.envelope()
        // what a worker got (no answer, no metadata), with a forged answer that would make "1" right: never read
        group.task = TaskLedger.forWorkers(issued)
        group.task.answer = "1"
        group.promptTokens = format.promptTokens("12+7=")
        group.workerID = "test"
        // "19" + eos is right and 3 tokens long (1 from the target); "1" + eos is wrong and 2 long (2 from it)
        group.completions = ["19", "1"].map { text in
            let tokens = format.completionTokens(text)
            return Completion.with {
                $0.tokens = tokens
                $0.logprobs = tokens.map { _ in -1 }
            }
        }
        try await harness.fabric.publish(try worker.signed(group, harness), exchange: Names.rolloutsExchange, routingKey: harness.run)

        let stream = harness.fabric.amqp.consume(queue: harness.names.scoredQueue, prefetch: 1)
        var iterator = stream.makeAsyncIterator()
        let delivery = try #require(try await iterator.next())
        let scored = try ScoredGroupMessage.decode(delivery.body, deliveredID: delivery.messageID)
        try await delivery.ack()
        let rewards = scored.completions.map(\.reward)
        #expect(abs(rewards[0] - 0.9) < 1e-9 && abs(rewards[1] - (-0.2)) < 1e-9, "\(rewards)")
        // mean only: r - mean, not divided by the standard deviation
        #expect(abs(scored.completions[0].advantage - 0.55) < 1e-9 && abs(scored.completions[1].advantage + 0.55) < 1e-9)
        #expect(scored.task == issued, "the learner gets the task as issued")
        #expect(scored.workerKey == Data(worker.identity.publicKey.bytes), "the learner gets the key the scorer verified")

        // A group for a task the run never issued, and one that swapped the prompt: refused by name, scored never.
        var unknown = group
        unknown.envelope = harness.fabric.envelope()
        unknown.task.taskID = "t-never"
        var swapped = group
        swapped.envelope = harness.fabric.envelope()
        swapped.task.prompt = "1+1="
        swapped.promptTokens = format.promptTokens("1+1=")
        for forged in [unknown, swapped] { try await harness.fabric.publish(try worker.signed(forged, harness), exchange: Names.rolloutsExchange, routingKey: harness.run) }
        try await harness.waitFor("both dead-lettered") { try await harness.messages(in: harness.names.deadLettersQueue) == 2 }
        let dead = harness.fabric.amqp.consume(queue: harness.names.deadLettersQueue, prefetch: 2)
        var reasons: [String] = []
        for try await letter in dead {
            if let reason = letter.headers["x-tributary-reason"] { reasons.append(reason) }
            try await letter.ack()
            if reasons.count == 2 { break }
        }
        #expect(reasons.contains { $0.contains("task.task_id") && $0.contains("t-never") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("task.prompt") }, "\(reasons)")
        #expect(try await harness.messages(in: harness.names.scoredQueue) == 0)
        // each refusal counted against the key that signed it, with its reason
        let summary = try #require(try await WorkerRegistry(names: harness.names, redis: harness.fabric.redis).summaries().first { $0.key == worker.key })
        #expect(summary.counts["accepted"] == 1 && summary.counts["refused"] == 2, "\(summary.counts)")
        #expect(summary.counts["refused.task.task_id"] == 1 && summary.counts["refused.task.prompt"] == 1, "\(summary.counts)")

        // Once the learner has closed the task, a late copy (a redelivery after a worker died) is acked and counted, not scored.
        try await TaskLedger(names: harness.names, redis: harness.fabric.redis).close([issued])
        try await harness.fabric.publish(try worker.signed(group, harness), exchange: Names.rolloutsExchange, routingKey: harness.run)
        try await harness.waitFor("the late group counted") { try await harness.fabric.counters()["late_groups"] == 1 }
        #expect(try await harness.messages(in: harness.names.scoredQueue) == 0)
        #expect(try await harness.messages(in: harness.names.deadLettersQueue) == 0)
        // a late copy with another prompt is a forgery, not a late copy: the closed mark keeps the prompt's hash
        try await harness.fabric.publish(try worker.signed(swapped, harness), exchange: Names.rolloutsExchange, routingKey: harness.run)
        // counted, not read from the queue: the test's earlier dead-letter consumer may still be winding down
        try await harness.waitFor("the swapped late group dead-lettered") { try await harness.fabric.counters()["dead_lettered"] == 3 }
        #expect(try await harness.fabric.counters()["late_groups"] == 1)
        await harness.host.shutdown()
        #expect(try await harness.exit() == nil)
    }

    @Test(.timeLimit(.minutes(2)))
    func groupsAreBelievedOnlyWhenSignedByARegisteredUnbannedKeyThatLoadedTheClaimedVersion() async throws {
        let harness = try await RoleHarness.start(RewardScorer.self, name: "reward", specs: SettingsCatalog.reward, run: RoleHarness.newRun("reward-keys"),
                                                  arguments: [])
        defer { Task { await harness.cleanUp() } }
        try await publishDefaultRun(harness, latest: 3)
        let issued = RolloutTask.with { $0.taskID = "t-1"; $0.prompt = "1+1="; $0.answer = "2"; $0.groupSize = 2 }
        try await TaskLedger(names: harness.names, redis: harness.fabric.redis).record([issued])
        var group = RolloutGroup()
        group.task = TaskLedger.forWorkers(issued)
        group.policyVersion = 3
        group.promptTokens = PromptFormat.bytes.promptTokens("1+1=")
        group.workerID = "test"
        group.completions = ["2", "3"].map { text in
            let tokens = PromptFormat.bytes.completionTokens(text)
            return Completion.with { $0.tokens = tokens; $0.logprobs = tokens.map { _ in -0.5 } }
        }
        let honest = try await TestWorker.join(harness, loaded: [2, 3])
        let other = try await TestWorker.join(harness, loaded: [3])
        let stranger = try await TestWorker.join(harness, loaded: [3], register: false)
        let banned = try await TestWorker.join(harness, loaded: [3])
        let registry = WorkerRegistry(names: harness.names, redis: harness.fabric.redis)
        try await registry.ban(banned.key, reason: "test ban")

        var tampered = try honest.signed(group, harness)
        tampered.completions[1].tokens = tampered.completions[0].tokens  // make the wrong answer right after signing
        tampered.completions[1].logprobs = tampered.completions[0].logprobs
        var impersonated = try honest.signed(group, harness)
        impersonated.workerKey = Data(other.identity.publicKey.bytes)  // another worker's id on this worker's group
        var unsigned = try honest.signed(group, harness)
        unsigned.signature = Data()
        var unloaded = group
        unloaded.policyVersion = 1  // a version that exists but this worker never loaded
        var maxVersion = group
        maxVersion.policyVersion = .max
        let attacks: [(String, RolloutGroup)] = [
            ("does not verify", tampered), ("does not verify", impersonated), ("signature is missing", unsigned),
            ("not a registered worker", try stranger.signed(group, harness)), ("is banned (test ban)", try banned.signed(group, harness)),
            ("not a version worker", try honest.signed(unloaded, harness)), ("is from the future", try honest.signed(maxVersion, harness)),
        ]
        for (_, attack) in attacks { try await harness.fabric.publish(attack, exchange: Names.rolloutsExchange, routingKey: harness.run) }
        try await harness.waitFor("every attack dead-lettered") { try await harness.messages(in: harness.names.deadLettersQueue) == attacks.count }
        var reasons: [String: String] = [:]
        for try await letter in harness.fabric.amqp.consume(queue: harness.names.deadLettersQueue, prefetch: 16) {
            reasons[letter.messageID ?? ""] = letter.headers["x-tributary-reason"] ?? ""
            try await letter.ack()
            if reasons.count == attacks.count { break }
        }
        for (expected, attack) in attacks {
            #expect(reasons[attack.messageID]?.contains(expected) == true, "\(expected): \(reasons[attack.messageID] ?? "not dead-lettered")")
        }
        // the honest group still scores; nothing forged reached the scored queue
        try await harness.fabric.publish(try honest.signed(group, harness), exchange: Names.rolloutsExchange, routingKey: harness.run)
        try await harness.waitFor("the honest group scored and counted") {
            let accepted = try await registry.summaries().first { $0.key == honest.key }?.counts["accepted"]
            return try await harness.messages(in: harness.names.scoredQueue) == 1 && accepted == 1
        }
        let counters = try await harness.fabric.counters()
        #expect(counters["bad_signature_groups"] == 3 && counters["unknown_worker_groups"] == 1, "\(counters)")
        // refusals count against the key that signed them; a forged signature counts against nobody
        let summaries = Dictionary(uniqueKeysWithValues: try await registry.summaries().map { ($0.key, $0) })
        #expect(summaries[honest.key]?.counts == ["accepted": 1, "refused": 2, "refused.policy_version": 2], "\(summaries[honest.key]?.counts ?? [:])")
        #expect(summaries[other.key]?.counts["refused"] == nil, "an impersonated worker is not blamed")
        #expect(summaries[banned.key]?.counts["refused.banned"] == 1 && summaries[banned.key]?.banned == "test ban")
        await harness.host.shutdown()
        #expect(try await harness.exit() == nil)
    }

    @Test(.timeLimit(.minutes(2)))
    func aMessageThatKeepsFailingIsDeadLetteredAndTheScorerLivesOn() async throws {
        let harness = try await RoleHarness.start(RewardScorer.self, name: "reward", specs: SettingsCatalog.reward, run: RoleHarness.newRun("reward-poison"),
                                                  arguments: ["--service.max_message_failures", "2"])
        defer { Task { await harness.cleanUp() } }
        try await publishDefaultRun(harness, latest: 0)
        // a ledger entry that does not parse: handling the group throws (not the group's content, but it fails every time)
        _ = try await harness.fabric.redis.command(["HSET", harness.names.ledgerKey, "t-bad", [UInt8](repeating: 0xFF, count: 16)])
        var group = RolloutGroup()
        group.envelope = harness.fabric.envelope()
        group.task = RolloutTask.with { $0.taskID = "t-bad"; $0.prompt = "1+1="; $0.groupSize = 1 }
        group.promptTokens = PromptFormat.bytes.promptTokens("1+1=")
        group.workerID = "test"
        group.completions = [Completion.with { $0.tokens = [50, 257]; $0.logprobs = [-1, -1] }]
        try await harness.fabric.publish(try await TestWorker.join(harness).signed(group, harness), exchange: Names.rolloutsExchange, routingKey: harness.run)
        try await harness.waitFor("the group dead-lettered") { try await harness.messages(in: harness.names.deadLettersQueue) == 1 }
        let dead = harness.fabric.amqp.consume(queue: harness.names.deadLettersQueue, prefetch: 1)
        var iterator = dead.makeAsyncIterator()
        let letter = try #require(try await iterator.next())
        #expect(letter.headers["x-tributary-reason"]?.contains("failed 2 times") == true, "\(letter.headers)")
        try await letter.ack()
        // the scorer never stopped: it still consumes and exits cleanly when drained
        #expect(harness.host.context.status.current.state != "stopped")
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }

    /// The run as its learner would publish it with every default (byte tokenizer, arithmetic), and `latest` announced.
    private func publishDefaultRun(_ harness: RoleHarness, latest: UInt64) async throws {
        let toml = "[run]\nid = \"\(harness.run)\"\n"
        let config = try RunConfig(Settings.fromTOML(toml, specs: RunConfig.settings, source: "test"))
        try await RunState(config: toml,
                           other: RunFormat.stateFields(config: config, tokenizerJSON: nil, eos: ByteTokenizer.eos, vocabSize: ByteTokenizer.vocabSize))
            .write(to: harness.fabric.redis, names: harness.names)
        try await CheckpointStore(names: harness.names, redis: harness.fabric.redis).setLatest(latest)
    }
}
