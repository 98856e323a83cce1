/// The learner's decision for each scored group it takes from the queue: train on it, or drop it and say why.
/// Pure: the learner's state goes in as values, so every rule is tested without a broker.
public enum GroupAdmission {
    public enum Verdict: Sendable, Equatable {
        /// Into the batch, `age` versions behind the step it feeds.
        case take(age: Int)
        /// Already applied in an earlier step, or already in this batch (at-least-once delivery brings copies).
        case duplicate
        /// Its policy is more than the async level behind the step (DESIGN.md's staleness rule).
        case stale(age: Int)
        /// Every advantage is 0: no gradient; counted for accuracy, replaced by a new task.
        case zeroSignal
        /// It failed the message checks (Wire's validation): dead-lettered with the reason.
        case invalid(reason: String)
    }

    /// What the learner knows when a group arrives.
    public struct Facts: Sendable {
        public var groupID: String
        public var policyVersion: UInt64
        public var advantages: [Double]
        /// Wire's verdict on the message: nil when it passed.
        public var problem: String?

        public init(groupID: String, policyVersion: UInt64, advantages: [Double], problem: String? = nil) {
            self.groupID = groupID
            self.policyVersion = policyVersion
            self.advantages = advantages
            self.problem = problem
        }
    }

    /// The staleness rule: a group for step `step` may come from any policy version >= step - asyncLevel.
    public static func decide(_ group: Facts, step: Int, asyncLevel: Int, alreadyTaken: (String) -> Bool) -> Verdict {
        if let problem = group.problem { return .invalid(reason: problem) }
        if alreadyTaken(group.groupID) { return .duplicate }
        // validated groups are never from the future, but a version past Int's range must not trap here either
        let age = step - Int(clamping: min(group.policyVersion, UInt64(Int.max)))
        if age > asyncLevel { return .stale(age: age) }
        if group.advantages.allSatisfy({ $0 == 0 }) { return .zeroSignal }
        return .take(age: max(0, age))
    }
}
