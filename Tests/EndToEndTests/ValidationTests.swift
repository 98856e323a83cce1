import Checkpoints
import Foundation
import Messaging
import Model
import ModelAgreement
import RL
import Runtime
import Signing
import Store
import TestSupport
import Testing
import Wire

/// Verifiable inference through the real executables: a run whose validator checks every group (p = 1), two honest
/// rollout workers and liars the test plays in process, one for each lie of `Lie` (another model, perturbed, older or
/// 8-bit weights, another prompt, scaled log-probs, edited tokens, greedy draws, an early eos). Each takes tasks like a
/// worker, loads the real policy, tells its lie about every group and signs it with its registered key. The scorer
/// cannot tell; the validator must, and ban each.
@Suite("Verifiable inference end to end", .serialized)
struct ValidationTests {
    @Test(.timeLimit(.minutes(10)))
    func everyLyingWorkerIsBannedAndNoHonestGroupIsRefused() async throws {
        let cluster = try await Cluster(run: "e2e-validate", overrides: ["--run.steps", String(Cluster.endlessSteps), "--validation.enabled", "true",
                                                                         "--validation.fraction", "1", "--learner.task_deadline_seconds", "5"])
        do {
            try cluster.launch("validator")
            // every version kept: a validator behind a fast run (on a busy machine) would find the claimed version gone
            // and pass the group on unchecked, as the learner drops it as stale anyway; here every group must be checked
            try await cluster.startAll(rollouts: 2, broadcasterExtra: ["--broadcaster.keep_versions", "1000"])
            // a version before the latest, for the liar that runs an older one
            try await cluster.waitForState("the run to train two steps", within: 120) { Int($0["step"] ?? "") ?? 0 >= 2 }

            let registry = WorkerRegistry(names: cluster.names, redis: cluster.redis)
            var liars: [(lie: Lie, key: String, groups: [String])] = []
            for lie in Lie.allCases {
                let liar = WorkerIdentity(key: try SigningKey.generate(), file: "(test)")
                try await registry.register(liar.publicKey, instance: "liar-\(lie.slug)")
                let groups = try await self.lie(lie, cluster, as: liar)
                #expect(try await registry.banReason(of: liar.publicKey.hex) != nil, "\(lie.rawValue): not banned after \(groups.count) groups")
                liars.append((lie, liar.publicKey.hex, groups))
            }
            let stepAtBan = Int(try await cluster.state()["step"] ?? "") ?? 0
            try await cluster.waitForState("two more steps after the bans", within: 240) { Int($0["step"] ?? "") ?? 0 >= stepAtBan + 2 }

            let verdicts = try await cluster.stream(cluster.names.verdictsLogKey)
            let trained = try await cluster.stream(cluster.names.batchesLogKey).flatMap { ($0["groups"] ?? "").split(separator: ",").map(String.init) }
            let events = try await cluster.stream(cluster.names.eventsLogKey)
            let (status, output) = try runCommand([binaryDirectory.path + "/tributary", "workers", "list", "--run.id", cluster.run, "--json"])
            #expect(status == 0, "\(output)")
            let listed = (try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])?["workers"] as? [[String: Any]] ?? []
            // `tributary status` shows the validation: p, the validators, each key's passes and failures and its standing
            let (statusCode, statusOutput) = try runCommand([binaryDirectory.path + "/tributary", "status", "--run.id", cluster.run, "--json"])
            #expect(statusCode == 0, "\(statusOutput)")
            let validation = (try JSONSerialization.jsonObject(with: Data(statusOutput.utf8)) as? [String: Any])?["validation"] as? [String: Any] ?? [:]
            #expect(validation["fraction"] as? Double == 1 && validation["validators"] as? Int == 1, "\(validation)")
            let standings = validation["workers"] as? [[String: Any]] ?? []
            let honestStandings = standings.filter { standing in !liars.contains { $0.key == standing["key"] as? String } }
            #expect(!honestStandings.isEmpty && honestStandings.allSatisfy { ($0["passed"] as? Int ?? 0) > 0 && $0["failed"] as? Int == 0 && $0["banned"] as? Bool == false },
                    "the honest workers: \(honestStandings)")
            for (lie, key, groups) in liars {
                let standing = standings.first { $0["key"] as? String == key }
                #expect(standing?["failed"] as? Int == 2 && standing?["banned"] as? Bool == true, "\(lie.rawValue): \(standing ?? [:])")
                // each liar's groups that reached the validator: refused, two of them (then the ban)
                let mine = verdicts.filter { $0["key"] == key }
                let failed = mine.filter { $0["verdict"] == "failed" }
                print("validation end to end, \(lie.rawValue): \(groups.count) groups sent; failed checks: \(failed.compactMap { $0["detail"]?.prefix(90) })")
                #expect(failed.count == 2, "\(lie.rawValue): \(mine)")
                if lie == .scaledLogprobs { #expect(failed.allSatisfy { ($0["detail"] ?? "").contains("'logprob'") }, "\(mine)") }
                #expect(mine.allSatisfy { $0["verdict"] == "failed" || $0["verdict"] == "refused_banned" }, "\(lie.rawValue): \(mine)")
                // never trained; the ban is in the run's events with its reason; the CLI shows the reputation
                #expect(groups.allSatisfy { !trained.contains($0) }, "\(lie.rawValue)")
                #expect(events.contains { $0["event"] == "ban" && $0["key"] == key && ($0["reason"] ?? "").contains("failed validation") }, "\(lie.rawValue)")
                let entry = listed.first { $0["key"] as? String == key }
                #expect((entry?["reputation"] as? [String: Any])?["failed"] as? Int == 2 && entry?["banned"] != nil, "\(lie.rawValue): \(entry ?? [:])")
            }
            // honest workers: every group checked (p = 1), none refused
            let liarKeys = Set(liars.map(\.key))
            let honest = verdicts.filter { !liarKeys.contains($0["key"] ?? "") }
            #expect(!honest.isEmpty && honest.allSatisfy { $0["verdict"] == "passed" }, "\(honest.filter { $0["verdict"] != "passed" })")
            // the learner trained only groups the validator passed
            let passed = Set(honest.compactMap { $0["group"] })
            #expect(!trained.isEmpty && trained.allSatisfy(passed.contains), "trained groups without a pass: \(trained.filter { !passed.contains($0) })")

            let codes = try await cluster.terminateAll()
            for (role, code) in codes { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }

    /// Serves tasks as a worker would, telling `lie` about every group (claiming the latest version), one at a time, each
    /// until the validator judged it (or the scorer found its task already closed: a task can wait in the queue past its
    /// deadline on a busy machine), until the key is banned or 20 groups were sent; returns the groups' ids.
    func lie(_ lie: Lie, _ cluster: Cluster, as identity: WorkerIdentity) async throws -> [String] {
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
            let older = try Policies.fromSafetensors(try await store.read(version: max(version, 1) - 1).bytes)
            let prompt = PromptFormat.bytes.promptTokens(task.prompt)
            let samples = Liar(lie, claimed: model, older: older).group(prompt: prompt.isEmpty ? [model.bosToken] : prompt,
                                                                       count: Int(task.groupSize), options: task.sampling.options)
            var group = RolloutGroup()
            group.envelope = Envelope(runID: cluster.run, role: "rollout", instance: "liar-\(lie.slug)")
            group.envelope.epoch = task.envelope.epoch
            group.task = task
            group.policyVersion = version
            group.promptTokens = prompt
            group.workerID = "liar-\(lie.slug)"
            group.completions = samples.map { sample in
                Completion.with {
                    $0.tokens = sample.tokens
                    $0.logprobs = sample.logprobs
                    $0.finishedWithEos = sample.finishedWithEOS
                    $0.proof = Data(sample.proof)
                }
            }
            try identity.sign(&group)
            try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: cluster.run, body: try group.encoded(), messageID: group.messageID)
            try await delivery.ack()
            published.append(group.messageID)
            let id = group.messageID
            try await cluster.waitFor("\(lie.rawValue): group \(id) judged or found late", within: 120) {
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
