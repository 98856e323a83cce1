import Foundation
import Messaging
import Checkpoints
import Config
import Runtime
import Signing
import Store
import TestSupport
import Testing
import Wire

/// The real executables against the real brokers, a few steps of the smoke run each.
/// Serialized: each test runs five or six processes on a 2-core machine.
@Suite("Pipeline end to end", .serialized)
struct PipelineTests {
    @Test(.timeLimit(.minutes(6)))
    func versionsAdvanceWithinStalenessFromVerifiedCheckpointsAndBadMessagesAreDeadLettered() async throws {
        let cluster = try await Cluster(run: "e2e-main", overrides: ["--run.steps", "6"])
        do {
            // Checkpoints through a Redis connection of their own, as from a regional relay.
            try await cluster.startAll(rollouts: 2, rolloutExtra: ["--rollout.checkpoint_redis_url", ProcessInfo.processInfo.environment[RedisEndpoint.environmentVariable] ?? RedisEndpoint.defaultURL])
            try await cluster.waitForState("the run to start training", within: 120) { Int($0["step"] ?? "") ?? 0 >= 1 }

            // While the run goes on: a message that is not protobuf, and a group with a token outside the vocabulary.
            let amqp = AMQPClient(endpoint: try AMQPEndpoint.fromEnvironment(), name: "e2e-injector")
            try await amqp.connect()
            try await amqp.publish(exchange: Names.tasksExchange, routingKey: cluster.run, body: Array("not a task".utf8), messageID: "garbage-1")
            var poisoned = RolloutGroup()
            poisoned.envelope = Envelope(runID: cluster.run, role: "rollout", instance: "impostor", messageID: "poison-1")
            poisoned.task = RolloutTask.with { $0.taskID = "t"; $0.groupSize = 1; $0.prompt = "1+1=" }
            poisoned.promptTokens = [256, 49]
            poisoned.completions = [Completion.with { $0.tokens = [99_999]; $0.logprobs = [-1] }]
            // signed by a registered key that loaded version 0, so what is refused is the content
            let impostor = WorkerIdentity(key: try SigningKey.generate(), file: "(test)")
            let registry = WorkerRegistry(names: cluster.names, redis: cluster.redis)
            try await registry.register(impostor.publicKey, instance: "impostor")
            try await registry.recordLoad(impostor.publicKey, version: 0, sha256: "test")
            try impostor.sign(&poisoned)
            try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: cluster.run, body: try poisoned.encoded(), messageID: "poison-1")
            // A version past Int's range (a UInt64 that once trapped the scorer): refused, and every scorer lives on.
            var future = poisoned
            future.envelope.messageID = "future-1"
            future.completions = [Completion.with { $0.tokens = [49]; $0.logprobs = [-1] }]
            future.policyVersion = UInt64.max
            try impostor.sign(&future)
            try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: cluster.run, body: try future.encoded(), messageID: "future-1")

            try await cluster.waitForState("the run to finish", within: 240) { $0["status"] == "finished" }
            let state = try await cluster.state()
            #expect(state["version"] == "6")
            #expect(state["accuracy_before"] != nil && state["accuracy_after"] != nil)

            // The learner's /metrics (swift-prometheus): its gauges and the step-time and staleness histograms.
            let beats = try await cluster.redis.scanKeys(matching: cluster.names.heartbeatKey(role: "learner", instance: "*"))
            let beatKey = try #require(beats.first)
            let beat = try #require(try await cluster.redis.get(beatKey))
            let port = try #require((try JSONSerialization.jsonObject(with: Data(beat)) as? [String: Any])?["metricsPort"] as? Int)
            let exposition = try httpGet(port: port, path: "/metrics")
            for series in ["tributary_step{", "tributary_learner_step_seconds_bucket{", "tributary_group_staleness_bucket{", "tributary_learner_wait_seconds_count{"] {
                #expect(exposition.contains(series), "no \(series) in /metrics")
            }

            // Policy versions advance: every version 0...6 was broadcast, in order.
            let broadcast = try await cluster.stream(cluster.names.broadcastLogKey).compactMap { Int($0["version"] ?? "") }
            #expect(Set(broadcast).isSuperset(of: Set(0...6)), "broadcast versions: \(broadcast)")

