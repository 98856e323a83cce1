/// GRPO's group-relative advantages: each completion's reward against the other completions for the same prompt.
public enum GroupAdvantages {
    /// (r − mean) / (std + ε), or r − mean when `meanOnly` (Dr. GRPO's choice). Population std.
    /// Returns nil when every reward in the group is the same: such a group carries no signal and is dropped (count it).
    public static func compute(rewards: [Double], meanOnly: Bool = false, epsilon: Double = 1e-6) -> [Double]? {
        guard rewards.count >= 2, let low = rewards.min(), let high = rewards.max(), high - low > 1e-12 else { return nil }
        let mean = rewards.reduce(0, +) / Double(rewards.count)
        if meanOnly { return rewards.map { $0 - mean } }
        let variance = rewards.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(rewards.count)
        let scale = variance.squareRoot() + epsilon
        return rewards.map { ($0 - mean) / scale }
    }
}
