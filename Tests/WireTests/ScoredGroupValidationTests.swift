import Foundation
import Testing
import Wire

@Suite("ScoredGroup validation")
struct ScoredGroupValidationTests {
    static let limits = ScoredGroupMessage.Limits(run: "run-1", learnerVersion: 3, vocabularySize: 300, contextLength: 8, maxCompletions: 4)

    static func scored(_ tokens: [Int32], advantage: Double) -> ScoredCompletion {
        ScoredCompletion.with {
            $0.completion = Completion.with {
                $0.tokens = tokens
                $0.logprobs = tokens.map { _ in -0.25 }
            }
            $0.reward = advantage > 0 ? 1 : 0
            $0.components = ["correctness": $0.reward]
            $0.advantage = advantage
            $0.correct = advantage > 0
        }
    }

    static func validGroup() -> ScoredGroupMessage {
        ScoredGroupMessage.with {
            $0.envelope = Envelope(runID: "run-1", role: "reward", instance: "r1", messageID: "scored-1")
            $0.task = RolloutTask.with { $0.taskID = "run-1-7"; $0.groupSize = 2 }
            $0.policyVersion = 2
            $0.promptTokens = [256, 49, 43, 50, 61]
            $0.completions = [scored([51, 257], advantage: 0.7), scored([52, 257], advantage: -0.7)]
            $0.workerID = "w1"
            $0.workerKey = Data(repeating: 7, count: 32)
            $0.rolloutMessageID = "group-1"
        }
    }

    static let breakages: [Breakage<ScoredGroupMessage>] = [
        Breakage("another run", field: "envelope.run_id", reason: "is 'run-2', not this run 'run-1'") { $0.envelope.runID = "run-2" },
        Breakage("version ahead of the learner", field: "policy_version", reason: "4 is from the future (learner is at 3)") { $0.policyVersion = 4 },
        Breakage("policy_version 2^64-1", field: "policy_version", reason: "\(maxUInt64Text) is from the future (learner is at 3)") {
            $0.policyVersion = .max
        },
        Breakage("empty rollout message id", field: "rollout_message_id", reason: "is empty") { $0.rolloutMessageID = "" },
        Breakage("no completions", field: "completions", reason: "has 0 entries") { $0.completions = [] },
        Breakage("more completions than any group", field: "completions", reason: "has 5 entries") {
            $0.completions = (0..<5).map { scored([51], advantage: $0 == 0 ? 1 : -0.25) }
        },
        Breakage("logprobs short of the tokens", field: "completions[1]", reason: "has 2 tokens and 1 logprobs") {
            $0.completions[1].completion.logprobs.removeLast()
        },
        Breakage("empty completion", field: "completions[0]", reason: "has 0 tokens and 0 logprobs") {
            $0.completions[0] = scored([], advantage: 0.7)
        },
        Breakage("token past the vocabulary", field: "completions[0].tokens", reason: "holds ids outside the vocabulary") {
            $0.completions[0].completion.tokens[0] = 300
        },
        Breakage("negative token", field: "completions[1].tokens", reason: "holds ids outside the vocabulary") {
            $0.completions[1].completion.tokens[1] = -5
        },
        Breakage("prompt + completion past the context", field: "completions[1]", reason: "prompt + completion (10 tokens) exceed the context 8") {
            $0.completions[1] = scored([51, 52, 53, 54, 257], advantage: -0.7)
        },
        Breakage("NaN advantage", field: "completions[0].advantage", reason: "holds a non-finite number") { $0.completions[0].advantage = .nan },
        Breakage("infinite advantage", field: "completions[1].advantage", reason: "holds a non-finite number") { $0.completions[1].advantage = -.infinity },
        Breakage("NaN logprob", field: "completions[1].logprobs", reason: "holds a non-finite number") {
            $0.completions[1].completion.logprobs[1] = .nan
        },
        Breakage("empty prompt", field: "prompt_tokens", reason: "are empty or hold ids outside the vocabulary") { $0.promptTokens = [] },
        Breakage("prompt token past the vocabulary", field: "prompt_tokens", reason: "are empty or hold ids outside the vocabulary") {
            $0.promptTokens[0] = 300
        },
        Breakage("NaN reward", field: "completions[0].reward", reason: "holds a non-finite number") { $0.completions[0].reward = .nan },
        Breakage("infinite reward", field: "completions[1].reward", reason: "holds a non-finite number") { $0.completions[1].reward = .infinity },
        Breakage("no worker key", field: "worker_key", reason: "is 0 bytes, not a worker's 32-byte key") { $0.workerKey = Data() },
    ]

    @Test func validGroupPasses() throws {
        try Self.validGroup().validate(Self.limits)
    }

    @Test(arguments: [
        Edge<ScoredGroupMessage>("version of the learner") { $0.policyVersion = 3 },
        Edge("prompt + completion of context + 1 (the last token is never fed back)") {
            $0.completions[0] = scored([51, 52, 53, 257], advantage: 0.7)
        },
        Edge("largest group") { $0.completions = (0..<4).map { scored([51], advantage: $0 == 0 ? 0.75 : -0.25) } },
        Edge("zero advantages (no signal: counted by the learner, not refused)") {
            $0.completions = $0.completions.map { var zero = $0; zero.advantage = 0; return zero }
        },
    ])
    func edgesOfEachRangePass(_ edge: Edge<ScoredGroupMessage>) throws {
        var group = Self.validGroup()
        edge.change(&group)
        try group.validate(Self.limits)
    }

    @Test(arguments: breakages)
    func refusalNamesTheBrokenField(_ breakage: Breakage<ScoredGroupMessage>) {
        var group = Self.validGroup()
        breakage.breakIt(&group)
        #expect(refusal { try group.validate(Self.limits) }
                == .invalidField(type: "ScoredGroup", messageID: "scored-1", field: breakage.field, reason: breakage.reason))
    }

    @Test func versionPastIntIsRefusedByNameWhateverTheLearnersVersion() {
        var limits = Self.limits
        limits.learnerVersion = .max
        var group = Self.validGroup()
        group.policyVersion = .max
        #expect(refusal { try group.validate(limits) }
                == .invalidField(type: "ScoredGroup", messageID: "scored-1", field: "policy_version", reason: "\(maxUInt64Text) does not fit in Int"))
        group.policyVersion = UInt64(Int.max)
        #expect(refusal { try group.validate(limits) } == nil)
    }

    @Test func completionBoundDefaultsToTheLearnersFormerOne() {
        let limits = ScoredGroupMessage.Limits(run: "run-1", learnerVersion: 3, vocabularySize: 300, contextLength: 8)
        var group = Self.validGroup()
        group.completions = (0..<4096).map { _ in Self.scored([51], advantage: 0.5) }
        #expect(refusal { try group.validate(limits) } == nil)
        group.completions.append(Self.scored([51], advantage: 0.5))
        #expect(refusal { try group.validate(limits) }
                == .invalidField(type: "ScoredGroup", messageID: "scored-1", field: "completions", reason: "has 4097 entries"))
    }
}
