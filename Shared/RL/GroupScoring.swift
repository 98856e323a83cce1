/// A group of completions for one task, scored: what the reward scorer publishes and the learner trains on.
public struct ScoredGroup: Sendable, Codable, Equatable {
    /// One shaped reward per completion, components included.
    public var rewards: [ShapedReward]
    /// Group-relative advantages; nil when every reward was equal (no signal: drop the group and count it).
    public var advantages: [Double]?

    public var hasSignal: Bool { advantages != nil }
}

/// Verify, shape and normalise one group: the reward scorer's whole job for a rollout group.
public enum GroupScoring {
    /// `completions` are generated tokens (eos included when hit), decoded with `format.completionText`.
    public static func score(
        task: RLTask, completions: [[Int32]], environment: any Environment, format: PromptFormat = .bytes, shaping: RewardShaping = .correctnessOnly,
        targetLength: Int? = nil, meanOnly: Bool = false, epsilon: Double = 1e-6
    ) -> ScoredGroup {
        let rewards = completions.map { tokens in
            shaping.shape(environment.verify(completion: format.completionText(tokens), task: task),
                          completionTokens: tokens.count, targetLength: targetLength)
        }
        return ScoredGroup(rewards: rewards, advantages: GroupAdvantages.compute(rewards: rewards.map(\.total), meanOnly: meanOnly, epsilon: epsilon))
    }
}
