import Config
import Runtime
import Wire

extension Learner {
    /// Tasks ahead by the async level: a task published now is for step `step + k` and may be served by any version >= step.
    func publishTasks(count: Int) async throws {
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
            message.envelope = fabric.envelope()
            message.taskID = "\(names.run)-\(index)"
            message.step = UInt64(step + config.asyncLevel)
            message.minPolicyVersion = version
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
            messages.append(message)
        }
        // The whole task goes into the ledger first; workers get it without answer or verifier metadata.
        try await ledger.record(messages)
        // All in flight at once; each confirmed by the broker before the step goes on.
        let fabric = self.fabric
        let run = names.run
        try await withThrowingTaskGroup(of: Void.self) { group in
            for message in messages.map(TaskLedger.forWorkers) {
                group.addTask { try await fabric.publish(message, exchange: Names.tasksExchange, routingKey: run) }
            }
            try await group.waitForAll()
        }
    }

    /// Keeps groups_per_step * (k + 1) groups in the pipeline (tasks, rollouts and scored groups not yet taken).
    func topUpTasks(initial: Bool) async throws {
        let target = config.groupsPerStep * (config.asyncLevel + 1)
        var inFlight = 0
        for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue] {
            inFlight += try await fabric.amqp.inspect(queue: queue).messages
        }
        let missing = max(0, target - inFlight)
        if missing > 0 { try await publishTasks(count: missing) }
        context.logger.info("\(initial ? "fed" : "topped up") \(missing) tasks (\(inFlight) already in flight, target \(target))")
    }
}
