import Model

/// Held-out accuracy with greedy decoding.
public enum Evaluation {
    /// One scored completion of an evaluation.
    public struct Outcome: Sendable {
        public var task: RLTask
        public var completion: String
        public var reward: RewardComponents
    }

    /// Share of `tasks` (0...1) whose greedy completion the environment verifies as fully correct.
    public static func evaluate(model: any Policy, environment: any Environment, tasks: [RLTask], maxNewTokens: Int, format: PromptFormat = .bytes) -> Double {
        let outcomes = run(model: model, environment: environment, tasks: tasks, maxNewTokens: maxNewTokens, format: format)
        guard !outcomes.isEmpty else { return 0 }
        return Double(outcomes.filter { $0.reward.isCorrect }.count) / Double(outcomes.count)
    }

    /// Every task's greedy completion and its reward components.
    public static func run(model: any Policy, environment: any Environment, tasks: [RLTask], maxNewTokens: Int, format: PromptFormat = .bytes) -> [Outcome] {
        let completions = model.sample(prompts: tasks.map { format.promptTokens($0.prompt) }, options: .greedy(maxNewTokens: maxNewTokens))
        return zip(tasks, completions).map { task, completion in
            let text = format.completionText(completion.tokens)
            return Outcome(task: task, completion: text, reward: environment.verify(completion: text, task: task))
        }
    }
}