            // No batch used a group older than k = 2.
            let batches = try await cluster.stream(cluster.names.batchesLogKey)
            #expect(batches.count == 6)
            // Every task the ledger closed as trained fed exactly one step, and none is left open after the run.
            let trainedTasks = batches.flatMap { ($0["tasks"] ?? "").split(separator: ",").map(String.init) }
            #expect(Set(trainedTasks).count == trainedTasks.count, "a task trained twice: \(trainedTasks)")
            let audit = try await TaskLedger(names: cluster.names, redis: cluster.redis).audit(nowMs: WallClock.nowMs())
            #expect(audit.trained == trainedTasks.count && audit.open == 0, "\(audit)")
            for batch in batches {
                let step = try #require(Int(batch["step"] ?? ""))
                let minimum = try #require(Int(batch["min_version"] ?? ""))
                #expect(minimum == max(0, step - 2))
                let versions = (batch["versions"] ?? "").split(separator: ",").compactMap { Int($0) }
                #expect(!versions.isEmpty)
                #expect(versions.allSatisfy { $0 >= minimum && $0 <= step }, "step \(step) used versions \(versions)")
            }

            // Every checkpoint a worker loaded verified against its manifest (workers refuse anything else).
            let loads = try await cluster.stream(cluster.names.loadsLogKey)
            #expect(Set(loads.compactMap { $0["worker"] }).count == 2, "both workers loaded a policy")
            #expect(loads.allSatisfy { $0["verified"] == "1" })

            // Every bad message is in the run's dead-letter queue, each with its reason.
            var reasons: [String: String] = [:]
            let deadLetters = amqp.consume(queue: cluster.names.deadLettersQueue, prefetch: 10)
            let collector = Task {
                var found: [String: String] = [:]
                for try await delivery in deadLetters {
                    found[delivery.messageID ?? "?"] = delivery.headers["x-tributary-reason"] ?? ""
                    try await delivery.ack()
                    if found.count == 3 { break }
                }
                return found
            }
            let timeout = Task {
                // Both are queued by now; the deadline only bounds a failure, on a 2-core machine under the suite's load.
                try await Task.sleep(for: .seconds(60))
                collector.cancel()
            }
            reasons = try await collector.value
            timeout.cancel()
            #expect(reasons["garbage-1"]?.contains("not a valid tributary.v1.RolloutTask") == true, "reasons: \(reasons)")
            #expect(reasons["poison-1"]?.contains("outside the vocabulary") == true, "reasons: \(reasons)")
            #expect(reasons["future-1"]?.contains("from the future") == true, "reasons: \(reasons)")
            await amqp.close()

            // SIGTERM shuts every role down cleanly.
            let codes = try await cluster.terminateAll()
            for (role, code) in codes { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }

