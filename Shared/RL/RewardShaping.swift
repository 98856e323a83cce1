import Foundation

/// Turns verifier components into the scalar reward GRPO uses, keeping every component for metrics.
///
/// total = correctnessWeight · correctness + formatWeight · format − lengthPenalty,
/// lengthPenalty = min(maxLengthPenalty, lengthPenaltyPerToken · |completion tokens − target|) when the task has a
/// target length (INTELLECT-2's length control: the target is written into the prompt, see `prompt(_:targetLength:)`).
public struct RewardShaping: Sendable, Codable, Equatable {
    public var correctnessWeight: Double
    public var formatWeight: Double
    /// α in INTELLECT-2: reward lost per token of distance from the target length.
    public var lengthPenaltyPerToken: Double
    public var maxLengthPenalty: Double
    /// Target lengths to draw from (in tokens); empty turns length control off.
    public var targetLengths: [Int]
    /// Written in front of the prompt; `{target}` becomes the target length.
    public var lengthInstruction: String

    public init(
        correctnessWeight: Double = 1, formatWeight: Double = 0, lengthPenaltyPerToken: Double = 0.001,
        maxLengthPenalty: Double = 0.5, targetLengths: [Int] = [], lengthInstruction: String = "Think for {target} tokens.\n"
    ) {
        self.correctnessWeight = correctnessWeight
        self.formatWeight = formatWeight
        self.lengthPenaltyPerToken = lengthPenaltyPerToken
        self.maxLengthPenalty = maxLengthPenalty
        self.targetLengths = targetLengths
        self.lengthInstruction = lengthInstruction
    }

    /// Correctness only: what the learning check uses.
    public static let correctnessOnly = RewardShaping()

    /// The target length for a task, drawn deterministically from `targetLengths`; nil when length control is off.
    public func targetLength(seed: UInt64, index: Int) -> Int? {
        guard !targetLengths.isEmpty else { return nil }
        var random = TaskRandom(seed: seed, index: index, salt: 0x1E46)
        return targetLengths[random.int(in: 0...(targetLengths.count - 1))]
    }

    /// The prompt with the length instruction in front (unchanged when `targetLength` is nil).
    public func prompt(_ prompt: String, targetLength: Int?) -> String {
        guard let targetLength else { return prompt }
        return lengthInstruction.replacingOccurrences(of: "{target}", with: String(targetLength)) + prompt
    }

    public func shape(_ components: RewardComponents, completionTokens: Int, targetLength: Int?) -> ShapedReward {
        var penalty = 0.0
        if let targetLength {
            penalty = min(maxLengthPenalty, lengthPenaltyPerToken * Double(abs(completionTokens - targetLength)))
        }
        let total = correctnessWeight * components.correctness + formatWeight * components.format - penalty
        return ShapedReward(
            total: total,
            components: ["correctness": components.correctness, "format": components.format, "length_penalty": penalty],
            reason: components.reason)
    }
}

/// A shaped reward: the total and each component on its own.
public struct ShapedReward: Sendable, Codable, Equatable {
    public var total: Double
    public var components: [String: Double]
    public var reason: String?

    public init(total: Double, components: [String: Double], reason: String? = nil) {
        self.total = total
        self.components = components
        self.reason = reason
    }
}
