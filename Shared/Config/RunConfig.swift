import Foundation
import Model
import RL
import Tokenizers

/// Every knob that changes learning, in one place, with the same names in the run file, the environment,
/// flags and `tributary set`. Printed at start by the learner.
public struct RunConfig: Sendable, Equatable {
    public var runID: String
    public var asyncLevel: Int
    public var steps: Int
    public var groupsPerStep: Int
    public var seed: UInt64
    public var evalTasks: Int
    public var environment: EnvironmentSpec
    public var groupSize: Int
    public var temperature: Float
    public var topP: Float
    public var topK: Int
    public var maxNewTokens: Int
    public var learningRate: Float
    public var epsilonLow: Double
    public var epsilonHigh: Double
    public var delta: Double
    public var klCoefficient: Double
    public var entropyCoefficient: Double
    public var warmupSteps: Int
    public var warmupLearningRate: Float
    public var warmupBatch: Int
    public var warmupTargetAccuracy: Double
    /// Sequences per forward/backward (gradients accumulate over micro-batches): bounds the learner's activations.
    public var microBatch: Int
    public var model: GPTConfig
    /// A Hugging Face model directory (gpt2, llama, qwen2) the run starts from; nil: a GPT initialised from `model`.
    public var modelPath: String?
    /// Chat template the prompts are rendered with (nil: bare prompts), and its optional system turn.
    public var chatTemplate: ChatTemplate?
    /// `prompt.template` as given (a built-in name or a template), published for the other roles.
    public var chatTemplateSource: String?
    public var systemPrompt: String?
    /// AdamW's moments, decoupled weight decay and the global gradient-norm clip (0: no clip).
    public var adamBeta1: Float
    public var adamBeta2: Float
    public var weightDecay: Float
    public var maxGradNorm: Float
    /// How verifier components become the scalar reward, and whether advantages are r - mean (no division by the std).
    public var rewardShaping: RewardShaping
    public var meanOnlyAdvantages: Bool
    /// Validators check groups between the scorers and the learner (docs/architecture.md, "Verifiable inference").
    public var validation: ValidationSettings

