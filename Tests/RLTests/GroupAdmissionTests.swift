import RL
import Testing

/// The learner's take-or-drop decision, rule by rule.
@Suite("Group admission")
struct GroupAdmissionTests {
    func decide(_ version: UInt64, advantages: [Double] = [1, -1], id: String = "g", problem: String? = nil, step: Int = 5, asyncLevel: Int = 2,
                taken: Set<String> = []) -> GroupAdmission.Verdict {
        GroupAdmission.decide(GroupAdmission.Facts(groupID: id, policyVersion: version, advantages: advantages, problem: problem),
                              step: step, asyncLevel: asyncLevel) { taken.contains($0) }
    }

    @Test func freshGroupsAreTakenWithTheirAge() {
        #expect(decide(5) == .take(age: 0))
        #expect(decide(3) == .take(age: 2))
    }

    @Test func olderThanTheAsyncLevelIsStale() {
        #expect(decide(2) == .stale(age: 3))
        #expect(decide(0, step: 5, asyncLevel: 0) == .stale(age: 5))
        #expect(decide(5, step: 5, asyncLevel: 0) == .take(age: 0))
    }

    @Test func aGroupSeenBeforeIsADuplicateWhateverElseIsTrue() {
        #expect(decide(5, taken: ["g"]) == .duplicate)
        #expect(decide(0, advantages: [0, 0], taken: ["g"]) == .duplicate)
    }

    @Test func noAdvantageMeansNoSignal() {
        #expect(decide(5, advantages: [0, 0, 0]) == .zeroSignal)
        // stale is decided first: a stale group is replaced whether or not it had signal
        #expect(decide(1, advantages: [0, 0]) == .stale(age: 4))
    }

    @Test func aProblemFromValidationWinsOverEverything() {
        #expect(decide(5, problem: "policy_version is from the future", taken: ["g"]) == .invalid(reason: "policy_version is from the future"))
    }

    @Test func versionsPastIntRangeDoNotTrap() {
        #expect(decide(UInt64.max) == .take(age: 0))
        #expect(decide(UInt64.max, step: 0, asyncLevel: 0) == .take(age: 0))
    }
}
