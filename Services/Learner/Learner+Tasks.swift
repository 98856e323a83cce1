import Config
import Foundation
import Runtime
import Store
import Wire

extension Learner {
    /// Tasks ahead by the async level: a task published now is for step `step + k` and may be served by any version >= step.
    func publishTasks(count: Int, closing: [(RolloutTask, TaskLedger.Closing)] = []) async throws {
        var messages: [RolloutTask] = []
        for _ in 0..<count {
            var index = taskIndex
            var task = environment.task(seed: config.seed, index: index)
            // Skip held-out problems (bounded: a tiny task space may be mostly held out).
            while heldOutPrompts.contains(task.prompt), index < taskIndex + 1000 {
                index += 1
                task = environment.task(seed: config.seed, index: index)
            }
            taskIndex = index + 1
            var message = RolloutTask()
            message.taskID = "\(names.run)-e\(epoch)-\(index)"
            // length control: a target drawn per task, written into the prompt; the scorer reads it back from the metadata
            let target = config.rewardShaping.targetLength(seed: config.seed, index: index)
            message.prompt = config.rewardShaping.prompt(task.prompt, targetLength: target)
            message.answer = task.answer
            message.metadata = task.metadata
            if let target { message.metadata[RunConfig.targetLengthMetadataKey] = String(target) }
            message.difficulty = task.difficulty
            message.groupSize = UInt32(config.groupSize)
            message.sampling = SamplingSettings.with {
                $0.temperature = config.temperature
                $0.topP = config.topP
                $0.topK = UInt32(config.topK)
                $0.maxNewTokens = UInt32(config.maxNewTokens)
                $0.seed = config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index)
            }
            messages.append(stamped(message))
        }
        try await issue(messages.map { ($0, 0) }, closing: closing)
    }

    /// For the step ahead, from this process.
    func stamped(_ task: RolloutTask) -> RolloutTask {
        var task = task
        task.envelope = envelope()
        task.step = UInt64(step + config.asyncLevel)
        task.minPolicyVersion = version
        return task
    }

    /// Into the ledger with their deadlines (closing the tasks they replace in the same fenced transaction), then to the
    /// workers without answer or verifier metadata, each publish confirmed by the broker before the step goes on.
    func issue(_ tasks: [(task: RolloutTask, attempt: Int)], closing: [(RolloutTask, TaskLedger.Closing)]) async throws {
        let now = WallClock.nowMs()
        var commands: [[any RedisArgument]] = []
        for (task, closing) in closing { commands += try ledger.closeCommands([task], closing, step: step) }
        commands += try ledger.recordCommands(tasks.map { ($0.task, now + deadlineMs(attempt: $0.attempt)) })
        // the index that numbered them, durable with them: a learner that resumes from the last step's state must not
        // number new tasks with ids already issued (it would reopen a task whose first copy may still feed a step)
        commands.append(["HSET", names.learnerStateKey, "task_index", String(taskIndex)])
        try await lease.exec(commands)
        let fabric = self.fabric
        let run = names.run
        try await withThrowingTaskGroup(of: Void.self) { group in
            for message in tasks.map({ TaskLedger.forWorkers($0.task) }) {
                group.addTask { try await fabric.publish(message, exchange: Names.tasksExchange, routingKey: run) }
            }
            try await group.waitForAll()
        }
    }

    /// A task's time to be filled: the deadline setting, doubled on every reissue (up to 64 times), so a task that needs
    /// longer than the deadline gets more time instead of endless reissues.
    func deadlineMs(attempt: Int) -> Int64 {
        Int64(taskDeadlineSeconds * 1000) << Int64(min(attempt, 6))
    }

    /// Keeps groups_per_step * (k + 1) groups in the pipeline (tasks, rollouts and scored groups not yet taken).
    func topUpTasks(initial: Bool) async throws {
        let target = config.groupsPerStep * (config.asyncLevel + 1)
        var inFlight = 0
        for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue] + (config.validation.enabled ? [names.validatedQueue] : []) {
            inFlight += try await fabric.amqp.inspect(queue: queue).messages
        }
        let missing = max(0, target - inFlight)
        if missing > 0 { try await publishTasks(count: missing) }
        context.logger.info("\(initial ? "fed" : "topped up") \(missing) tasks (\(inFlight) already in flight, target \(target))")
    }

    // MARK: Deadlines

    /// Once a second while the learner waits for groups. Time the learner was not running (paused, stopped by a signal,
    /// a long step) is added to every deadline: a worker's group may be waiting in the queue for a learner that was not
    /// there to take it. Then every task past its deadline is reissued.
    func tick() async throws {
        let now = ContinuousClock.now
        let gap = now - lastTick
        lastTick = now
        if paused || gap > .seconds(3) {
            try await extendDeadlines(byMs: Int64(gap.seconds * 1000))
            if paused { return }
        }
        try await reissueOverdueTasks()
    }

    func extendDeadlines(byMs: Int64) async throws { try await ledger.extendDeadlines(byMs: byMs) }

    /// Open tasks past their deadline (not filled: lost with a worker, dead-lettered, purged, or slow) are closed as
    /// expired and reissued under a new id with a new seed: a late group for the old id feeds nothing.
    func reissueOverdueTasks() async throws {
        let overdue = try await ledger.overdue(nowMs: WallClock.nowMs(), limit: 256)
        guard !overdue.isEmpty else { return }
        var reissued: [(task: RolloutTask, attempt: Int)] = []
        var expired: [(RolloutTask, TaskLedger.Closing)] = []
        for id in overdue where !heldTasks.contains(id) {
            guard case let .open(task) = try await ledger.lookup(id) else {
                // closed meanwhile (a crash between two writes of an older version): only its deadline was left
                _ = try await fabric.redis.command(["ZREM", ledger.deadlinesKey, id])
                continue
            }
            let (base, attempt) = Self.lineage(of: id)
            var next = task
            next.taskID = "\(base).r\(attempt + 1)"
            next.sampling.seed = task.sampling.seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            reissued.append((stamped(next), attempt + 1))
            expired.append((task, .expired))
        }
        guard !reissued.isEmpty else { return }
        try await issue(reissued, closing: expired)
        try await fabric.incrementCounter("tasks_reissued", by: reissued.count)
        context.logger.notice("reissued \(reissued.count) tasks past their deadline: \(expired.map(\.0.taskID).joined(separator: ", "))")
    }

    /// A reissued task's id is its first id with `.rN` (the N-th reissue).
    static func lineage(of taskID: String) -> (base: String, attempt: Int) {
        if let dot = taskID.range(of: ".r", options: .backwards), let attempt = Int(taskID[dot.upperBound...]), attempt > 0 {
            return (String(taskID[..<dot.lowerBound]), attempt)
        }
        return (taskID, 0)
    }
}