    public static let settings: [Setting] = [
        Setting("run.id", "default", "run id: names its queues and Redis keys ([A-Za-z0-9_-])"),
        Setting("run.async_level", "2", "k: a task for step s may be served by any policy version >= s - k (0 = on-policy)", range: .integers(0...64)),
        Setting("run.steps", "40", "learner steps (optimizer updates) of GRPO", range: .integers(1...1_000_000)),
        Setting("run.groups_per_step", "8", "rollout groups in each learner batch", range: .integers(1...4096)),
        Setting("run.seed", "1", "seed of task generation and model initialisation", range: .integers(0...Int.max)),
        Setting("run.eval_tasks", "200", "held-out tasks for accuracy before and after", range: .integers(1...100_000)),
        Setting("environment.name", "arithmetic", "arithmetic, reverse, sort, jsonl or code"),
        Setting("environment.digits", "2", "arithmetic: digits per operand", range: .integers(1...9)),
        Setting("environment.operands", "2", "arithmetic: operands per expression", range: .integers(2...8)),
        Setting("environment.operations", "add", "arithmetic: comma-separated add, subtract, multiply"),
        Setting("environment.dataset", "", "jsonl/code: dataset path"),
        Setting("environment.checker", "exact", "jsonl: exact, numeric or regex"),
        Setting("inference.group_size", "8", "G: completions per prompt", range: .integers(2...256)),
        Setting("inference.temperature", "1.0", "sampling temperature (0: greedy; otherwise at least \(RunConfig.lowestTemperature))", range: .reals(0...100)),
        Setting("inference.top_p", "1.0", "nucleus sampling mass", range: .reals(above: 0, through: 1)),
        Setting("inference.top_k", "0", "top-k sampling (0 = off)", range: .integers(0...1_000_000)),
        Setting("inference.max_new_tokens", "8", "completion length limit", range: .integers(1...4096)),
        Setting("trainer.learning_rate", "0.001", "GRPO learning rate", range: .reals(above: 0, through: 1)),
        Setting("trainer.epsilon_low", "0.2", "ratio clip below 1", range: .reals(0...1)),
        Setting("trainer.epsilon_high", "0.2", "ratio clip above 1", range: .reals(0...10)),
        Setting("trainer.delta", "4", "INTELLECT-2 cap on the ratio when the advantage is negative", range: .reals(1...100)),
        Setting("trainer.kl_coefficient", "0", "k3 KL penalty against the reference policy, frozen when the run starts (after the warm start)", range: .reals(0...100)),
        Setting("trainer.adam_beta1", "0.9", "AdamW first-moment decay", range: .reals(from: 0, below: 1)),
        Setting("trainer.adam_beta2", "0.999", "AdamW second-moment decay", range: .reals(from: 0, below: 1)),
        Setting("trainer.weight_decay", "0", "AdamW decoupled weight decay", range: .reals(0...1)),
        Setting("trainer.max_grad_norm", "1", "clip the global gradient norm to this (0: no clip)", range: .reals(0...1_000_000)),
        Setting("trainer.entropy_coefficient", "0", "entropy bonus", range: .reals(0...100)),
        Setting("trainer.warmup_steps", "0", "supervised warm-start steps before GRPO", range: .integers(0...1_000_000)),
        Setting("trainer.warmup_learning_rate", "0.003", "warm-start learning rate", range: .reals(above: 0, through: 1)),
        Setting("trainer.warmup_batch", "32", "warm-start examples per step", range: .integers(1...65_536)),
        Setting("trainer.warmup_target_accuracy", "0", "stop the warm start early once a probe set (not held-out) reaches this accuracy (0: never)", range: .reals(0...1)),
        Setting("trainer.micro_batch", "64", "sequences per forward/backward; gradients accumulate into one step (bounds the learner's activation memory)", range: .integers(1...65_536)),
        Setting("model.layers", "2", "transformer blocks", range: .integers(1...64)),
        Setting("model.heads", "4", "attention heads", range: .integers(1...64)),
        Setting("model.channels", "128", "embedding width", range: .integers(8...4096)),
        Setting("model.context", "64", "context length", range: .integers(8...4096)),
        Setting("model.path", "", "start from this Hugging Face model directory (config.json, safetensors, tokenizer.json); empty: a new GPT of the shape above with the byte tokenizer"),
        Setting("prompt.template", "", "chat template for prompts: chatml, llama3, or a template of your own (docs/models.md); empty: bare prompts"),
        Setting("prompt.system", "", "system turn before each prompt (with a template)"),
        Setting("reward.correctness_weight", "1", "weight of the verifier's correctness component", range: .reals(0...100)),
        Setting("reward.format_weight", "0", "weight of the verifier's format component", range: .reals(0...100)),
        Setting("reward.target_lengths", "", "length control: comma-separated target lengths in tokens, one drawn per task and written into its prompt (empty: off)"),
        Setting("reward.length_penalty_per_token", "0.001", "length control: reward lost per token of distance from the target", range: .reals(0...100)),
        Setting("reward.max_length_penalty", "0.5", "length control: the most reward a completion's length can cost", range: .reals(0...100)),
        Setting("reward.length_instruction", "Think for {target} tokens.\n", "length control: written in front of the prompt; {target} becomes the target"),
        Setting("reward.mean_only", "false", "advantages as r - mean (no division by the group's standard deviation)"),
        Setting("validation.enabled", "false", "validators (tributary-validator) stand between the scorers and the learner: the learner trains only on groups they passed or did not sample"),
        Setting("validation.fraction", "0.1", "p: the share of groups a validator re-runs through the claimed policy (a worker on probation: every group); live",
                range: .reals(0...1)),
        Setting("validation.probation_failures", "1", "failed checks that put a worker key on probation (every group checked)", range: .integers(1...1000)),
        Setting("validation.ban_failures", "2", "failed checks that ban a worker key", range: .integers(1...1000)),
        Setting("validation.proof_thresholds", "float32",
                "when a hidden-state proof chunk passes: float32 (≥ 124 of 128 exponents, mean mantissa error ≤ 0.05, median 0: workers and validators compute in float32, as Tributary's do) or toploc (≥ 90, ≤ 10, ≤ 8: TOPLOC's, for bf16 GPU workers)"),
    ]

