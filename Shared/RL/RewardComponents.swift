/// What a verifier found in one completion, each part reported on its own (shaping adds more, see `RewardShaping`).
public struct RewardComponents: Sendable, Codable, Equatable {
    /// 1 when the answer is right, 0 when wrong; code tasks may give a fraction.
    public var correctness: Double
    /// 1 when the completion has the expected shape (an answer could be extracted), else 0.
    public var format: Double
    /// Why the reward is what it is when it is not full marks ("missing answer", "timeout after 5.0 s", ...).
    public var reason: String?

    public init(correctness: Double, format: Double, reason: String? = nil) {
        self.correctness = correctness
        self.format = format
        self.reason = reason
    }

    /// Named view of the components, as they go into metrics and wire messages.
    public var named: [String: Double] { ["correctness": correctness, "format": format] }

    /// Correct means full correctness: what accuracy counts.
    public var isCorrect: Bool { correctness >= 1 }

    static func wrong(format: Double, _ reason: String) -> RewardComponents {
        RewardComponents(correctness: 0, format: format, reason: reason)
    }
}
