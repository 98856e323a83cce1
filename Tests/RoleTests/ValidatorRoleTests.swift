import Checkpoints
import Config
import Foundation
import Messaging
import Model
import RL
import Runtime
import Signing
import Store
import Testing
@testable import Validator
import Wire

/// A validator alone, in process, against the real brokers: honest groups from a real policy pass on to the learner's
/// queue, forged ones are dead-lettered with the failing check, and a worker's failures put it on probation, then ban it.
@Suite("Validator in process", .serialized)
struct ValidatorRoleTests {
    static let config = GPTConfig(contextLength: 32, layers: 1, heads: 2, channels: 16)

    /// The run as the learner publishes it, validating `fraction` of the groups; probation after 1 failure, a ban after 2.
    func publishRun(_ harness: RoleHarness, fraction: Double) async throws {
        let toml = "[run]\nid = \"\(harness.run)\"\n[validation]\nenabled = true\nfraction = \(fraction)\nprobation_failures = 1\nban_failures = 2\n"
        let settings = try Settings.fromTOML(toml, specs: RunConfig.settings, source: "test")
        try await RunState(config: settings.toml(keys: RunConfig.settings.map(\.key))).write(to: harness.fabric.redis, names: harness.names)
    }

    /// A group as a scorer passes it on: `count` completions the policy really sampled for the task's prompt and seed.
    func group(_ model: GPT, key: [UInt8], task id: String, seed: UInt64, harness: RoleHarness) -> ScoredGroupMessage {
        let prompt = PromptFormat.bytes.promptTokens("12+7=")
        let sampling = SamplingSettings.with {
            $0.temperature = 1
            $0.topP = 1
            $0.maxNewTokens = 6
            $0.seed = seed
        }
        let options = SamplingOptions(temperature: 1, topP: 1, topK: 0, maxNewTokens: 6, seed: seed)
        let samples = model.sample(prompt: prompt, count: 2, options: options)
        var message = ScoredGroupMessage()
        message.envelope = harness.fabric.envelope()
        message.task = RolloutTask.with {
            $0.taskID = id
            $0.prompt = "12+7="
            $0.groupSize = 2
            $0.sampling = sampling
        }
        message.policyVersion = 0
        message.promptTokens = prompt
        message.workerID = "test-worker"
        message.workerKey = Data(key)
        message.rolloutMessageID = "group-\(id)"
        message.completions = samples.map { sample in
            ScoredCompletion.with {
                $0.completion = Completion.with {
                    $0.tokens = sample.tokens
                    $0.logprobs = sample.logprobs
                    $0.finishedWithEos = sample.finishedWithEOS
                    $0.proof = Data(sample.proof)
                }
                $0.reward = 1
            }
        }
        return message
    }

    /// The worker's edit that inflates an importance ratio: one claimed log-prob raised by 0.05.
    func forged(_ honest: ScoredGroupMessage, harness: RoleHarness) -> ScoredGroupMessage {
        var forged = honest
        forged.envelope = harness.fabric.envelope()
        forged.rolloutMessageID += "-forged"
        forged.completions[0].completion.logprobs[0] += 0.05
        return forged
    }

    func verdicts(_ harness: RoleHarness) async throws -> [[String: String]] {
        try await harness.fabric.redis.xrange(harness.names.verdictsLogKey).map { $0.fields.mapValues { String(decoding: $0, as: UTF8.self) } }
    }

    func deadLetterReasons(_ harness: RoleHarness, count: Int) async throws -> [String] {
        var reasons: [String] = []
        for try await letter in harness.fabric.amqp.consume(queue: harness.names.deadLettersQueue, prefetch: count) {
            reasons.append(letter.headers["x-tributary-reason"] ?? "")
            try await letter.ack()
            if reasons.count == count { break }
        }
        return reasons
    }

