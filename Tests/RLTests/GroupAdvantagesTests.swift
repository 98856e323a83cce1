import Testing
import RL

@Suite struct GroupAdvantagesTests {
    @Test func normalisesToZeroMeanUnitStd() throws {
        let advantages = try #require(GroupAdvantages.compute(rewards: [1, 0, 0, 1], epsilon: 0))
        #expect(advantages == [1, -1, -1, 1])
        let skewed = try #require(GroupAdvantages.compute(rewards: [1, 0, 0, 0]))
        #expect(abs(skewed.reduce(0, +)) < 1e-9)
        let std = (skewed.map { $0 * $0 }.reduce(0, +) / 4).squareRoot()
        #expect(abs(std - 1) < 1e-4)
    }

    @Test func meanOnlyKeepsScale() throws {
        let advantages = try #require(GroupAdvantages.compute(rewards: [1, 0, 0, 0], meanOnly: true))
        #expect(advantages == [0.75, -0.25, -0.25, -0.25])
    }

    @Test func zeroSignalGroupsAreNil() {
        #expect(GroupAdvantages.compute(rewards: [1, 1, 1, 1]) == nil)
        #expect(GroupAdvantages.compute(rewards: [0, 0]) == nil)
        #expect(GroupAdvantages.compute(rewards: [0.5]) == nil)
        #expect(GroupAdvantages.compute(rewards: []) == nil)
        #expect(GroupAdvantages.compute(rewards: [0, 0.1]) != nil)
    }
}

@Suite struct RewardShapingTests {
    @Test func lengthPenaltyIsProportionalToDistanceAndCapped() {
        let shaping = RewardShaping(lengthPenaltyPerToken: 0.01, maxLengthPenalty: 0.3, targetLengths: [100])
        let right = RewardComponents(correctness: 1, format: 1)
        #expect(shaping.shape(right, completionTokens: 100, targetLength: 100).total == 1)
        let off = shaping.shape(right, completionTokens: 80, targetLength: 100)
        #expect(abs(off.total - 0.8) < 1e-12)
        #expect(abs(off.components["length_penalty"]! - 0.2) < 1e-12)
        #expect(abs(shaping.shape(right, completionTokens: 200, targetLength: 100).total - 0.7) < 1e-12)
        #expect(shaping.shape(right, completionTokens: 5, targetLength: nil).total == 1)
    }

    @Test func formatAndComponentsReportedSeparately() {
        let shaping = RewardShaping(correctnessWeight: 1, formatWeight: 0.2)
        let shaped = shaping.shape(RewardComponents(correctness: 0, format: 1, reason: "wrong answer"), completionTokens: 3, targetLength: nil)
        #expect(abs(shaped.total - 0.2) < 1e-12)
        #expect(shaped.components["correctness"] == 0 && shaped.components["format"] == 1)
        #expect(shaped.reason == "wrong answer")
    }

    @Test func targetLengthGoesIntoThePromptDeterministically() {
        let shaping = RewardShaping(targetLengths: [8, 16, 32])
        let target = shaping.targetLength(seed: 3, index: 7)
        #expect(target == shaping.targetLength(seed: 3, index: 7))
        #expect(shaping.prompt("1+2=", targetLength: 16) == "Think for 16 tokens.\n1+2=")
        #expect(shaping.prompt("1+2=", targetLength: nil) == "1+2=")
        #expect(RewardShaping().targetLength(seed: 1, index: 1) == nil)
    }
}

@Suite struct GroupScoringTests {
    @Test func scoresDecodesAndDropsZeroSignalGroups() throws {
        let environment = ArithmeticEnvironment()
        let task = RLTask(id: "t", prompt: "1+2=", answer: "3")
        let right = PromptFormat.bytes.completionTokens("3"), wrong = PromptFormat.bytes.completionTokens("4")
        let scored = GroupScoring.score(task: task, completions: [right, wrong, Array(right.dropLast())], environment: environment)
        #expect(scored.rewards.map(\.total) == [1, 0, 1], "text after eos is ignored; a missing eos still decodes")
        let advantages = try #require(scored.advantages)
        #expect(advantages[0] > 0 && advantages[1] < 0)
        let flat = GroupScoring.score(task: task, completions: [wrong, wrong], environment: environment)
        #expect(!flat.hasSignal)
        #expect(flat.rewards.allSatisfy { $0.reason == "wrong answer 4" })
    }
}
