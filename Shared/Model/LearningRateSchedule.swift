import Foundation

/// Linear warm-up to `base`, then constant or cosine decay to `base * minFactor` at `totalSteps`.
public struct LearningRateSchedule: Sendable, Codable, Equatable, Hashable {
    public enum Decay: Sendable, Codable, Equatable, Hashable {
        case constant
        case cosine(totalSteps: Int, minFactor: Float)
    }

    public var base: Float
    public var warmupSteps: Int
    public var decay: Decay

    public init(base: Float, warmupSteps: Int = 0, decay: Decay = .constant) {
        self.base = base
        self.warmupSteps = warmupSteps
        self.decay = decay
    }

    public static func constant(_ base: Float, warmupSteps: Int = 0) -> LearningRateSchedule {
        LearningRateSchedule(base: base, warmupSteps: warmupSteps, decay: .constant)
    }

    public static func cosine(_ base: Float, warmupSteps: Int = 0, totalSteps: Int, minFactor: Float = 0.1) -> LearningRateSchedule {
        LearningRateSchedule(base: base, warmupSteps: warmupSteps, decay: .cosine(totalSteps: totalSteps, minFactor: minFactor))
    }

    /// The rate for 0-based `step`: (step+1)/warmup of base during warm-up.
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
        switch decay {
        case .constant:
            return base
        case let .cosine(total, minFactor):
            let span = max(1, total - warmupSteps)
            let progress = min(1, max(0, Double(step - warmupSteps) / Double(span)))
            let factor = Double(minFactor) + (1 - Double(minFactor)) * 0.5 * (1 + cos(Double.pi * progress))
            return base * Float(factor)
        }
    }
}
