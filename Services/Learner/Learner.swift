import Checkpoints
import Compression
import Config
import Foundation
import Messaging
import Metrics
import Model
import RL
import Runtime
import ServiceLifecycle
import Wire

/// One run's learner: its config, model, trainer, step and the task ledger it trains from.
final class Learner {
    let context: ServiceContext
    /// Held while this learner trains the run; every write of its state is fenced by it.
    let lease: LearnerLease
    let fabric: Fabric
    let names: Names
    let store: CheckpointStore
    let ledger: TaskLedger
    let workers: WorkerRegistry
    /// Banned worker keys (hex): their groups are dead-lettered and their tasks replaced. Read from Redis each batch.
    var bannedWorkers: Set<String> = []
    let events: LearnerEvents
    var settings: Settings
    var config: RunConfig
    let environment: any Environment
    let compute = ComputeQueue(label: "learner.model")
    let trainer: Confined<GRPOTrainer>
    var step = 0
    /// The run's epoch: 1 for a new run id, one more each time the id is reused with `run start --fresh`.
    var epoch: UInt64 = 1
    /// Policy versions are numbered across epochs: version = versionBase + step, where a new epoch starts above every
    /// version an older one broadcast. A version number is never reused, so no checkpoint key is ever rewritten and
    /// a worker that holds an old epoch's policy never passes it for a new one's.
    var versionBase: UInt64 = 0
    var taskIndex = 0
    /// `learner.task_deadline_seconds`: a task's first deadline (doubled on each reissue).
    let taskDeadlineSeconds: Double
    /// `learner.ledger_keep_steps`: closed tasks' marks are kept this many steps.
    let ledgerKeepSteps: Int
    var lastTick = ContinuousClock.now
    /// Tasks whose group the batch being collected holds: never reissued, however late (they train with the step).
    var heldTasks: Set<String> = []
    /// `learner.max_nonfinite_steps`, and how many steps in a row were skipped as not finite.
    let maxNonFiniteSteps: Int
    var nonFiniteInARow = 0
    var paused = false
    var stopRun = false
    /// Groups that arrived while paused, taken first on resume.
    var heldWhilePaused: [Delivery] = []
    /// Held-out prompts never appear in training (2-digit arithmetic has only 10k distinct problems).
    let heldOut: [RLTask]
    let heldOutPrompts: Set<String>
    /// How text becomes tokens in this run (the model's tokenizer, the run's template), and what the roles read of it.
    let format: PromptFormat
    let tokenizerJSON: [UInt8]?
    let vocabSize: Int, contextLength: Int, eosToken: Int32
    let gauges: LearnerGauges

    init(context: ServiceContext, lease: LearnerLease, settings: Settings, events: LearnerEvents) throws {
        self.context = context
        self.lease = lease
        taskDeadlineSeconds = Double(try context.settings.int("learner.task_deadline_seconds", in: 1...86_400))
        ledgerKeepSteps = try context.settings.int("learner.ledger_keep_steps", in: 1...1_000_000)
        maxNonFiniteSteps = try context.settings.int("learner.max_nonfinite_steps", in: 1...1000)
        fabric = context.fabric
        names = fabric.names
        store = CheckpointStore(names: names, redis: fabric.checkpointRedis)
        ledger = TaskLedger(names: names, redis: fabric.redis)
        workers = WorkerRegistry(names: names, redis: fabric.redis)
        self.events = events
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
        trainer = Confined(GRPOTrainer(model: model, optimizer: try config.makeOptimizer(for: model), config: config.trainerConfig))
        gauges = LearnerGauges(dimensions: context.dimensions)
        try checkWorkIsPossible()
    }

    /// Refuses, naming the setting, a run whose every task would be refused or whose batch could never fill: the learner
    /// must not wait on work that cannot exist.
    func checkWorkIsPossible() throws {
        let held = try prefetch()
        guard held >= config.groupsPerStep else {
            throw SettingsError(problem: "setting 'learner.prefetch' = \(held) is below run.groups_per_step = \(config.groupsPerStep): no batch could ever fill")
        }
        let sample = (0..<32).map { index in
            format.promptTokens(config.rewardShaping.prompt(environment.task(seed: config.seed, index: index).prompt,
                                                            targetLength: config.rewardShaping.targetLengths.max()))
        }
        guard let shortest = sample.map(\.count).min(), shortest + config.maxNewTokens <= contextLength else {
            let shortest = sample.map(\.count).min() ?? 0
            throw SettingsError(problem: "setting 'inference.max_new_tokens' = \(config.maxNewTokens): with prompts of \(shortest)+ tokens it exceeds the model's context of \(contextLength) tokens for every task (lower it, or raise model.context)")
        }
    }

    var version: UInt64 { versionBase + UInt64(step) }

