import Compression
import Foundation
import Logging
import Messaging
import Model
import RL
import ServiceKit
import Store
import Synchronization
import Wire

// tributary-learner: owns the run. Feeds tasks ahead by the async level, builds each batch from scored groups
// no older than k versions (dropping and counting stale ones), takes the GRPO step, saves the new policy for
// the broadcaster, and acknowledges what it consumed only once the step it fed is durable.

let learnerSettings = RunConfig.settings + [
    Setting("learner.autostart", "false", "start the run from this process's settings (e.g. --config run.toml) without `tributary run start`"),
    Setting("learner.prefetch", "0", "scored groups held at once (0: groups_per_step * (async_level + 2))"),
]

await ServiceRuntime.main(role: "learner", abstract: "Trains the policy with GRPO from scored groups; owns the run state.",
                          specs: learnerSettings, throughputUnit: "tokens/s") { context in
    let fabric = context.fabric
    let names = fabric.names
    let inbox = ControlInbox(context.control)

    // 1. Which run: resume one in progress, start from our own settings, or wait for StartRun.
    let state = try await fabric.redis.hgetall(names.stateKey).mapValues { String(decoding: $0, as: UTF8.self) }
    var runSettings: Settings
    var resuming = false
    if let status = state["status"], ["running", "paused", "starting"].contains(status), let toml = state["config"],
       try await fabric.redis.exists(names.learnerStateKey) {
        runSettings = try Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state")
        resuming = true
        context.logger.notice("resuming run \(names.run) from its saved state")
    } else if try context.settings.bool("learner.autostart") {
        runSettings = context.settings
    } else {
        context.status.set(state: "waiting for StartRun", detail: "tributary run start --config run.toml")
        context.logger.info("waiting for `tributary run start` for run \(names.run)")
        guard let toml = await inbox.waitForStart(stop: context.stop, run: names.run, logger: context.logger) else { return }
        runSettings = toml
    }
    let learner = try Learner(context: context, settings: runSettings, inbox: inbox)
    try await learner.run(resuming: resuming)
}

/// Control commands, taken between steps.
final class ControlInbox: Sendable {
    private let pending = Mutex<[ControlCommand]>([])
    /// Wakes the training loop when it is blocked waiting for scored groups.
    private let wake = Mutex<(@Sendable () -> Void)?>(nil)

    init(_ stream: AsyncStream<ControlCommand>) {
        Task { [self] in
            for await command in stream {
                pending.withLock { $0.append(command) }
                wake.withLock { $0 }?()
            }
        }
    }

    func onCommand(_ body: @escaping @Sendable () -> Void) { wake.withLock { $0 = body } }

    func take() -> [ControlCommand] { pending.withLock { commands in defer { commands = [] }; return commands } }

