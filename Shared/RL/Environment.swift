/// A source of tasks plus the verifier that scores completions for them.
///
/// Tasks are a pure function of `(seed, index)`: any process given the same spec, seed and index builds the same task,
/// which is what lets the learner send only indices and the reward scorer re-derive what it needs.
public protocol Environment: Sendable {
    /// The spec name (`arithmetic`, `reverse`, `sort`, `jsonl`, `code`).
    var name: String { get }
    /// The task at `index` of the stream seeded by `seed`; deterministic.
    func task(seed: UInt64, index: Int) -> RLTask
    /// A completion that earns full correctness, for supervised warm start (without the end-of-sequence token).
    func referenceSolution(for task: RLTask) -> String
    /// Scores one completion (decoded text, end-of-sequence token removed) for `task`.
    func verify(completion: String, task: RLTask) -> RewardComponents
}

extension Environment {
    /// `count` consecutive tasks starting at `start`.
    public func tasks(seed: UInt64, range: Range<Int>) -> [RLTask] {
        range.map { task(seed: seed, index: $0) }
    }
}
