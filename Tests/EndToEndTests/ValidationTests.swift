import Checkpoints
import Foundation
import Messaging
import Model
import RL
import Runtime
import Signing
import Store
import TestSupport
import Testing
import Wire

/// Verifiable inference through the real executables: a run whose validator checks every group (p = 1), two honest
/// rollout workers and a liar the test plays in process. The liar takes tasks like a worker, samples them with the real
/// policy it loaded, signs them with its registered key, and raises every claimed log-prob by 0.05 (what would inflate
/// its importance ratios). The scorer cannot tell; the validator must.
@Suite("Verifiable inference end to end", .serialized)
struct ValidationTests {
    @Test(.timeLimit(.minutes(6)))
    func aLyingWorkerIsBannedAndNoHonestGroupIsRefused() async throws {
        let cluster = try await Cluster(run: "e2e-validate", overrides: ["--run.steps", String(Cluster.endlessSteps), "--validation.enabled", "true",
                                                                         "--validation.fraction", "1", "--learner.task_deadline_seconds", "5"])
        do {
            try cluster.launch("validator")
            // every version kept: a validator behind a fast run (on a busy machine) would find the claimed version gone
            // and pass the group on unchecked, as the learner drops it as stale anyway; here every group must be checked
            try await cluster.startAll(rollouts: 2, broadcasterExtra: ["--broadcaster.keep_versions", "1000"])
            try await cluster.waitForState("the run to start training", within: 120) { Int($0["step"] ?? "") ?? 0 >= 1 }

            let liar = WorkerIdentity(key: try SigningKey.generate(), file: "(test)")
            let registry = WorkerRegistry(names: cluster.names, redis: cluster.redis)
            try await registry.register(liar.publicKey, instance: "liar")
            let lies = try await lie(cluster, as: liar)
            #expect(try await registry.banReason(of: liar.publicKey.hex) != nil, "the liar was not banned after \(lies.count) groups")
            let stepAtBan = Int(try await cluster.state()["step"] ?? "") ?? 0
            try await cluster.waitForState("two more steps after the ban", within: 240) { Int($0["step"] ?? "") ?? 0 >= stepAtBan + 2 }

            let verdicts = try await cluster.stream(cluster.names.verdictsLogKey)
            let liarKey = liar.publicKey.hex
            // the liar's groups that reached the validator: refused by the check on log-probs, two of them (then the ban)
            let liarVerdicts = verdicts.filter { $0["key"] == liarKey }
            let failed = liarVerdicts.filter { $0["verdict"] == "failed" }
            #expect(failed.count == 2 && failed.allSatisfy { ($0["detail"] ?? "").contains("logprob") }, "\(liarVerdicts)")
            #expect(liarVerdicts.allSatisfy { $0["verdict"] == "failed" || $0["verdict"] == "refused_banned" }, "\(liarVerdicts)")
            // honest workers: every group checked (p = 1), none refused
            let honest = verdicts.filter { $0["key"] != liarKey }
            #expect(!honest.isEmpty && honest.allSatisfy { $0["verdict"] == "passed" }, "\(honest.filter { $0["verdict"] != "passed" })")
            // the learner trained only groups the validator passed, never one of the liar's
            let passed = Set(honest.compactMap { $0["group"] })
            let trained = try await cluster.stream(cluster.names.batchesLogKey).flatMap { ($0["groups"] ?? "").split(separator: ",").map(String.init) }
            #expect(!trained.isEmpty && trained.allSatisfy(passed.contains), "trained groups without a pass: \(trained.filter { !passed.contains($0) })")
            #expect(lies.allSatisfy { !trained.contains($0) })
            // the ban is in the run's events with its reason; the CLI shows the reputation
            let events = try await cluster.stream(cluster.names.eventsLogKey)
            #expect(events.contains { $0["event"] == "ban" && $0["key"] == liarKey && ($0["reason"] ?? "").contains("failed validation") }, "\(events)")
            let (status, output) = try runCommand([binaryDirectory.path + "/tributary", "workers", "list", "--run.id", cluster.run, "--json"])
            #expect(status == 0, "\(output)")
            let listed = (try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])?["workers"] as? [[String: Any]] ?? []
            let entry = listed.first { $0["key"] as? String == liarKey }
            #expect((entry?["reputation"] as? [String: Any])?["failed"] as? Int == 2 && entry?["banned"] != nil, "\(entry ?? [:])")

            let codes = try await cluster.terminateAll()
            for (role, code) in codes { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }

    /// Serves tasks as a worker would, with every claimed log-prob raised by 0.05, one at a time, each until the validator
    /// judged it (or the scorer found its task already closed: a task can wait in the queue past its deadline on a busy
    /// machine), until the key is banned or 20 groups were sent; returns the groups' ids.
    func lie(_ cluster: Cluster, as identity: WorkerIdentity) async throws -> [String] {
        let amqp = AMQPClient(endpoint: try AMQPEndpoint.fromEnvironment(), name: "e2e-liar")
        try await amqp.connect()
        defer { Task { await amqp.close() } }
        let store = CheckpointStore(names: cluster.names, redis: cluster.redis)
        let registry = WorkerRegistry(names: cluster.names, redis: cluster.redis)
        var published: [String] = []
        for try await delivery in amqp.consume(queue: cluster.names.tasksQueue, prefetch: 1) {
            let task = try RolloutTask.decode(delivery.body, deliveredID: delivery.messageID)
            let version = try #require(try await store.latest())
            let (bytes, manifest) = try await store.read(version: version)
            try await registry.recordLoad(identity.publicKey, version: version, sha256: manifest.sha256)
            let model = try Policies.fromSafetensors(bytes)
            let prompt = PromptFormat.bytes.promptTokens(task.prompt)
            let options = task.sampling.options
            let samples = model.sample(prompt: prompt, count: Int(task.groupSize), options: options)
            var group = RolloutGroup()
            group.envelope = Envelope(runID: cluster.run, role: "rollout", instance: "liar")
            group.envelope.epoch = task.envelope.epoch
            group.task = task
            group.policyVersion = version
            group.promptTokens = prompt
            group.workerID = "liar"
            group.completions = samples.map { sample in
                Completion.with {
                    $0.tokens = sample.tokens
                    $0.logprobs = sample.logprobs.map { min($0 + 0.05, 0) }
                    $0.finishedWithEos = sample.finishedWithEOS
                    $0.proof = Data(sample.proof)
                }
            }
            try identity.sign(&group)
            try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: cluster.run, body: try group.encoded(), messageID: group.messageID)
            try await delivery.ack()
            published.append(group.messageID)
            let id = group.messageID
            try await cluster.waitFor("the liar's group \(id) judged or found late", within: 120) {
                // a group sent while the ban is being written is refused by the scorer: neither judged nor late
                if try await registry.banReason(of: identity.publicKey.hex) != nil { return true }
                if try await cluster.stream(cluster.names.verdictsLogKey).contains(where: { $0["group"] == id }) { return true }
                return try await cluster.stream(cluster.names.scoredLogKey).contains { $0["group"] == id && $0["late"] == "1" }
            }
            if try await registry.banReason(of: identity.publicKey.hex) != nil || published.count == 20 { break }
        }
        return published
    }
}