    /// The run file of the next StartRun for this run; nil when stopping.
    func waitForStart(stop: StopSignal, run: String, logger: Logger) async -> Settings? {
        while !stop.isRequested {
            for command in take() {
                guard case let .startRun(start) = command.command else { continue }
                do {
                    let settings = try Settings.fromTOML(start.configToml, specs: RunConfig.settings, source: "StartRun \(command.messageID)")
                    let config = try RunConfig(settings)
                    guard config.runID == run else {
                        logger.error("StartRun \(command.messageID) is for run '\(config.runID)', this learner serves '\(run)'; ignored")
                        continue
                    }
                    return settings
                } catch {
                    logger.error("StartRun \(command.messageID) refused: \(error)")
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }
}

enum LearnerEvent: Sendable {
    case group(Delivery)
    case control
}

/// One scored group taken from the queue, with its delivery to acknowledge once its step is durable.
struct TakenGroup {
    var delivery: Delivery
    var message: ScoredGroupMessage
}

final class Learner {
    let context: ServiceContext
    let fabric: Fabric
    let names: Names
    let store: CheckpointStore
    let inbox: ControlInbox
    var settings: Settings
    var config: RunConfig
    let environment: any Environment
    let compute = ComputeQueue(label: "learner.model")
    let trainer: Confined<GRPOTrainer>
    var step = 0
    var taskIndex = 0
    var applied: Set<String> = []
    var paused = false
    var stopRun = false
    /// Held-out prompts never appear in training (2-digit arithmetic has only 10k distinct problems).
    let heldOut: [RLTask]
    let heldOutPrompts: Set<String>
    /// How text becomes tokens in this run (the model's tokenizer, the run's template), and what the roles read of it.
    let format: PromptFormat
    let tokenizerJSON: [UInt8]?
    let vocabSize: Int, contextLength: Int, eosToken: Int32

    init(context: ServiceContext, settings: Settings, inbox: ControlInbox) throws {
        self.context = context
        fabric = context.fabric
        names = fabric.names
        store = CheckpointStore(names: names, redis: fabric.redis)
        self.inbox = inbox
        self.settings = settings
        config = try RunConfig(settings)
        environment = try EnvironmentFactory.make(config.environment)
        heldOut = environment.tasks(seed: config.evalSeed, range: 0..<config.evalTasks)
        heldOutPrompts = Set(heldOut.map(\.prompt))
        let model = try config.makePolicy()
        tokenizerJSON = try config.tokenizerJSON(for: model)
        format = try config.promptFormat(tokenizerJSON: tokenizerJSON, eos: model.eosToken)
        // every id the tokenizer produces must be a row of the model's embedding
        guard format.tokenizer.vocabSize <= model.vocabSize else {
            throw SettingsError(problem: "setting 'model.path' = '\(config.modelPath ?? "")': its tokenizer.json has \(format.tokenizer.vocabSize) tokens, more than the model's vocabulary (\(model.vocabSize))")
        }
        (vocabSize, contextLength, eosToken) = (model.vocabSize, model.contextLength, model.eosToken)
        let optimizer = AdamW(model: model, learningRate: config.learningRate, beta1: 0.9, beta2: 0.999, weightDecay: 0, maxGradNorm: 1)
        trainer = Confined(GRPOTrainer(model: model, optimizer: optimizer,
                                       config: GRPOTrainerConfig(learningRate: config.learningRate, loss: config.grpo, microBatchSize: config.microBatch)))
    }

    var version: UInt64 { UInt64(step) }

    func run(resuming: Bool) async throws {
        print(settings.effectiveDescription(role: "run \(config.runID) (learning knobs)"))
        try await publishFormat(more: ["config": settings.toml(keys: RunConfig.settings.map(\.key)), "status": "starting"])
        if resuming {
            try await restore()
        } else {
            _ = try await fabric.redis.del([names.appliedGroupsKey, names.metricsKey, names.batchesLogKey, names.countersKey])
            // A new run under a reused id starts with empty work queues.
            for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue] { try await fabric.amqp.purge(queue: queue) }
            try await setState(["started_at_ms": String(nowMs()), "step": "0", "version": "0"])
            try await warmStart()
            let before = try await evaluate()
            context.logger.notice("held-out accuracy before GRPO: \(String(format: "%.3f", before))")
            try await setState(["accuracy_before": String(before)])
        }
        let snapshot = try await snapshotPolicy()
        if !resuming { try await saveLearnerState(snapshot, ackAfter: []) }
        try await publishPolicy(snapshot)
        try await topUpTasks(initial: true)
        try await setState(["status": "running", "step": String(step), "version": String(version)])
        context.status.set(state: "training", detail: "step \(step)")
        try await trainLoop()
        if stopRun || step >= config.steps {
            let after = try await evaluate()
            context.logger.notice("held-out accuracy after \(step) steps: \(String(format: "%.3f", after))")
            _ = try? await fabric.amqp.purge(queue: names.tasksQueue)  // nobody needs the tasks ahead any more
            try await setState(["accuracy_after": String(after), "status": stopRun ? "stopped" : "finished", "finished_at_ms": String(nowMs())])
            context.status.set(state: "finished", detail: "step \(step)")
            await context.stop.wait()
        }
    }

    // MARK: The loop

    func trainLoop() async throws {
        let prefetchSetting = try context.settings.int("learner.prefetch", in: 0...100_000)
        let prefetch = prefetchSetting > 0 ? prefetchSetting : config.groupsPerStep * (config.asyncLevel + 2)
        // Scored groups and control commands in one stream, so a command is seen while waiting for a batch.
        let (groups, continuation) = AsyncStream<LearnerEvent>.makeStream()
        inbox.onCommand { continuation.yield(.control) }
        let consumer = Task { [fabric, names] in
            do {
                for try await delivery in fabric.amqp.consume(queue: names.scoredQueue, prefetch: prefetch) { continuation.yield(.group(delivery)) }
            } catch {}
            continuation.finish()
        }
        let stopWatcher = Task { [context] in
            await context.stop.wait()
            consumer.cancel()
        }
        defer {
            consumer.cancel()
            stopWatcher.cancel()
        }
        var iterator = groups.makeAsyncIterator()

        while step < config.steps, !context.stop.isRequested {
            try await handleControl()
            if stopRun { return }
            if paused {
                try await Task.sleep(for: .milliseconds(200))
                continue
            }
            let stepStarted = ContinuousClock.now
            var waited = Duration.zero
            var batch: [TakenGroup] = []
            var staleDropped = 0
            var zeroSignal = 0
            var rewards: [Double] = []
            var correct = 0
            var completionsSeen = 0
            var staleness: [Int: Int] = [:]
            let minimumVersion = max(0, step - config.asyncLevel)

            while batch.count < config.groupsPerStep {
                let waitStarted = ContinuousClock.now
                guard let event = await iterator.next() else { return }  // stopping
                waited += ContinuousClock.now - waitStarted
                guard case let .group(delivery) = event else {
                    try await handleControl()
                    if stopRun { return }
                    // Paused mid-batch: hold what was taken, take no more until resumed or stopped.
                    while paused, !context.stop.isRequested {
                        try await Task.sleep(for: .milliseconds(200))
                        try await handleControl()
                        if stopRun { return }
                    }
                    continue
                }
                let message: ScoredGroupMessage
                do {
                    message = try ScoredGroupMessage.decode(delivery.body, deliveredID: delivery.messageID)
                    try validate(message)
                } catch let error as WireError {
                    await fabric.deadLetter(delivery, reason: error.reason)
                    continue
                }
                // At least once: a group applied before a crash comes back; never apply it twice.
                if applied.contains(message.rolloutMessageID) || batch.contains(where: { $0.message.rolloutMessageID == message.rolloutMessageID }) {
                    try await fabric.incrementCounter("duplicate_groups")
                    try await delivery.ack()
                    continue
                }
                for completion in message.completions {
                    rewards.append(completion.reward)
                    if completion.correct { correct += 1 }
                }
                completionsSeen += message.completions.count
                if Int(message.policyVersion) < minimumVersion {
                    // Dropped groups feed no step: replace them, then acknowledge at once (the prefetch window stays open).
                    staleDropped += 1
                    try await fabric.incrementCounter("stale_groups_dropped")
                    try await publishTasks(count: 1)
                    try await delivery.ack()
                    continue
                }
                if message.completions.allSatisfy({ $0.advantage == 0 }) {
                    zeroSignal += 1
                    try await publishTasks(count: 1)
                    try await delivery.ack()
                    continue
                }
                staleness[step - Int(message.policyVersion), default: 0] += 1
                batch.append(TakenGroup(delivery: delivery, message: message))
            }

            // The GRPO step, off the cooperative pool.
            let samples = batch.flatMap { taken in
                taken.message.completions.map { scored in
                    TrainingSample(promptTokens: taken.message.promptTokens, completionTokens: scored.completion.tokens,
                                   behaviourLogprobs: scored.completion.logprobs, advantage: scored.advantage)
                }
            }
            let learningRate = config.learningRate
            let trainer = self.trainer
            let trainStarted = ContinuousClock.now
            let metrics = try await compute.run { try trainer.value.step(samples: samples, learningRate: learningRate) }
            let trainSeconds = (ContinuousClock.now - trainStarted).seconds
            let tokens = samples.reduce(0) { $0 + $1.promptTokens.count + $1.completionTokens.count }
            step += 1
            for taken in batch { applied.insert(taken.message.rolloutMessageID) }

            // Durable first (weights, optimizer, step, applied ids), then acknowledge what fed the step.
            let snapshot = try await snapshotPolicy()
            try await saveLearnerState(snapshot, ackAfter: batch.map(\.delivery), newlyApplied: batch.map(\.message.rolloutMessageID))
            try await publishPolicy(snapshot)
            try await publishTasks(count: config.groupsPerStep)

            let stepSeconds = (ContinuousClock.now - stepStarted).seconds
            let rewardMean = rewards.isEmpty ? 0 : rewards.reduce(0, +) / Double(rewards.count)
            let accuracy = completionsSeen == 0 ? 0 : Double(correct) / Double(completionsSeen)
            let stalenessJSON = "{" + staleness.keys.sorted().map { "\"\($0)\":\(staleness[$0]!)" }.joined(separator: ",") + "}"
            let loss = metrics.lossMetrics
            _ = try await fabric.redis.command([
                "XADD", names.metricsKey, "*", "step", String(step), "version", String(version),
                "reward_mean", String(format: "%.4f", rewardMean), "accuracy", String(format: "%.4f", accuracy),
                "loss", String(format: "%.5f", metrics.loss), "clip_low", String(format: "%.4f", loss.clipFractionLow),
                "clip_high", String(format: "%.4f", loss.clipFractionHigh), "clip_delta", String(format: "%.4f", loss.clipFractionDelta),
                "entropy", String(format: "%.4f", loss.entropy), "kl", String(format: "%.5f", loss.kl),
                "wait_s", String(format: "%.3f", waited.seconds), "train_s", String(format: "%.3f", trainSeconds),
                "step_s", String(format: "%.3f", stepSeconds),
                "tokens_per_s", String(format: "%.0f", Double(tokens) / max(trainSeconds, 1e-6)), "groups", String(batch.count),
                "stale_dropped", String(staleDropped), "zero_signal", String(zeroSignal), "staleness", stalenessJSON,
                "async_level", String(config.asyncLevel),
            ])
            _ = try await fabric.redis.command([
                "XADD", names.batchesLogKey, "*", "step", String(step - 1), "min_version", String(minimumVersion),
                "versions", batch.map { String($0.message.policyVersion) }.joined(separator: ","),
                "groups", batch.map(\.message.rolloutMessageID).joined(separator: ","),
            ])
            try await setState(["step": String(step), "version": String(version), "reward_mean": String(format: "%.4f", rewardMean)])
            context.metrics.set("step", Double(step))
            context.metrics.set("reward_mean", rewardMean)
            context.metrics.set("accuracy", accuracy)
            let used = staleness.reduce(0) { $0 + $1.value }
            context.metrics.set("staleness_mean", used == 0 ? 0 : Double(staleness.reduce(0) { $0 + $1.key * $1.value }) / Double(used))
            context.metrics.set("staleness_max", Double(staleness.keys.max() ?? 0))
            context.metrics.increment("learner_wait_seconds_total", by: waited.seconds)
            context.metrics.increment("learner_step_seconds_total", by: stepSeconds)
            context.metrics.increment("stale_groups_dropped_total", by: Double(staleDropped))
            context.status.update {
                $0.policyVersion = Int(self.version)
                $0.throughput = Double(tokens) / max(trainSeconds, 1e-6)
                $0.detail = "step \(self.step)"
            }
            context.logger.info("step \(step): reward \(String(format: "%.3f", rewardMean)) accuracy \(String(format: "%.3f", accuracy)) loss \(String(format: "%.4f", metrics.loss)) wait \(String(format: "%.2f", waited.seconds)) s, step \(String(format: "%.2f", stepSeconds)) s, stale \(staleDropped), zero-signal \(zeroSignal)")
        }
    }

    func validate(_ message: ScoredGroupMessage) throws {
        func bad(_ field: String, _ reason: String) -> WireError {
            WireError.invalidField(type: "ScoredGroup", messageID: message.messageID, field: field, reason: reason)
        }
        guard message.envelope.runID == names.run else { throw bad("envelope.run_id", "is '\(message.envelope.runID)', not this run '\(names.run)'") }
        guard message.policyVersion <= version else { throw bad("policy_version", "\(message.policyVersion) is from the future (learner is at \(version))") }
        guard !message.rolloutMessageID.isEmpty else { throw bad("rollout_message_id", "is empty") }
        guard !message.completions.isEmpty, message.completions.count <= 4096 else { throw bad("completions", "has \(message.completions.count) entries") }
        let vocabulary = Int32(vocabSize)
        let context = contextLength
        for (index, scored) in message.completions.enumerated() {
            let completion = scored.completion
            guard completion.tokens.count == completion.logprobs.count, !completion.tokens.isEmpty else {
                throw bad("completions[\(index)]", "has \(completion.tokens.count) tokens and \(completion.logprobs.count) logprobs")
            }
            guard completion.tokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }) else { throw bad("completions[\(index)].tokens", "holds ids outside the vocabulary") }
            guard message.promptTokens.count + completion.tokens.count <= context + 1 else {
                throw bad("completions[\(index)]", "prompt + completion (\(message.promptTokens.count + completion.tokens.count) tokens) exceed the context \(context)")
            }
            guard scored.advantage.isFinite, completion.logprobs.allSatisfy(\.isFinite) else { throw bad("completions[\(index)]", "holds a non-finite number") }
        }
        guard message.promptTokens.allSatisfy({ $0 >= 0 && $0 < vocabulary }), !message.promptTokens.isEmpty else {
            throw bad("prompt_tokens", "are empty or hold ids outside the vocabulary")
        }
    }

