import Testing
import Wire

@Suite("RolloutGroup validation")
struct RolloutGroupValidationTests {
    static let limits = RolloutGroup.Limits(run: "run-1", newestVersion: 3, vocabularySize: 300, maxTokens: 8, maxCompletions: 4)

    static func completion(_ tokens: [Int32]) -> Completion {
        Completion.with {
            $0.tokens = tokens
            $0.logprobs = tokens.map { _ in -0.25 }
            $0.finishedWithEos = true
        }
    }

    static func validGroup() -> RolloutGroup {
        RolloutGroup.with {
            $0.envelope = Envelope(runID: "run-1", role: "rollout", instance: "w1", messageID: "group-1")
            $0.task = RolloutTask.with {
                $0.taskID = "run-1-7"
                $0.prompt = "1+2="
                $0.groupSize = 2
                $0.difficulty = 0.5
            }
            $0.policyVersion = 2
            $0.promptTokens = [256, 49, 43, 50, 61]
            $0.completions = [completion([51, 257]), completion([52, 257])]
            $0.workerID = "w1"
        }
    }

    static let breakages: [Breakage<RolloutGroup>] = [
        Breakage("another run", field: "envelope.run_id", reason: "is 'run-2', not this run 'run-1'") { $0.envelope.runID = "run-2" },
        Breakage("version ahead of the newest checkpoint", field: "policy_version", reason: "4 is from the future (newest checkpoint is 3)") {
            $0.policyVersion = 4
        },
        Breakage("policy_version 2^64-1", field: "policy_version", reason: "\(maxUInt64Text) is from the future (newest checkpoint is 3)") {
            $0.policyVersion = .max
        },
        Breakage("fewer completions than the group size", field: "completions", reason: "has 1 completions for group size 2") {
            $0.completions.removeLast()
        },
        Breakage("no completions for a group of 0", field: "completions", reason: "has 0 completions for group size 0") {
            $0.task.groupSize = 0
            $0.completions = []
        },
        Breakage("empty completion", field: "completions[1].tokens", reason: "has 0 tokens (1...8 allowed)") {
            $0.completions[1] = completion([])
        },
        Breakage("completion over the longest", field: "completions[0].tokens", reason: "has 9 tokens (1...8 allowed)") {
            $0.completions[0] = completion([Int32](repeating: 51, count: 9))
        },
        Breakage("token past the vocabulary", field: "completions[0].tokens", reason: "holds token id 300 outside the vocabulary 0..<300") {
            $0.completions[0].tokens[1] = 300
        },
        Breakage("negative token", field: "completions[1].tokens", reason: "holds token id -1 outside the vocabulary 0..<300") {
            $0.completions[1].tokens[0] = -1
        },
        Breakage("logprobs short of the tokens", field: "completions[0].logprobs", reason: "has 1 values for 2 tokens") {
            $0.completions[0].logprobs.removeLast()
        },
        Breakage("NaN logprob", field: "completions[1].logprobs", reason: "holds a value that is not a finite log-probability") {
            $0.completions[1].logprobs[0] = .nan
        },
        Breakage("-infinity logprob", field: "completions[0].logprobs", reason: "holds a value that is not a finite log-probability") {
            $0.completions[0].logprobs[1] = -.infinity
        },
        Breakage("positive logprob", field: "completions[0].logprobs", reason: "holds a value that is not a finite log-probability") {
            $0.completions[0].logprobs[0] = 0.5
        },
        Breakage("prompt token past the vocabulary", field: "prompt_tokens", reason: "holds token id 300 outside the vocabulary") {
            $0.promptTokens.append(300)
        },
        Breakage("more completions than any group", field: "completions", reason: "has 5 completions, more than 4") {
            $0.task.groupSize = 5
            $0.completions = (0..<5).map { _ in completion([51]) }
        },
        Breakage("empty task id", field: "task.task_id", reason: "is empty") { $0.task.taskID = "" },
        Breakage("empty worker id", field: "worker_id", reason: "is empty") { $0.workerID = "" },
        Breakage("NaN difficulty", field: "task.difficulty", reason: "is not finite") { $0.task.difficulty = .nan },
    ]

    @Test func validGroupPasses() throws {
        try Self.validGroup().validate(Self.limits)
    }

    @Test(arguments: [
        Edge<RolloutGroup>("version of the newest checkpoint") { $0.policyVersion = 3 },
        Edge("version 0") { $0.policyVersion = 0 },
        Edge("longest completion") { $0.completions[0] = completion([Int32](repeating: 299, count: 8)) },
        Edge("largest group") {
            $0.task.groupSize = 4
            $0.completions = (0..<4).map { _ in completion([0]) }
        },
        Edge("logprob 0 and rounding above it") { $0.completions[0].logprobs = [0, 1e-5] },
    ])
    func edgesOfEachRangePass(_ edge: Edge<RolloutGroup>) throws {
        var group = Self.validGroup()
        edge.change(&group)
        try group.validate(Self.limits)
    }

    @Test(arguments: breakages)
    func refusalNamesTheBrokenField(_ breakage: Breakage<RolloutGroup>) {
        var group = Self.validGroup()
        breakage.breakIt(&group)
        #expect(refusal { try group.validate(Self.limits) }
                == .invalidField(type: "RolloutGroup", messageID: "group-1", field: breakage.field, reason: breakage.reason))
    }

    @Test func everyGroupIsFromTheFutureBeforeTheFirstCheckpoint() {
        var limits = Self.limits
        limits.newestVersion = -1
        var group = Self.validGroup()
        group.policyVersion = 0
        #expect(refusal { try group.validate(limits) }
                == .invalidField(type: "RolloutGroup", messageID: "group-1", field: "policy_version", reason: "0 is from the future (newest checkpoint is -1)"))
    }

    @Test func tokenAndCompletionBoundsDefaultToTheRewardsFormerOnes() {
        let limits = RolloutGroup.Limits(run: "run-1", newestVersion: 3, vocabularySize: 300)
        var group = Self.validGroup()
        group.completions[0] = Self.completion([Int32](repeating: 51, count: 4096))
        #expect(refusal { try group.validate(limits) } == nil)
        group.completions[0] = Self.completion([Int32](repeating: 51, count: 4097))
        #expect(refusal { try group.validate(limits) }
                == .invalidField(type: "RolloutGroup", messageID: "group-1", field: "completions[0].tokens", reason: "has 4097 tokens (1...4096 allowed)"))
        group = Self.validGroup()
        group.task.groupSize = 4097
        group.completions = (0..<4097).map { _ in Self.completion([51]) }
        #expect(refusal { try group.validate(limits) }
                == .invalidField(type: "RolloutGroup", messageID: "group-1", field: "completions", reason: "has 4097 completions, more than 4096"))
    }

    @Test func aDecodedGroupWithANaNLogprobIsRefused() throws {
        var group = Self.validGroup()
        group.completions[0].logprobs[0] = .nan
        let decoded = try RolloutGroup.decode(try group.encoded())
        #expect(refusal { try decoded.validate(Self.limits) }
                == .invalidField(type: "RolloutGroup", messageID: "group-1", field: "completions[0].logprobs",
                                 reason: "holds a value that is not a finite log-probability"))
    }
}