    /// The smallest temperature above 0 (greedy) that sampling takes.
    public static let lowestTemperature: Float = 0.01

    /// Keys `tributary set` may change during a run.
    public static let liveKeys: Set<String> = ["trainer.learning_rate", "run.async_level", "inference.group_size", "validation.fraction"]

    /// Refuses a live change of `key`, naming it and why.
    public static func checkLive(key: String) throws {
        if samplingKeys.contains(key) {
            throw SettingsError(problem: "'\(key)' cannot change during a run: the trainer scores each group under the distribution that sampled it, and groups in flight were sampled with the current value")
        }
        guard liveKeys.contains(key) else {
            throw SettingsError(problem: "'\(key)' cannot change during a run (live: \(liveKeys.sorted().joined(separator: ", ")))")
        }
    }

    /// Keys refused during a run with a reason of their own: the trainer's log-probs use the distribution that sampled
    /// the groups in flight, so a change would make their recorded behaviour log-probs inconsistent with it.
    public static let samplingKeys: Set<String> = ["inference.temperature", "inference.top_p", "inference.top_k"]

    public init(_ settings: Settings) throws {
        runID = try settings.string("run.id")
        guard !runID.isEmpty, runID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw SettingsError(problem: "setting 'run.id' = '\(runID)' must be letters, digits, - or _")
        }
        asyncLevel = try settings.int("run.async_level")
        steps = try settings.int("run.steps")
        groupsPerStep = try settings.int("run.groups_per_step")
        seed = UInt64(try settings.int("run.seed"))
        evalTasks = try settings.int("run.eval_tasks")
        let name = try settings.string("environment.name")
        environment = EnvironmentSpec(name: name, digits: try settings.int("environment.digits"),
                                      operands: try settings.int("environment.operands"),
                                      operations: try settings.list("environment.operations"),
                                      datasetPath: try settings.string("environment.dataset").isEmpty ? nil : try settings.string("environment.dataset"),
                                      checker: try settings.string("environment.checker"))
        groupSize = try settings.int("inference.group_size")
        temperature = try settings.float("inference.temperature")
        topP = try settings.float("inference.top_p")
        topK = try settings.int("inference.top_k")
        maxNewTokens = try settings.int("inference.max_new_tokens")
        learningRate = try settings.float("trainer.learning_rate")
        epsilonLow = try settings.double("trainer.epsilon_low")
        epsilonHigh = try settings.double("trainer.epsilon_high")
        delta = try settings.double("trainer.delta")
        klCoefficient = try settings.double("trainer.kl_coefficient")
        entropyCoefficient = try settings.double("trainer.entropy_coefficient")
        warmupSteps = try settings.int("trainer.warmup_steps")
        warmupLearningRate = try settings.float("trainer.warmup_learning_rate")
        warmupBatch = try settings.int("trainer.warmup_batch")
        warmupTargetAccuracy = try settings.double("trainer.warmup_target_accuracy")
        microBatch = try settings.int("trainer.micro_batch")
        model = GPTConfig(contextLength: try settings.int("model.context"), layers: try settings.int("model.layers"),
                          heads: try settings.int("model.heads"), channels: try settings.int("model.channels"))
        try model.validate()
        let path = try settings.string("model.path")
        modelPath = path.isEmpty ? nil : path
        let template = try settings.string("prompt.template")
        chatTemplateSource = template.isEmpty ? nil : template
        do { chatTemplate = template.isEmpty ? nil : try ChatTemplate.resolve(template) } catch {
            throw SettingsError(problem: "setting 'prompt.template': \(error)")
        }
        let system = try settings.string("prompt.system")
        systemPrompt = system.isEmpty ? nil : system
        if systemPrompt != nil && chatTemplate == nil {
            throw SettingsError(problem: "setting 'prompt.system' needs a 'prompt.template' to put the system turn in")
        }
        try EnvironmentFactory.validate(environment)
        // 1 / temperature scales the logits: a tiny nonzero temperature overflows them to inf
        guard temperature == 0 || temperature >= Self.lowestTemperature else {
            throw SettingsError(problem: "setting 'inference.temperature' = \(try settings.string("inference.temperature")) is below \(Self.lowestTemperature): 0 samples greedily, otherwise at least \(Self.lowestTemperature) (in [0, 100])")
        }
        adamBeta1 = try settings.float("trainer.adam_beta1")
        adamBeta2 = try settings.float("trainer.adam_beta2")
        weightDecay = try settings.float("trainer.weight_decay")
        maxGradNorm = try settings.float("trainer.max_grad_norm")
        var targets: [Int] = []
        for item in try settings.list("reward.target_lengths") {
            guard let target = Int(item), (1...65_536).contains(target) else {
                throw SettingsError(problem: "setting 'reward.target_lengths': '\(item)' is not a number of tokens in [1, 65536]")
            }
            targets.append(target)
        }
        rewardShaping = RewardShaping(correctnessWeight: try settings.double("reward.correctness_weight"), formatWeight: try settings.double("reward.format_weight"),
                                      lengthPenaltyPerToken: try settings.double("reward.length_penalty_per_token"),
                                      maxLengthPenalty: try settings.double("reward.max_length_penalty"), targetLengths: targets,
                                      lengthInstruction: try settings.string("reward.length_instruction"))
        meanOnlyAdvantages = try settings.bool("reward.mean_only")
        validation = ValidationSettings(enabled: try settings.bool("validation.enabled"), fraction: try settings.double("validation.fraction"),
                                        probationFailures: try settings.int("validation.probation_failures"),
                                        banFailures: try settings.int("validation.ban_failures"),
                                        proofThresholds: try {
                                            let name = try settings.string("validation.proof_thresholds")
                                            guard let rule = ValidationSettings.ProofRule(rawValue: name) else {
                                                throw SettingsError(problem: "setting 'validation.proof_thresholds' = '\(name)' must be float32 or toploc")
                                            }
                                            return rule
                                        }())
        guard validation.banFailures >= validation.probationFailures else {
            throw SettingsError(problem: "setting 'validation.ban_failures' = \(validation.banFailures) is below 'validation.probation_failures' = \(validation.probationFailures): a worker is put on probation before it is banned")
        }
    }

    public var samplingOptions: SamplingOptions {
        SamplingOptions(temperature: temperature, topP: topP, topK: topK, maxNewTokens: maxNewTokens, seed: seed)
    }

    public var grpo: GRPOConfig {
        GRPOConfig(epsilonLow: epsilonLow, epsilonHigh: epsilonHigh, delta: delta, klCoefficient: klCoefficient, entropyCoefficient: entropyCoefficient)
    }

    /// AdamW's settings from the run's betas, weight decay and clip (checked when the config is read).
    public var optimizerSettings: AdamWSettings {
        AdamWSettings(beta1: adamBeta1, beta2: adamBeta2, weightDecay: weightDecay, maxGradNorm: maxGradNorm)
    }

    public func makeOptimizer(for model: any Policy) throws -> AdamW {
        try AdamW(model: model, learningRate: learningRate, settings: optimizerSettings)
    }

    /// The trainer's knobs: its log-probs (new and reference) are taken under the distribution the workers sample from.
    public var trainerConfig: GRPOTrainerConfig {
        GRPOTrainerConfig(learningRate: learningRate, loss: grpo, microBatchSize: microBatch,
                          sampling: TokenDistribution(temperature: temperature, topK: topK, topP: topP))
    }

    /// The supervised warm start before GRPO.
    public var warmStartPlan: WarmStartPlan {
        WarmStartPlan(maxSteps: warmupSteps, batch: warmupBatch, learningRate: warmupLearningRate, targetAccuracy: warmupTargetAccuracy,
                      evalEvery: 25, maxNewTokens: maxNewTokens, microBatchSize: microBatch)
    }

    /// The policy the run starts from: the Hugging Face model at `modelPath`, or a new GPT of shape `model`.
    public func makePolicy() throws -> any Policy {
        guard let modelPath else { return GPT(config: model, seed: seed) }
        let policy: any Policy
        do {
            policy = try HuggingFaceCheckpoint.load(from: URL(fileURLWithPath: modelPath))
        } catch {
            throw SettingsError(problem: "setting 'model.path' = '\(modelPath)': \(error)")
        }
        // GPT's bos and eos are the byte tokenizer's: a BPE GPT-2 would end completions at an ordinary token
        if policy.architecture == "gpt2", policy.vocabSize != ByteTokenizer.vocabSize {
            throw SettingsError(problem: "setting 'model.path' = '\(modelPath)': a gpt2 model with a \(policy.vocabSize)-token vocabulary cannot be trained yet (GPT-2 runs use the byte tokenizer; bring a llama or qwen2 model)")
        }
        return policy
    }

    /// The tokenizer.json of `modelPath`; nil for the byte tokenizer (a new GPT, or a byte-level gpt2 directory, which
    /// `makePolicy` only accepts with the byte vocabulary).
    public func tokenizerJSON(for policy: any Policy) throws -> [UInt8]? {
        guard let modelPath, policy.architecture != "gpt2" else { return nil }
        let url = URL(fileURLWithPath: modelPath).appendingPathComponent("tokenizer.json")
        guard let data = try? Data(contentsOf: url) else {
            throw SettingsError(problem: "setting 'model.path' = '\(modelPath)': no readable tokenizer.json at \(url.path)")
        }
        return [UInt8](data)
    }

    /// How prompts and answers become tokens in this run: the byte tokenizer, or the model's tokenizer.json; the
    /// run's template; the policy's eos.
    public func promptFormat(tokenizerJSON: [UInt8]?, eos: Int32) throws -> PromptFormat {
        guard let tokenizerJSON else {
            return PromptFormat(tokenizer: ByteTokenizer(), template: chatTemplate, systemPrompt: systemPrompt, eos: eos)
        }
        return PromptFormat(tokenizer: try HFTokenizer(json: Data(tokenizerJSON)), template: chatTemplate, systemPrompt: systemPrompt, eos: eos)
    }

    /// Task metadata key of the target length the learner drew for a task (length control).
    public static let targetLengthMetadataKey = "target_length"

    /// Held-out tasks: a seed no training task uses.
    public var evalSeed: UInt64 { seed &+ 0x5EED_0000_0000 }
}

/// How validators sample and what a worker's failed checks cost it.
public struct ValidationSettings: Sendable, Equatable {
    public var enabled: Bool
    /// Share of groups checked, chosen by the validator at random (a worker cannot tell which).
    public var fraction: Double
    /// Failed checks after which every group of the key is checked.
    public var probationFailures: Int
    /// Failed checks after which the key is banned.
    public var banFailures: Int
    /// Which proof thresholds a chunk must meet.
    public var proofThresholds: ProofRule

    /// `validation.proof_thresholds`: float32 (workers and validators compute in float32) or TOPLOC's, for bf16 GPUs.
    public enum ProofRule: String, Sendable {
        case float32, toploc
    }

    public init(enabled: Bool, fraction: Double, probationFailures: Int, banFailures: Int, proofThresholds: ProofRule = .float32) {
        self.enabled = enabled
        self.fraction = fraction
        self.probationFailures = probationFailures
        self.banFailures = banFailures
        self.proofThresholds = proofThresholds
    }
}