    // MARK: Control

    func handleControl() async throws {
        for command in inbox.take() {
            switch command.command {
            case .pause:
                paused = true
                try await setState(["status": "paused"])
                context.status.set(state: "paused", detail: "step \(step)")
            case .resume:
                paused = false
                try await setState(["status": "running"])
                context.status.set(state: "training", detail: "step \(step)")
            case .stop:
                stopRun = true
            case let .set(parameter):
                do {
                    guard RunConfig.liveKeys.contains(parameter.key) else {
                        throw SettingsError(problem: "'\(parameter.key)' cannot change during a run (live: \(RunConfig.liveKeys.sorted().joined(separator: ", ")))")
                    }
                    var updated = settings
                    try updated.set(parameter.key, parameter.value, origin: "set \(command.messageID)")
                    let newConfig = try RunConfig(updated)
                    settings = updated
                    config = newConfig
                    trainer.value.config.learningRate = newConfig.learningRate
                    try await setState(["config": settings.toml(keys: RunConfig.settings.map(\.key))])
                    context.logger.notice("set \(parameter.key) = \(parameter.value)")
                } catch {
                    context.logger.error("set \(parameter.key) refused: \(error)")
                }
            default:
                continue
            }
        }
    }

    // MARK: Tasks, policies, state

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
            message.prompt = task.prompt
            message.answer = task.answer
            message.metadata = task.metadata
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
        // All in flight at once; each confirmed by the broker before the step goes on.
        let fabric = self.fabric
        let run = names.run
        try await withThrowingTaskGroup(of: Void.self) { group in
            for message in messages {
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

    /// The policy's weights, serialized, compressed and hashed once per version: kept in the learner's state and staged for the broadcaster.
    struct PolicySnapshot: Sendable {
        var rawBytes: Int
        var compressed: [UInt8]
        var sha256: String
    }

    func snapshotPolicy() async throws -> PolicySnapshot {
        let trainer = self.trainer
        return try await compute.run {
            let raw = trainer.value.model.safetensorsBytes()
            return PolicySnapshot(rawBytes: raw.count, compressed: try Zstd.compress(raw, level: 1), sha256: sha256Hex(raw))
        }
    }

    func publishPolicy(_ snapshot: PolicySnapshot) async throws {
        let version = self.version
        let (key, sha) = try await store.stage(version: version, compressed: snapshot.compressed, sha256: snapshot.sha256)
        var saved = PolicySaved()
        saved.envelope = fabric.envelope()
        saved.version = version
        saved.stagingKey = key
        saved.bytes = UInt64(snapshot.rawBytes)
        saved.sha256 = sha
        saved.savedAtUnixMs = nowMs()
        try await fabric.publish(saved, exchange: Names.controlExchange, routingKey: names.policyRoutingKey)
    }

    /// Weights, optimizer, step and applied group ids in one MULTI/EXEC; then the deliveries are acknowledged.
    func saveLearnerState(_ snapshot: PolicySnapshot, ackAfter deliveries: [Delivery], newlyApplied: [String] = []) async throws {
        let trainer = self.trainer
        let optimizer = try await compute.run { try Zstd.compress(trainer.value.optimizer.stateBytes(), level: 1) }
        var commands: [[any RedisArgument]] = [["MULTI"],
            ["HSET", names.learnerStateKey, "step", String(step), "task_index", String(taskIndex), "weights", snapshot.compressed, "optimizer", optimizer]]
        if !newlyApplied.isEmpty { commands.append(["SADD", names.appliedGroupsKey] + newlyApplied.map { $0 as any RedisArgument }) }
        commands.append(["EXEC"])
        let replies = try await fabric.redis.pipeline(commands)
        if let failure = replies.first(where: { if case .error = $0 { return true } else { return false } }) {
            throw SettingsError(problem: "saving learner state failed: \(failure)")
        }
        for delivery in deliveries { try await delivery.ack() }
    }

    func restore() async throws {
        let saved = try await fabric.redis.hgetall(names.learnerStateKey)
        guard let stepText = saved["step"].map({ String(decoding: $0, as: UTF8.self) }), let savedStep = Int(stepText),
              let weights = saved["weights"], let optimizer = saved["optimizer"] else {
            throw SettingsError(problem: "learner state \(names.learnerStateKey) is incomplete")
        }
        let weightBytes = try Zstd.decompress(weights, maxOutputSize: CheckpointStore.maxCheckpointBytes)
        let optimizerBytes = try Zstd.decompress(optimizer, maxOutputSize: CheckpointStore.maxCheckpointBytes)
        let trainer = self.trainer
        try await compute.run {
            try trainer.value.model.loadWeights(safetensors: weightBytes)
            try trainer.value.optimizer.loadState(optimizerBytes)
        }
        step = savedStep
        taskIndex = saved["task_index"].flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
        let members = try await fabric.redis.command(["SMEMBERS", names.appliedGroupsKey])
        applied = Set((members.array ?? []).compactMap(\.string))
        context.logger.notice("restored step \(step), \(applied.count) applied groups")
    }

    /// The model's tokenizer (or none: the byte tokenizer) and the facts other roles need to read the run's tokens, in
    /// one transaction with `more` state fields, so no reader sees a tokenizer and a SHA-256 from two different runs.
    func publishFormat(more: [String: String]) async throws {
        let fields = RunFormat.stateFields(config: config, tokenizerJSON: tokenizerJSON, eos: eosToken, vocabSize: vocabSize).merging(more) { $1 }
        var hset: [any RedisArgument] = ["HSET", names.stateKey]
        for (field, value) in fields { hset += [field, value] }
        let write: [any RedisArgument] = tokenizerJSON.map { ["SET", names.tokenizerKey, $0] } ?? ["DEL", names.tokenizerKey]
        let replies = try await fabric.redis.pipeline([["MULTI"], write, hset, ["EXEC"]])
        let errors = replies.compactMap(\.errorMessage) + (replies.last?.array ?? []).compactMap(\.errorMessage)
        if let error = errors.first { throw RunFormatError(problem: "publishing the run's format: \(error)") }
    }

    func setState(_ fields: [String: String]) async throws {
        _ = try await fabric.redis.hset(names.stateKey, fields: fields.mapValues { $0 as any RedisArgument })
    }

    // MARK: Warm start and evaluation

    func warmStart() async throws {
        guard config.warmupSteps > 0 else { return }
        context.status.set(state: "warm start", detail: "\(config.warmupSteps) supervised steps")
        let trainer = self.trainer
        let environment = self.environment
        let config = self.config
        let format = self.format
        let heldOutPrompts = self.heldOutPrompts
        // The probe decides when to stop; it shares no prompt with the held-out set.
        let probe = environment.tasks(seed: config.seed &+ 3, range: 0..<400).filter { !heldOutPrompts.contains($0.prompt) }.prefix(200).map { $0 }
        let (loss, stepsTaken, probeAccuracy) = try await compute.run { () -> (Double, Int, Double) in
            var last = 0.0
            var probeAccuracy = 0.0
            for warmStep in 0..<config.warmupSteps {
                let tasks = environment.tasks(seed: config.seed &+ 7, range: (warmStep * config.warmupBatch)..<((warmStep + 1) * config.warmupBatch))
                let examples = tasks.filter { !heldOutPrompts.contains($0.prompt) }.map { task in
                    SupervisedExample(promptTokens: format.promptTokens(task.prompt),
                                      completionTokens: format.completionTokens(environment.referenceSolution(for: task)))
                }
                last = try SupervisedTraining.step(model: trainer.value.model, optimizer: trainer.value.optimizer, examples: examples,
                                                   learningRate: config.warmupLearningRate, microBatchSize: config.microBatch).loss
                if config.warmupTargetAccuracy > 0, (warmStep + 1) % 25 == 0 {
                    probeAccuracy = Evaluation.evaluate(model: trainer.value.model, environment: environment, tasks: probe, maxNewTokens: config.maxNewTokens, format: format)
                    if probeAccuracy >= config.warmupTargetAccuracy { return (last, warmStep + 1, probeAccuracy) }
                }
            }
            return (last, config.warmupSteps, probeAccuracy)
        }
        context.logger.notice("warm start: \(stepsTaken) supervised steps, final loss \(String(format: "%.4f", loss)), probe accuracy \(String(format: "%.3f", probeAccuracy))")
        // GRPO starts with fresh optimizer moments, as the learning check does.
        let model = trainer.value.model
        let learningRate = config.learningRate
        trainer.value = GRPOTrainer(model: model, optimizer: AdamW(model: model, learningRate: learningRate, beta1: 0.9, beta2: 0.999, weightDecay: 0, maxGradNorm: 1),
                                    config: GRPOTrainerConfig(learningRate: learningRate, loss: config.grpo, microBatchSize: config.microBatch))
    }

    func evaluate() async throws -> Double {
        context.status.set(state: "evaluating", detail: "step \(step)")
        let trainer = self.trainer
        let tasks = heldOut
        let environment = self.environment
        let maxNewTokens = config.maxNewTokens
        let format = self.format
        return try await compute.run { Evaluation.evaluate(model: trainer.value.model, environment: environment, tasks: tasks, maxNewTokens: maxNewTokens, format: format) }
    }
}

func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
