import Model

/// The supervised warm start: imitate the environment's reference solutions until a probe set reaches a target
/// accuracy (greedy), or a step budget runs out. One implementation for the learner and the learning check.
public struct WarmStartPlan: Sendable, Codable, Equatable {
    /// Step budget; 0 = no warm start.
    public var maxSteps: Int
    /// Tasks asked of the source per step.
    public var batch: Int
    public var learningRate: Float
    /// Stop once the probe accuracy reaches this; 0 = run the whole budget without probing.
    public var targetAccuracy: Double
    /// Probe after every this many steps.
    public var evalEvery: Int
    /// Tokens a probe completion may take.
    public var maxNewTokens: Int
    /// Sequences per forward/backward.
    public var microBatchSize: Int

    public init(maxSteps: Int, batch: Int, learningRate: Float, targetAccuracy: Double = 0, evalEvery: Int = 25,
                maxNewTokens: Int, microBatchSize: Int = 64) {
        self.maxSteps = maxSteps
        self.batch = batch
        self.learningRate = learningRate
        self.targetAccuracy = targetAccuracy
        self.evalEvery = evalEvery
        self.maxNewTokens = maxNewTokens
        self.microBatchSize = microBatchSize
    }

    /// Refuses a plan that cannot run, naming the field.
    public func validate() throws {
        func fail(_ field: String, _ value: Any, _ expected: String) -> WarmStartPlanError {
            WarmStartPlanError(field: field, value: "\(value)", expected: expected)
        }
        guard maxSteps >= 0 else { throw fail("maxSteps", maxSteps, ">= 0") }
        guard batch >= 1 else { throw fail("batch", batch, ">= 1") }
        guard learningRate > 0, learningRate.isFinite else { throw fail("learningRate", learningRate, "finite and > 0") }
        guard targetAccuracy >= 0, targetAccuracy <= 1 else { throw fail("targetAccuracy", targetAccuracy, "in [0, 1] (0 = no probe)") }
        guard evalEvery >= 1 else { throw fail("evalEvery", evalEvery, ">= 1") }
        guard maxNewTokens >= 1 else { throw fail("maxNewTokens", maxNewTokens, ">= 1") }
        guard microBatchSize >= 1 else { throw fail("microBatchSize", microBatchSize, ">= 1") }
    }

    /// Runs the plan on `model` with `optimizer` (the caller's: the learner and the learning check each give GRPO fresh
    /// moments afterwards). Step s trains on `tasks.tasks(step: s, batch: batch)`; a step whose tasks were all
    /// excluded takes no optimizer step but counts against the budget. `probe` must share no prompt with held-out tasks.
    public func run(model: any Policy, optimizer: AdamW, environment: any Environment, format: PromptFormat = .bytes,
                    tasks: WarmStartTaskSource, probe: [RLTask]) throws -> WarmStartSummary {
        try validate()
        var summary = WarmStartSummary()
        guard maxSteps > 0 else { return summary }
        for step in 0..<maxSteps {
            let examples = tasks.tasks(step: step, batch: batch).map { SupervisedExample(task: $0, environment: environment, format: format) }
            if !examples.isEmpty {
                summary.finalLoss = try SupervisedTraining.step(model: model, optimizer: optimizer, examples: examples,
                                                                learningRate: learningRate, microBatchSize: microBatchSize).loss
            }
            summary.steps = step + 1
            if targetAccuracy > 0, (step + 1) % evalEvery == 0 {
                let accuracy = Evaluation.evaluate(model: model, environment: environment, tasks: probe, maxNewTokens: maxNewTokens, format: format)
                summary.probeAccuracy = accuracy
                if accuracy >= targetAccuracy {
                    summary.reachedTarget = true
                    break
                }
            }
        }
        return summary
    }

    /// The probe set: the first `count` tasks of `seed` (looking at the first `candidates`) whose prompt is not excluded.
    public static func probe(environment: any Environment, seed: UInt64, candidates: Int, count: Int, excluding: Set<String>) -> [RLTask] {
        Array(environment.tasks(seed: seed, range: 0..<candidates).filter { !excluding.contains($0.prompt) }.prefix(count))
    }
}

/// What a warm start did.
public struct WarmStartSummary: Sendable, Codable, Equatable {
    public var steps = 0
    /// Mean negative log-likelihood per completion token of the last step taken (before its update); 0 if none.
    public var finalLoss = 0.0
    /// Accuracy at the last probe; nil when it never probed.
    public var probeAccuracy: Double?
    public var reachedTarget = false

    public init(steps: Int = 0, finalLoss: Double = 0, probeAccuracy: Double? = nil, reachedTarget: Bool = false) {
        self.steps = steps
        self.finalLoss = finalLoss
        self.probeAccuracy = probeAccuracy
        self.reachedTarget = reachedTarget
    }
}

/// Where the warm start's tasks come from; never a held-out prompt.
public struct WarmStartTaskSource {
    let next: (_ step: Int, _ batch: Int) -> [RLTask]

    /// Any source: `next(step, batch)` gives step's tasks.
    public init(_ next: @escaping (_ step: Int, _ batch: Int) -> [RLTask]) {
        self.next = next
    }

    func tasks(step: Int, batch: Int) -> [RLTask] { next(step, batch) }

    /// Step s takes tasks s·batch ..< (s+1)·batch of `seed` minus the excluded ones (so a batch may come up short): a pure
    /// function of the step, so a restarted learner sees the same tasks. The learner's source.
    public static func window(environment: any Environment, seed: UInt64, excluding: Set<String>) -> WarmStartTaskSource {
        WarmStartTaskSource { step, batch in
            environment.tasks(seed: seed, range: (step * batch)..<((step + 1) * batch)).filter { !excluding.contains($0.prompt) }
        }
    }
}

/// A warm-start setting out of range: which field, its value, what it must be.
public struct WarmStartPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var value: String
    public var expected: String

    public var description: String { "warm start \(field) = \(value): must be \(expected)" }
}