    /// An envelope of this process in the run's epoch.
    func envelope() -> Envelope {
        var envelope = fabric.envelope()
        envelope.epoch = epoch
        return envelope
    }

    /// Scored groups held at once.
    func prefetch() throws -> Int {
        let setting = try context.settings.int("learner.prefetch", in: 0...100_000)
        return setting > 0 ? setting : config.groupsPerStep * (config.asyncLevel + 2)
    }

    func run(resuming: Bool) async throws {
        print(settings.effectiveDescription(role: "run \(config.runID) (learning knobs)", excluding: ["run.id"]))
        if resuming {
            try await restore()
        } else {
            try await beginEpoch()
        }
        try await publishFormat(RunState(status: .starting, config: settings.toml(keys: RunConfig.settings.map(\.key)),
                                         other: ["epoch": String(epoch), "version_base": String(versionBase)]))
        // what an earlier end of this run left (a failure's reason, a finish time) no longer describes it
        try await lease.exec([["HDEL", names.stateKey, "reason", "finished_at_ms", "accuracy_after"]])
        if !resuming { try await startFresh() }
        let snapshot = try await snapshotPolicy()
        if !resuming { try await saveLearnerState(snapshot, ackAfter: [], withReference: true) }
        try await publishPolicy(snapshot)
        try await topUpTasks(initial: true)
        try await setState(RunState(status: .running, step: step, version: version))
        context.status.set(state: "training", detail: "step \(step)")
        try await train()
        guard stopRun || step >= config.steps else { return }  // drained or handed back: the run goes on after a restart
        try await finish()
        try? await gracefulShutdown()  // stay visible as finished until told to stop
    }

    // MARK: The loop

    /// Collect a batch → train → commit durably → publish the policy → feed tasks → record the step.
    func train() async throws {
        while step < config.steps {
            guard let batch = try await collectBatch() else { return }  // stopped, drained or handed back
            let trained: TrainedStep
            do {
                trained = try await optimize(on: batch)
                nonFiniteInARow = 0
            } catch let skipped as NonFiniteStep {
                try await skip(batch, because: skipped)
                continue
            }
            if context.stop.isHandingBack { return await handBack(batch.groups.map(\.delivery)) }
            step += 1
            try await commit(batch, snapshot: trained.snapshot)  // weights, optimizer, step, ledger; then the acks
            try await publishPolicy(trained.snapshot)
            try await publishTasks(count: config.groupsPerStep)
            try await record(trained, batch)
        }
    }

    /// The GRPO step, off the cooperative pool, and the new policy serialized for durability and broadcast.
    func optimize(on batch: Batch) async throws -> TrainedStep {
        let samples = batch.samples(format: format)
        let learningRate = config.learningRate
        let trainer = self.trainer
        let started = ContinuousClock.now
        let (metrics, weightsFinite) = try await compute.run {
            let metrics = try trainer.value.step(samples: samples, learningRate: learningRate)
            return (metrics, trainer.value.model.withParameters { weights, _ in weights.allSatisfy(\.isFinite) })
        }
        // a diverged step is never saved or broadcast: the model goes back to the last durable step
        guard metrics.loss.isFinite, metrics.gradNorm.isFinite, weightsFinite else {
            throw NonFiniteStep(step: step + 1, loss: metrics.loss, gradNorm: metrics.gradNorm, weightsFinite: weightsFinite)
        }
        let trainSeconds = (ContinuousClock.now - started).seconds
        let tokens = samples.reduce(0) { $0 + $1.promptTokens.count + $1.completionTokens.count }
        return TrainedStep(metrics: metrics, tokens: tokens, trainSeconds: trainSeconds, snapshot: try await snapshotPolicy())
    }

    /// A step whose loss, gradient or new weights are not finite: the model and optimizer go back to the last durable
    /// step, the batch's tasks are replaced (their groups acknowledged, feeding nothing) and the skip is counted; after
    /// `learner.max_nonfinite_steps` in a row the run fails with the reason.
    func skip(_ batch: Batch, because skipped: NonFiniteStep) async throws {
        nonFiniteInARow += 1
        try await fabric.incrementCounter("nonfinite_steps_skipped")
        guard nonFiniteInARow < maxNonFiniteSteps else {
            throw LearnerStateError(key: names.learnerStateKey, problem: "\(nonFiniteInARow) steps in a row were not finite, the last: \(skipped); nothing of them was saved (lower trainer.learning_rate or set trainer.max_grad_norm)")
        }
        context.logger.error("skipped: \(skipped); back to step \(step)'s weights (\(nonFiniteInARow) in a row, the run fails at \(maxNonFiniteSteps))")
        try await reloadDurableState()
        let tasks = batch.groups.map { ($0.message.task, TaskLedger.Closing.replaced) }
        try await publishTasks(count: tasks.count, closing: tasks)
        try await acknowledge(batch.groups.map(\.delivery))
    }

