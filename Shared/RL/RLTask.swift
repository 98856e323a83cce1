/// One task an environment hands out: what the policy sees, what a correct answer is, and how hard it is thought to be.
public struct RLTask: Sendable, Codable, Equatable, Hashable {
    /// Stable id: the environment name plus the seed and index (or dataset line) it came from.
    public var id: String
    /// The text the policy is conditioned on (see `PromptFormat` for how it becomes tokens).
    public var prompt: String
    /// The reference answer the verifier checks against (for code tasks, a reference program; may be empty).
    public var answer: String
    /// Environment-specific facts the verifier needs (operands, tests, checker, ...). Plain strings so it travels as-is.
    public var metadata: [String: String]
    /// 0 (easy) ... 1 (hard): a heuristic from the generator, or 1 − pass rate after `DifficultyFilter`.
    public var difficulty: Double

    public init(id: String, prompt: String, answer: String, metadata: [String: String] = [:], difficulty: Double = 0) {
        self.id = id
        self.prompt = prompt
        self.answer = answer
        self.metadata = metadata
        self.difficulty = difficulty
    }
}