    @Test(.timeLimit(.minutes(6)))
    func killingARolloutWorkerMidRunLosesNoTask() async throws {
        // A run that outlasts the test (Cluster.endlessSteps): the test acts mid-run on any machine, then stops it.
        let cluster = try await Cluster(run: "e2e-kill", overrides: ["--run.steps", String(Cluster.endlessSteps)])
        do {
            try await cluster.startAll(rollouts: 2)
            let workers = cluster.processes.filter { $0.role == "rollout" }
            let (doomed, survivor) = (workers[0], workers[1])
            try await cluster.waitForState("step 2", within: 120) { Int($0["step"] ?? "") ?? 0 >= 2 }
            // Freeze both workers until tasks wait in the queue: then each holds its prefetched task unacknowledged.
            // Tasks do come: the learner steps on the groups already on their way and publishes the next tasks.
            doomed.signal(SIGSTOP)
            survivor.signal(SIGSTOP)
            let amqp = AMQPClient(endpoint: try AMQPEndpoint.fromEnvironment(), name: "e2e-inspector")
            try await amqp.connect()
            let deadline = ContinuousClock.now + .seconds(120)
            while try await amqp.inspect(queue: cluster.names.tasksQueue).messages == 0 {
                guard ContinuousClock.now < deadline else { throw EndToEndFailure(description: "no task queued up while the workers were frozen") }
                try await Task.sleep(for: .milliseconds(50))
            }
            await amqp.close()
            // Kill one holding its task, as a crash would; the other carries on.
            doomed.signal(SIGKILL)
            survivor.signal(SIGCONT)
            #expect(try await doomed.waitForExit(within: 60) == 128 + SIGKILL)
            let stepAtKill = Int(try await cluster.state()["step"] ?? "") ?? 0

            // The task it held comes back, flagged redelivered, and the other worker serves it; the run goes on.
            try await cluster.waitFor("the killed worker's task to be served again", within: 240, allowDead: [doomed.pid]) {
                try await cluster.stream(cluster.names.scoredLogKey).contains { $0["task_redelivered"] == "1" }
            }
            try await cluster.waitForState("three more steps without the killed worker", within: 240, allowDead: [doomed.pid]) {
                Int($0["step"] ?? "") ?? 0 >= stepAtKill + 3
            }
            let scored = try await cluster.stream(cluster.names.scoredLogKey)
            let redelivered = scored.filter { $0["task_redelivered"] == "1" }
            #expect(!redelivered.isEmpty, "no task was redelivered after the kill")
            #expect(redelivered.allSatisfy { $0["worker"] == "rollout-1" })
            let codes = try await cluster.terminateAll()
            for (role, code) in codes where role != "rollout" || code != 128 + SIGKILL { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }

    @Test(.timeLimit(.minutes(6)))
    func restartedLearnerResumesWithoutApplyingAGroupTwice() async throws {
        // A run that outlasts the test (Cluster.endlessSteps): the kill lands mid-run on any machine.
        // With a KL penalty: the frozen reference must survive the restart too.
        let cluster = try await Cluster(run: "e2e-resume", overrides: ["--run.steps", String(Cluster.endlessSteps), "--trainer.kl_coefficient", "0.05"])
        do {
            try await cluster.startAll(rollouts: 2)
            let first = try #require(cluster.processes.first { $0.role == "learner" })
            try await cluster.waitForState("step 3", within: 120) { Int($0["step"] ?? "") ?? 0 >= 3 }
            first.signal(SIGKILL)
            _ = try await first.waitForExit(within: 60)
            let stateAtCrash = try await cluster.state()
            let stepAtCrash = Int(stateAtCrash["step"] ?? "") ?? 0
            #expect(stepAtCrash >= 3 && stateAtCrash["status"] == "running", "\(stateAtCrash)")
            // A learner killed with -9 writes nothing: the CLI sees it lost once its heartbeat lapses.
            let cli = binaryDirectory.appendingPathComponent("tributary").path
            let watch = try await runCommandOffPool([cli, "watch", "--run.id", cluster.names.run, "--until-finished", "--lost-after", "0", "--interval", "0.5",
                                        "--timeout", "60"])
            #expect(watch.status == 1 && watch.output.contains("lost"), "\(watch.output)")

            // A new learner with no autostart finds the run in progress and resumes it from its saved state.
            let second = try cluster.launch("learner", name: "learner-restarted")
            try await cluster.waitForState("the resumed run to take three more steps", within: 240, allowDead: [first.pid]) {
                Int($0["step"] ?? "") ?? 0 >= stepAtCrash + 3
            }
            let log = try String(contentsOfFile: second.logPath, encoding: .utf8)
            #expect(log.contains("resuming run") && log.contains("the reference policy"))
            let status = try await runCommandOffPool([cli, "status", "--run.id", cluster.names.run, "--json"])
            #expect(status.output.contains(#""status":"running""#) || status.output.contains(#""status" : "running""#), "\(status.output)")
            // The penalty is live: once the policy has moved from the reference, every step reports a positive KL.
            let metrics = try await cluster.stream(cluster.names.metricsKey).compactMap { StepMetrics(fields: $0) }
            #expect(metrics.count >= 4 && metrics.dropFirst().allSatisfy { $0.kl > 0 }, "\(metrics.map(\.kl))")

            let batches = try await cluster.stream(cluster.names.batchesLogKey)
            let groups = batches.flatMap { ($0["groups"] ?? "").split(separator: ",").map(String.init) }
            #expect(Set(groups).count == groups.count, "a group was applied twice")
            let steps = batches.compactMap { Int($0["step"] ?? "") }
            #expect(Set(steps).count == steps.count, "a step was taken twice: \(steps)")
            let codes = try await cluster.terminateAll()
            for (role, code) in codes where role != "learner" || code != 128 + SIGKILL { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }
}