    /// Held deliveries go back to the scored queue at once (drain, shutdown, stop).
    func handBack(_ deliveries: [Delivery]) async {
        for delivery in deliveries + heldWhilePaused { try? await delivery.nack(requeue: true) }
        heldWhilePaused = []
    }

    /// A run id used before: its next epoch, whose versions start above every version the old one may have broadcast.
    func beginEpoch() async throws {
        let old = try await RunState.read(fabric.redis, names: names)
        let latest = try await store.latest()
        if old.status != nil || latest != nil {
            epoch = (old.other["epoch"].flatMap { UInt64($0) } ?? 1) + 1
            versionBase = max(latest ?? 0, old.version ?? 0) + 1
            context.logger.notice("run \(names.run) had state (\(old.status.map { "\($0)" } ?? "no status"), version \(old.version ?? latest ?? 0)): starting its epoch \(epoch) at version \(versionBase)")
        }
    }

    func startFresh() async throws {
        try await lease.exec([["DEL", names.learnerStateKey, names.appliedGroupsKey, names.metricsKey, names.batchesLogKey, names.countersKey, names.ledgerKey,
                               ledger.deadlinesKey, ledger.closedKey, names.workerStatsKey, names.verdictsLogKey]])
        // A new run under a reused id starts with empty work queues.
        for queue in [names.tasksQueue, names.rolloutsQueue, names.scoredQueue, names.validatedQueue] { try await fabric.amqp.purge(queue: queue) }
        try await setState(RunState(step: 0, version: version, startedAtMs: WallClock.nowMs()))
        try await warmStart()
        freezeReference()
        let before = try await evaluate()
        context.logger.notice("held-out accuracy before GRPO: \(String(format: "%.3f", before))")
        try await setState(RunState(accuracyBefore: before))
    }

    /// The tasks still open when the run ends are closed as `unused`: nothing waits for them, and an audit of the ledger
    /// tells them from lost work.
    func closeUnusedTasks() async throws {
        var unused: [RolloutTask] = []
        for id in try await ledger.openTaskIDs() {
            if case let .open(task) = try await ledger.lookup(id) { unused.append(task) }
        }
        try await lease.exec(try ledger.closeCommands(unused, .unused, step: step))
    }

    func finish() async throws {
        let after = try await evaluate()
        context.logger.notice("held-out accuracy after \(step) steps: \(String(format: "%.3f", after))")
        _ = try? await fabric.amqp.purge(queue: names.tasksQueue)  // nobody needs the tasks ahead any more
        try await closeUnusedTasks()
        try await setState(RunState(status: stopRun ? .stopped : .finished, finishedAtMs: WallClock.nowMs(), accuracyAfter: after))
        context.status.set(state: "finished", detail: "step \(step)")
    }
}

/// An optimizer step whose loss, gradient norm or weights were NaN or infinite.
struct NonFiniteStep: Error, CustomStringConvertible {
    var step: Int
    var loss: Double
    var gradNorm: Double
    var weightsFinite: Bool
    var description: String { "step \(step) gave loss \(loss), gradient norm \(gradNorm)\(weightsFinite ? "" : ", weights not finite")" }
}

/// What one optimizer step produced.
struct TrainedStep: Sendable {
    var metrics: GRPOStepMetrics
    var tokens: Int
    var trainSeconds: Double
    var snapshot: PolicySnapshot
}

/// The policy's weights, serialized, compressed and hashed once per version: kept in the learner's state and staged for the broadcaster.
struct PolicySnapshot: Sendable {
    var rawBytes: Int
    var compressed: [UInt8]
    var sha256: String
}

/// The learner's Prometheus series.
struct LearnerGauges {
    let step: Gauge, rewardMean: Gauge, accuracy: Gauge
    let stepTime: Metrics.Timer, waitTime: Metrics.Timer
    let staleness: Recorder
    let staleDropped: Counter, zeroSignal: Counter, duplicates: Counter

    init(dimensions: [(String, String)]) {
        step = Gauge(label: "tributary_step", dimensions: dimensions)
        rewardMean = Gauge(label: "tributary_reward_mean", dimensions: dimensions)
        accuracy = Gauge(label: "tributary_accuracy", dimensions: dimensions)
        stepTime = Metrics.Timer(label: "tributary_learner_step_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        waitTime = Metrics.Timer(label: "tributary_learner_wait_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        staleness = Recorder(label: "tributary_group_staleness", dimensions: dimensions, aggregate: true)
        staleDropped = Counter(label: "tributary_stale_groups_dropped_total", dimensions: dimensions)
        zeroSignal = Counter(label: "tributary_zero_signal_groups_dropped_total", dimensions: dimensions)
        duplicates = Counter(label: "tributary_duplicate_groups_total", dimensions: dimensions)
    }
}