    @Test(.timeLimit(.minutes(3)))
    func honestGroupsPassForgedOnesFailAndRepeatedFailuresBan() async throws {
        let harness = try await RoleHarness.start(Validator.self, name: "validator", specs: SettingsCatalog.validator,
                                                  run: RoleHarness.newRun("validator-role"), arguments: [])
        defer { Task { await harness.cleanUp() } }
        let model = GPT(config: Self.config, seed: 7)
        let store = CheckpointStore(names: harness.names, redis: harness.fabric.redis)
        _ = try await store.write(version: 0, safetensors: model.safetensorsBytes(), shardBytes: 1 << 16)
        try await store.setLatest(0)
        try await publishRun(harness, fraction: 1)
        let cheat = Array(try SigningKey.generate().publicKey.bytes), cheatHex = Hex.encode(cheat)
        let registry = WorkerRegistry(names: harness.names, redis: harness.fabric.redis)
        let publish = { (message: ScoredGroupMessage) in
            try await harness.fabric.publish(message, exchange: Names.scoredExchange, routingKey: harness.run)
        }

        // p = 1: an honest group is checked and passed on unchanged
        let honest = group(model, key: cheat, task: "t-1", seed: 11, harness: harness)
        try await publish(honest)
        try await harness.waitFor("the honest group passed on") { try await harness.messages(in: harness.names.validatedQueue) == 1 }
        try await harness.waitFor("its verdict") { try await verdicts(harness).count == 1 }
        let firstVerdict = try await verdicts(harness).last
        #expect(firstVerdict?["verdict"] == "passed", "\(firstVerdict ?? [:])")

        // a raised log-prob: dead-lettered, naming the check and the error; the key goes on probation
        try await publish(forged(honest, harness: harness))
        let first = try await deadLetterReasons(harness, count: 1)
        #expect(first[0].contains("validation failed") && first[0].contains("logprob"), "\(first)")
        #expect(try await harness.messages(in: harness.names.validatedQueue) == 1)

        // p = 0 (live): another key's group is not checked and goes on; the key on probation is still checked
        try await publishRun(harness, fraction: 0)
        let other = group(model, key: Array(try SigningKey.generate().publicKey.bytes), task: "t-2", seed: 12, harness: harness)
        try await publish(other)
        try await harness.waitFor("the other key's group passed on unchecked") { try await harness.messages(in: harness.names.validatedQueue) == 2 }
        try await harness.waitFor("its verdict") { try await verdicts(harness).count == 3 }
        #expect(try await verdicts(harness).last?["verdict"] == "unsampled")
        try await publish(group(model, key: cheat, task: "t-3", seed: 13, harness: harness))
        try await harness.waitFor("the probation key's group checked") { try await harness.messages(in: harness.names.validatedQueue) == 3 }
        try await harness.waitFor("its verdict") { try await verdicts(harness).count == 4 }
        #expect(try await verdicts(harness).last?["verdict"] == "passed", "a key on probation is checked whatever p is")
        let onProbation = try #require(try await registry.summaries(probationFailures: 1).first { $0.key == cheatHex })
        #expect(onProbation.onProbation && onProbation.counts["validation_passed"] == 2 && onProbation.counts["validation_failed"] == 1,
                "\(onProbation.counts)")

        // say step 3 already trained one of its groups (p < 1 lets some through): the ban must name that step
        _ = try await harness.fabric.redis.xadd(harness.names.scoredLogKey, fields: ["key": cheatHex, "group": "g-trained"])
        _ = try await harness.fabric.redis.xadd(harness.names.batchesLogKey, fields: ["step": "3", "groups": "g-other,g-trained"])
        _ = try await harness.fabric.redis.xadd(harness.names.batchesLogKey, fields: ["step": "4", "groups": "g-other"])
        // a second failure bans the key, in Redis at once and in the run's events
        try await publish(forged(group(model, key: cheat, task: "t-4", seed: 14, harness: harness), harness: harness))
        _ = try await deadLetterReasons(harness, count: 1)
        let readEvents = { try await harness.fabric.redis.xrange(harness.names.eventsLogKey).map { $0.fields.mapValues { String(decoding: $0, as: UTF8.self) } } }
        try await harness.waitFor("the ban in the run's events") { try await readEvents().contains { $0["event"] == "ban" } }
        #expect(try await registry.banReason(of: cheatHex) != nil)
        let events = try await readEvents()
        #expect(events.contains { $0["event"] == "probation" && $0["key"] == cheatHex }, "\(events)")
        #expect(events.contains { $0["event"] == "ban" && $0["key"] == cheatHex && ($0["reason"] ?? "").contains("failed validation 2 times") }, "\(events)")
        #expect(events.contains { $0["event"] == "ban" && $0["steps_that_used_its_groups"] == "3" }, "the ban reports the step that trained its group: \(events)")
        #expect(try await harness.fabric.counters()["banned_after_use"] == 1)

        // the banned key's next group, honest or not, is refused without a check
        try await publish(group(model, key: cheat, task: "t-5", seed: 15, harness: harness))
        let banned = try await deadLetterReasons(harness, count: 1)
        #expect(banned[0].contains("banned"), "\(banned)")
        try await harness.waitFor("its verdict") { try await verdicts(harness).count == 6 }
        #expect(try await verdicts(harness).last?["verdict"] == "refused_banned")
        #expect(try await harness.messages(in: harness.names.validatedQueue) == 3)
    }
}
