import Testing
import Wire

@Suite("RolloutTask validation")
struct RolloutTaskValidationTests {
    static let limits = RolloutTask.Limits(run: "run-1", maxGroupSize: 16, maxNewTokens: 32)

    static func validTask() -> RolloutTask {
        RolloutTask.with {
            $0.envelope = Envelope(runID: "run-1", role: "learner", instance: "l1", messageID: "task-1")
            $0.taskID = "run-1-7"
            $0.step = 3
            $0.minPolicyVersion = 1
            $0.prompt = "1+2="
            $0.answer = "3"
            $0.difficulty = 0.3
            $0.groupSize = 4
            $0.sampling = SamplingSettings.with {
                $0.temperature = 1
                $0.topP = 0.9
                $0.maxNewTokens = 8
                $0.seed = 42
            }
        }
    }

    static let breakages: [Breakage<RolloutTask>] = [
        Breakage("another run", field: "envelope.run_id", reason: "is 'run-2', not this run 'run-1'") { $0.envelope.runID = "run-2" },
        Breakage("group of 0", field: "group_size", reason: "0 is outside 1...16") { $0.groupSize = 0 },
        Breakage("group over the worker's largest", field: "group_size", reason: "17 is outside 1...16") { $0.groupSize = 17 },
        Breakage("group of UInt32.max", field: "group_size", reason: "4294967295 is outside 1...16") { $0.groupSize = .max },
        Breakage("no new tokens", field: "sampling.max_new_tokens", reason: "0 is outside 1...32") { $0.sampling.maxNewTokens = 0 },
        Breakage("too many new tokens", field: "sampling.max_new_tokens", reason: "33 is outside 1...32") { $0.sampling.maxNewTokens = 33 },
        Breakage("empty prompt", field: "prompt", reason: "is empty") { $0.prompt = "" },
        Breakage("negative temperature", field: "sampling.temperature", reason: "must be finite and >= 0") { $0.sampling.temperature = -0.5 },
        Breakage("NaN temperature", field: "sampling.temperature", reason: "must be finite and >= 0") { $0.sampling.temperature = .nan },
        Breakage("infinite temperature", field: "sampling.temperature", reason: "must be finite and >= 0") { $0.sampling.temperature = .infinity },
        Breakage("empty task id", field: "task_id", reason: "is empty") { $0.taskID = "" },
        Breakage("NaN top_p", field: "sampling.top_p", reason: "must be finite and in 0...1") { $0.sampling.topP = .nan },
        Breakage("negative top_p", field: "sampling.top_p", reason: "must be finite and in 0...1") { $0.sampling.topP = -0.1 },
        Breakage("top_p over 1", field: "sampling.top_p", reason: "must be finite and in 0...1") { $0.sampling.topP = 1.5 },
        Breakage("infinite top_p", field: "sampling.top_p", reason: "must be finite and in 0...1") { $0.sampling.topP = .infinity },
        Breakage("NaN difficulty", field: "difficulty", reason: "is not finite") { $0.difficulty = .nan },
        Breakage("infinite difficulty", field: "difficulty", reason: "is not finite") { $0.difficulty = -.infinity },
        Breakage("min_policy_version 2^64-1", field: "min_policy_version", reason: "\(maxUInt64Text) does not fit in Int") { $0.minPolicyVersion = .max },
        Breakage("min_policy_version Int.max + 1", field: "min_policy_version", reason: "9223372036854775808 does not fit in Int") {
            $0.minPolicyVersion = UInt64(Int.max) + 1
        },
    ]

    @Test func validTaskPasses() throws {
        try Self.validTask().validate(Self.limits)
    }

    @Test(arguments: [
        Edge<RolloutTask>("top_p unset (0: no cut)") { $0.sampling.topP = 0 },
        Edge("top_p 1") { $0.sampling.topP = 1 },
        Edge("temperature 0 (greedy)") { $0.sampling.temperature = 0 },
        Edge("largest group") { $0.groupSize = 16 },
        Edge("most new tokens") { $0.sampling.maxNewTokens = 32 },
        Edge("min_policy_version Int.max") { $0.minPolicyVersion = UInt64(Int.max) },
    ])
    func edgesOfEachRangePass(_ edge: Edge<RolloutTask>) throws {
        var task = Self.validTask()
        edge.change(&task)
        try task.validate(Self.limits)
    }

    @Test(arguments: breakages)
    func refusalNamesTheBrokenField(_ breakage: Breakage<RolloutTask>) {
        var task = Self.validTask()
        breakage.breakIt(&task)
        #expect(refusal { try task.validate(Self.limits) }
                == .invalidField(type: "RolloutTask", messageID: "task-1", field: breakage.field, reason: breakage.reason))
    }

    @Test func maxNewTokensDefaultsToTheRolloutsFormerBound() {
        let limits = RolloutTask.Limits(run: "run-1", maxGroupSize: 16)
        var task = Self.validTask()
        task.sampling.maxNewTokens = 4096
        #expect(refusal { try task.validate(limits) } == nil)
        task.sampling.maxNewTokens = 4097
        #expect(refusal { try task.validate(limits) }
                == .invalidField(type: "RolloutTask", messageID: "task-1", field: "sampling.max_new_tokens", reason: "4097 is outside 1...4096"))
    }

    // At generation time: the encoded prompt against the held policy (vocabulary 300, context 16; the task asks 8 new tokens).

    @Test func promptThatFitsThePolicyPasses() throws {
        try Self.validTask().validateGeneration(promptTokens: [256, 49, 43, 50, 61, 299, 0, 1], vocabularySize: 300, contextLength: 16)
    }

    @Test(arguments: [Int32(300), 1_000_000, -1])
    func promptTokenOutsideTheHeldVocabularyIsRefused(_ token: Int32) {
        #expect(refusal { try Self.validTask().validateGeneration(promptTokens: [256, token, 49], vocabularySize: 300, contextLength: 16) }
                == .invalidField(type: "RolloutTask", messageID: "task-1", field: "prompt",
                                 reason: "encodes to token \(token), outside the held policy's vocabulary (300)"))
    }

    @Test func promptWithNoRoomForTheCompletionIsRefused() {
        let prompt = [Int32](repeating: 49, count: 9)
        #expect(refusal { try Self.validTask().validateGeneration(promptTokens: prompt, vocabularySize: 300, contextLength: 16) }
                == .invalidField(type: "RolloutTask", messageID: "task-1", field: "prompt",
                                 reason: "9 tokens + max_new_tokens 8 exceed the context 16"))
    }
}
