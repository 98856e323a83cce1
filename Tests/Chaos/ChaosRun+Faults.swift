import Config
import Foundation
import Messaging
import Runtime
import TestSupport
import Wire

extension ChaosRun {
    /// Waits for the fault's step, injects it, and returns when the fault is over (the run's recovery is measured after).
    func inject(_ fault: Fault, at step: Int) async throws -> Injection {
        // a crash point fires by itself at its step: wait for it (or for the run to pass the step without it)
        if fault == .learnerKillAfterSave || fault == .broadcasterKillMidWrite {
            return try await awaitCrashPoint(fault, at: step)
        }
        try await awaitStep(step)
        var injection = Injection(fault: fault, atStep: await self.step(), startedMs: WallClock.nowMs(), endedMs: 0)
        ChaosHarness.progress("\(names.run): injecting fault \(fault.number) (\(fault.title)) at step \(injection.atStep)")
        switch fault {
        case .rolloutKill:
            injection.checks.append(try await killHolding(role: "rollout", input: names.tasksQueue, what: "a task"))
        case .scorerKill:
            injection.checks.append(try await killHolding(role: "reward", input: names.rolloutsQueue, what: "a group"))
        case .learnerKillRandom:
            // somewhere inside the step that follows: optimizing, saving, acking, publishing or collecting
            try await Task.sleep(for: .milliseconds(Int.random(in: 0..<400, using: &rng)))
            fleet.signal("learner", SIGKILL)
        case .rabbitMQRestart:
            let brokers = harness.brokers
            try await offPool("kill-rabbitmq") { try brokers.killRabbitMQ() }
            injection.endedMs = WallClock.nowMs()
            ChaosHarness.progress("\(names.run): RabbitMQ killed; starting it again")
            try await offPool("restart-rabbitmq") { try brokers.restartRabbitMQ() }
            return injection
        case .redisRestart:
            let brokers = harness.brokers
            try await offPool("kill-redis") { try brokers.killRedis() }
            injection.endedMs = WallClock.nowMs()
            try await offPool("restart-redis") { try brokers.restartRedis() }
            return injection
        case .learnerPausePastConsumerTimeout:
            injection.checks.append(try await pauseLearnerPastConsumerTimeout())
        case .scorerPause:
            fleet.signal("reward-0", SIGSTOP)
            try await Task.sleep(for: .milliseconds(Int(recipe.scorerPauseSeconds * 1000)))
            fleet.signal("reward-0", SIGCONT)
        case .rolloutPartition:
            injection.checks.append(try await partitionWorker())
        case .secondLearner:
            return try await secondLearner(injection)
        case .runIDReused:
            return try await reuseRunID(injection)
        case .nonFiniteSettings:
            injection.checks += try await setNonFiniteValues()
        case .allTasksInvalid:
            injection.checks.append(try await purgeEveryTask())
        case .clusterNodeKill:
            return try await killLearnersNode(injection)
        case .learnerKillAfterSave, .broadcasterKillMidWrite:
            break
        }
        injection.endedMs = WallClock.nowMs()
        return injection
    }

