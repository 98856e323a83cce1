import Model

/// INTELLECT-2's offline filter: estimate each task's pass rate under a policy and keep tasks neither solved every
/// time nor never (those give groups with no signal).
public struct DifficultyFilter: Sendable {
    /// Completions sampled per task to estimate its pass rate.
    public var samplesPerTask: Int
    /// Kept when the pass rate falls in this range (inclusive).
    public var keep: ClosedRange<Double>
    public var temperature: Float
    public var maxNewTokens: Int
    public var seed: UInt64

    public init(samplesPerTask: Int = 8, keep: ClosedRange<Double> = 0.01...0.99, temperature: Float = 1, maxNewTokens: Int, seed: UInt64 = 0) {
        self.samplesPerTask = samplesPerTask
        self.keep = keep
        self.temperature = temperature
        self.maxNewTokens = maxNewTokens
        self.seed = seed
    }

    /// Each task with `difficulty` set to 1 − its estimated pass rate, and the pass rate itself.
    public func estimate(model: any Policy, environment: any Environment, tasks: [RLTask], format: PromptFormat = .bytes) -> [(task: RLTask, passRate: Double)] {
        tasks.enumerated().map { i, task in
            let options = SamplingOptions(temperature: temperature, maxNewTokens: maxNewTokens, seed: seed &+ UInt64(i) &* 0x9E37_79B9)
            let completions = model.sample(prompt: format.promptTokens(task.prompt), count: samplesPerTask, options: options)
            let passed = completions.filter {
                environment.verify(completion: format.completionText($0.tokens), task: task).isCorrect
            }.count
            let rate = Double(passed) / Double(samplesPerTask)
            var scored = task
            scored.difficulty = 1 - rate
            return (scored, rate)
        }
    }

    /// The tasks whose estimated pass rate lies within `keep`, difficulty set; and how many were dropped.
    public func filter(model: any Policy, environment: any Environment, tasks: [RLTask], format: PromptFormat = .bytes) -> (kept: [RLTask], dropped: Int) {
        let estimated = estimate(model: model, environment: environment, tasks: tasks, format: format)
        let kept = estimated.filter { keep.contains($0.passRate) }.map(\.task)
        return (kept, tasks.count - kept.count)
    }
}