    /// Faults 3a and 4: the process was launched with its crash point armed at the planned step; the supervisor sees the
    /// SIGKILL and restarts it without the crash point.
    func awaitCrashPoint(_ fault: Fault, at step: Int) async throws -> Injection {
        let instance = fault == .learnerKillAfterSave ? "learner" : "broadcaster"
        let point = fault == .learnerKillAfterSave ? "learner.after-save" : "broadcaster.mid-write"
        var injection = Injection(fault: fault, atStep: step, startedMs: WallClock.nowMs(), endedMs: 0)
        // counted from launch, not from now: the point may have fired while an earlier fault's recovery was being timed
        var passed = step
        var lastChange = ContinuousClock.now
        while fleet.crashPointKills(of: instance).isEmpty {
            let now = await self.step()
            if now != passed { (passed, lastChange) = (now, ContinuousClock.now) }
            // five steps past the armed one with no crash: the build has no such crash point
            let ended = (try? await state().status?.isFinal) == true
            if now >= step + 5 || (ContinuousClock.now - lastChange).seconds > recipe.stallSeconds || ended {
                injection.endedMs = WallClock.nowMs()
                injection.checks.append(ChaosCheck(name: "crash point \(point) fired", passed: false,
                                                   detail: "\(instance) still running at step \(now) (armed for step \(step)); needs \(fault.needs ?? "")"))
                return injection
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let kill = fleet.crashPointKills(of: instance).last!
        injection.startedMs = min(injection.startedMs, kill.atMs)
        injection.endedMs = kill.atMs
        injection.atStep = await self.step()
        injection.checks.append(ChaosCheck(name: "crash point \(point) fired", passed: true, detail: "\(instance) killed itself at step \(injection.atStep)"))
        return injection
    }

    /// Faults 1 and 2: every process of the role frozen until its input queue has messages waiting (so each holds a full
    /// prefetch window it has not acknowledged), then one killed with -9 and the others thawed.
    func killHolding(role: String, input queue: String, what: String) async throws -> ChaosCheck {
        let all = fleet.instances(role: role)
        for instance in all { fleet.signal(instance, SIGSTOP) }
        var waiting = 0
        do {
            try await waitUntil("\(queue) to have messages waiting while every \(role) is stopped", within: 120) {
                waiting = (try? await self.amqp.inspect(queue: queue))?.messages ?? 0
                return waiting > 0
            }
        } catch {
            for instance in all { fleet.signal(instance, SIGCONT) }
            throw error
        }
        let victim = all[0]
        fleet.signal(victim, SIGKILL)
        for instance in all.dropFirst() { fleet.signal(instance, SIGCONT) }
        return ChaosCheck(name: "\(victim) held \(what) when killed", passed: true, detail: "\(waiting) waiting in \(queue) while it was stopped")
    }

    /// Fault 13: every task not yet served destroyed, those the workers held included: the workers killed (their tasks go
    /// back to the queue), the queue purged, the workers started again. Only groups already generated remain.
    func purgeEveryTask() async throws -> ChaosCheck {
        let workers = fleet.instances(role: "rollout")
        for instance in workers { fleet.signal(instance, SIGKILL, restart: false) }
        for instance in workers { _ = try? await fleet.process(instance)?.waitForExit(within: 30) }
        let queue = names.tasksQueue
        try await waitUntil("the killed workers' tasks to be back in \(queue)", within: 60) {
            try await self.amqp.inspect(queue: queue).consumers == 0
        }
        let purged = try await amqp.purge(queue: queue)
        for instance in workers { fleet.revive(instance) }
        return ChaosCheck(name: "every queued task purged", passed: purged > 0, detail: "\(purged) tasks purged (the workers' included)")
    }

    /// Fault 7: the learner stopped until the broker cancels its consumer for an unacknowledged delivery older than the
    /// consumer timeout, then continued.
    func pauseLearnerPastConsumerTimeout() async throws -> ChaosCheck {
        fleet.signal("learner", SIGSTOP)
        let stopped = ContinuousClock.now
        let queue = names.scoredQueue
        var check = ChaosCheck(name: "the broker cancelled the stopped learner's consumer", passed: true, detail: "")
        do {
            try await waitUntil("the broker to drop the stopped learner's consumer of \(queue)", within: Double(recipe.consumerTimeoutMs) / 1000 + 90) {
                ((try? await self.amqp.inspect(queue: queue))?.consumers ?? 1) == 0
            }
            check.detail = String(format: "after %.1f s stopped (consumer timeout %.0f s)", (ContinuousClock.now - stopped).seconds,
                                  Double(recipe.consumerTimeoutMs) / 1000)
        } catch {
            check.passed = false
            check.detail = "\(error)"
        }
        fleet.signal("learner", SIGCONT)
        return check
    }

    /// Fault 9: the jailed worker's link down for `partitionSeconds`, or until the broker dropped it (its task requeued).
    func partitionWorker() async throws -> ChaosCheck {
        guard let jail = harness.jail else { throw ChaosError("no worker jail") }
        let queue = names.tasksQueue
        // a worker may hold several consumers of the queue (tasks in flight that grew): count them, not the workers
        let consumersBefore = (try? await amqp.inspect(queue: queue))?.consumers ?? recipe.rollouts
        try jail.cut()
        let cut = ContinuousClock.now
        var check = ChaosCheck(name: "the broker dropped the cut-off worker", passed: true, detail: "")
        do {
            if let seconds = recipe.partitionSeconds {
                try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                let consumers = (try? await amqp.inspect(queue: queue))?.consumers ?? -1
                check.detail = "cut off for \(Int(seconds)) s; \(consumers) consumers of \(queue) then"
            } else {
                try await waitUntil("the broker to drop the cut-off worker's consumer", within: 120) {
                    ((try? await self.amqp.inspect(queue: queue))?.consumers ?? consumersBefore) < consumersBefore
                }
                check.detail = String(format: "dropped after %.1f s cut off", (ContinuousClock.now - cut).seconds)
            }
        } catch {
            check.passed = false
            check.detail = "\(error)"
        }
        try jail.reconnect()
        return check
    }

    /// Fault 10: a second learner on the same run must wait as a hot standby (heartbeat state `standby`) while the first
    /// trains; once the first is killed, it takes over and the run finishes.
    func secondLearner(_ started: Injection) async throws -> Injection {
        var injection = started
        try fleet.launch(role: "learner", instance: "learner-standby",
                         arguments: arguments("learner-standby") + ["--learner.autostart", "true"] + recipe.learnerOverrides)
        let beat = names.heartbeatKey(role: "learner", instance: "learner-standby")
        var standby = ChaosCheck(name: "the second learner waits as standby", passed: true, detail: "")
        do {
            try await waitUntil("the second learner's heartbeat to say standby", within: min(120, recipe.stallSeconds)) {
                guard let bytes = try? await self.redis.get(beat), let snapshot = try? JSONDecoder().decode(StatusBoard.Snapshot.self, from: Data(bytes)) else { return false }
                return snapshot.state == "standby"
            }
            standby.detail = "heartbeat state standby"
        } catch {
            standby.passed = false
            standby.detail = "no standby heartbeat: needs \(Fault.secondLearner.needs ?? "")"
        }
        injection.checks.append(standby)
        // both up for two steps, then the first killed and kept down until a step shows the standby took over
        try await awaitStep(injection.atStep + 2)
        fleet.signal("learner", SIGKILL, restart: false)
        injection.endedMs = WallClock.nowMs()
        var tookOver = ChaosCheck(name: "the standby took over after the first learner's kill -9", passed: true, detail: "")
        let deadline = ContinuousClock.now + .seconds(recipe.stallSeconds)
        while await firstStepAfter(injection.endedMs) == nil {
            let ended = (try? await state().status?.isFinal) == true
            if ContinuousClock.now > deadline || ended {
                tookOver.passed = false
                tookOver.detail = "no step after the kill within \(Int(recipe.stallSeconds)) s"
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        if tookOver.passed {
            tookOver.detail = "stepped while the first learner was down"
        }
        injection.checks.append(tookOver)
        // the first comes back as compose would restart it (a standby in its turn)
        fleet.revive("learner")
        return injection
    }

    /// Fault 11: the whole fleet interrupted mid-run (SIGTERM, as Ctrl-C of the quickstart), started again with a
    /// learner that waits for StartRun, and `tributary run start --config F --fresh`: a new epoch must finish.
    func reuseRunID(_ started: Injection) async throws -> Injection {
        var injection = started
        let instances = fleet.instances(role: "broadcaster") + fleet.instances(role: "reward") + fleet.instances(role: "rollout") + ["learner"]
        for instance in instances { fleet.signal(instance, SIGTERM, restart: false) }
        for instance in instances {
            if let process = fleet.process(instance), (try? await process.waitForExit(within: 60)) == nil {
                fleet.signal(instance, SIGKILL, restart: false)
                _ = try? await process.waitForExit(within: 30)
            }
        }
        ChaosHarness.progress("\(names.run): fleet interrupted at step \(await step()); starting it again with run start --fresh")
        for instance in instances where instance != "learner" { fleet.revive(instance) }
        // as the quickstart starts it: no autostart, the run comes from `tributary run start`
        fleet.replace("learner", arguments: arguments("learner") + recipe.learnerOverrides)
        let cli = harness.binaries.appendingPathComponent("tributary").path
        var start = ChaosCheck(name: "run start --fresh started a new epoch or found the run resumed", passed: false, detail: "")
        var fresh = false
        let deadline = ContinuousClock.now + .seconds(60)
        while !start.passed && ContinuousClock.now < deadline {
            let (status, output) = try await runCommandOffPool([cli, "run", "start", "--config", runFile.path, "--fresh", "--run.id", names.run],
                                                               environment: harness.brokers.serviceEnvironment)
            // as scripts/quickstart.sh reads it: started, or the learner found the interrupted run and resumed it itself
            fresh = status == 0
            start.passed = fresh || output.contains("is already")
            start.detail = output.split(separator: "\n").last.map(String.init) ?? "exit \(status)"
            // an option this build does not know will not become known by trying again
            if !start.passed, output.contains("Unknown option") || output.contains("unknown option") { break }
            if !start.passed { try await Task.sleep(for: .milliseconds(500)) }
        }
        if !start.passed { start.detail += "; needs \(Fault.runIDReused.needs ?? "")" }
        injection.checks.append(start)
        injection.endedMs = WallClock.nowMs()
        // a new epoch counts its steps from 0 (its versions go on from the old epoch's, so the watch keeps what it saw)
        if fresh { epochStartedMs = injection.endedMs }
        return injection
    }

    /// Fault 12: NaN, inf and negative values for live settings, through `tributary set` and as raw control messages
    /// (a CLI that refuses is not enough: the learner must refuse too). A valid change sent last marks that every earlier
    /// command was handled; the run's configuration must then show only that change.
    func setNonFiniteValues() async throws -> [ChaosCheck] {
        let before = try await state().config ?? ""
        let bad: [(String, String)] = [("trainer.learning_rate", "nan"), ("trainer.learning_rate", "inf"), ("trainer.learning_rate", "-0.001"),
                                       ("run.async_level", "-1"), ("inference.group_size", "-4"), ("inference.temperature", "inf")]
        let cli = harness.binaries.appendingPathComponent("tributary").path
        var checks: [ChaosCheck] = []
        for (key, value) in bad {
            let (status, output) = try await runCommandOffPool([cli, "set", "--run.id", names.run, "--", key, value], environment: harness.brokers.serviceEnvironment)
            checks.append(ChaosCheck(name: "tributary set \(key) \(value) refused", passed: status != 0,
                                     detail: status != 0 ? "exit \(status)" : "accepted: \(output.split(separator: "\n").last ?? "")"))
            try await publishSet(key, value)
        }
        let old = try Settings.fromTOML(before, specs: RunConfig.settings, source: "run state")
        let marker = String(((try? old.double("trainer.learning_rate")) ?? 0.001) * 1.0001)
        try await publishSet("trainer.learning_rate", marker)
        var after = before
        try await waitUntil("the learner to apply the marker setting trainer.learning_rate = \(marker)", within: recipe.stallSeconds) {
            after = (try? await self.state().config) ?? ""
            return (try? Settings.fromTOML(after, specs: RunConfig.settings, source: "run state").double("trainer.learning_rate")) == Double(marker)
        }
        let new = try Settings.fromTOML(after, specs: RunConfig.settings, source: "run state")
        for key in ["run.async_level", "inference.group_size", "inference.temperature"] {
            let was = (try? old.string(key)) ?? "?", now = (try? new.string(key)) ?? "?"
            checks.append(ChaosCheck(name: "the learner kept \(key)", passed: was == now, detail: "\(was) -> \(now)"))
        }
        return checks
    }

    func publishSet(_ key: String, _ value: String) async throws {
        var command = ControlCommand()
        command.envelope = Envelope(runID: names.run, role: "control", instance: "chaos")
        command.command = .set(Tributary_V1_SetParameter.with { $0.key = key; $0.value = value })
        try await amqp.publish(exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: names.run),
                               body: try command.encoded(), messageID: command.messageID)
    }
}
