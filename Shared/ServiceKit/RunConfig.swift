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

    public static let settings: [Setting] = [
        Setting("run.id", "default", "run id: names its queues and Redis keys ([A-Za-z0-9_-])"),
        Setting("run.async_level", "2", "k: a task for step s may be served by any policy version >= s - k (0 = on-policy)"),
        Setting("run.steps", "40", "learner steps (optimizer updates) of GRPO"),
        Setting("run.groups_per_step", "8", "rollout groups in each learner batch"),
        Setting("run.seed", "1", "seed of task generation and model initialisation"),
        Setting("run.eval_tasks", "200", "held-out tasks for accuracy before and after"),
        Setting("environment.name", "arithmetic", "arithmetic, reverse, sort, jsonl or code"),
        Setting("environment.digits", "2", "arithmetic: digits per operand"),
        Setting("environment.operands", "2", "arithmetic: operands per expression"),
        Setting("environment.operations", "add", "arithmetic: comma-separated add, subtract, multiply"),
        Setting("environment.dataset", "", "jsonl/code: dataset path"),
        Setting("environment.checker", "exact", "jsonl: exact, numeric or regex"),
        Setting("inference.group_size", "8", "G: completions per prompt"),
        Setting("inference.temperature", "1.0", "sampling temperature"),
        Setting("inference.top_p", "1.0", "nucleus sampling mass"),
        Setting("inference.top_k", "0", "top-k sampling (0 = off)"),
        Setting("inference.max_new_tokens", "8", "completion length limit"),
        Setting("trainer.learning_rate", "0.001", "GRPO learning rate"),
        Setting("trainer.epsilon_low", "0.2", "ratio clip below 1"),
        Setting("trainer.epsilon_high", "0.2", "ratio clip above 1"),
        Setting("trainer.delta", "4", "INTELLECT-2 cap on the ratio when the advantage is negative"),
        Setting("trainer.kl_coefficient", "0", "KL penalty against the initial policy (k3)"),
        Setting("trainer.entropy_coefficient", "0", "entropy bonus"),
        Setting("trainer.warmup_steps", "0", "supervised warm-start steps before GRPO"),
        Setting("trainer.warmup_learning_rate", "0.003", "warm-start learning rate"),
        Setting("trainer.warmup_batch", "32", "warm-start examples per step"),
        Setting("trainer.warmup_target_accuracy", "0", "stop the warm start early once a probe set (not held-out) reaches this accuracy (0: never)"),
        Setting("trainer.micro_batch", "64", "sequences per forward/backward; gradients accumulate into one step (bounds the learner's activation memory)"),
        Setting("model.layers", "2", "transformer blocks"),
        Setting("model.heads", "4", "attention heads"),
        Setting("model.channels", "128", "embedding width"),
        Setting("model.context", "64", "context length"),
        Setting("model.path", "", "start from this Hugging Face model directory (config.json, safetensors, tokenizer.json); empty: a new GPT of the shape above with the byte tokenizer"),
        Setting("prompt.template", "", "chat template for prompts: chatml, llama3, or a template of your own (docs/models.md); empty: bare prompts"),
        Setting("prompt.system", "", "system turn before each prompt (with a template)"),
    ]

    /// Keys `tributary set` may change during a run.
    public static let liveKeys: Set<String> = ["trainer.learning_rate", "run.async_level", "inference.temperature", "inference.group_size"]

    public init(_ settings: Settings) throws {
        runID = try settings.string("run.id")
        guard !runID.isEmpty, runID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw SettingsError(problem: "setting 'run.id' = '\(runID)' must be letters, digits, - or _")
        }
        asyncLevel = try settings.int("run.async_level", in: 0...64)
        steps = try settings.int("run.steps", in: 1...1_000_000)
        groupsPerStep = try settings.int("run.groups_per_step", in: 1...4096)
        seed = UInt64(try settings.int("run.seed", in: 0...Int.max))
        evalTasks = try settings.int("run.eval_tasks", in: 1...100_000)
        let name = try settings.string("environment.name")
        environment = EnvironmentSpec(name: name, digits: try settings.int("environment.digits", in: 1...9),
                                      operands: try settings.int("environment.operands", in: 2...8),
                                      operations: try settings.list("environment.operations"),
                                      datasetPath: try settings.string("environment.dataset").isEmpty ? nil : try settings.string("environment.dataset"),
                                      checker: try settings.string("environment.checker"))
        groupSize = try settings.int("inference.group_size", in: 2...256)
        temperature = try settings.float("inference.temperature")
        topP = try settings.float("inference.top_p")
        topK = try settings.int("inference.top_k", in: 0...1_000_000)
        maxNewTokens = try settings.int("inference.max_new_tokens", in: 1...4096)
        learningRate = try settings.float("trainer.learning_rate")
        epsilonLow = try settings.double("trainer.epsilon_low")
        epsilonHigh = try settings.double("trainer.epsilon_high")
        delta = try settings.double("trainer.delta")
        klCoefficient = try settings.double("trainer.kl_coefficient")
        entropyCoefficient = try settings.double("trainer.entropy_coefficient")
        warmupSteps = try settings.int("trainer.warmup_steps", in: 0...1_000_000)
        warmupLearningRate = try settings.float("trainer.warmup_learning_rate")
        warmupBatch = try settings.int("trainer.warmup_batch", in: 1...65_536)
        warmupTargetAccuracy = try settings.double("trainer.warmup_target_accuracy")
        microBatch = try settings.int("trainer.micro_batch", in: 1...65_536)
        model = GPTConfig(contextLength: try settings.int("model.context", in: 8...4096), layers: try settings.int("model.layers", in: 1...64),
                          heads: try settings.int("model.heads", in: 1...64), channels: try settings.int("model.channels", in: 8...4096))
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
        _ = try EnvironmentFactory.make(environment)
        guard temperature >= 0 else { throw SettingsError(problem: "setting 'inference.temperature' must be >= 0") }
    }

    public var samplingOptions: SamplingOptions {
        SamplingOptions(temperature: temperature, topP: topP, topK: topK, maxNewTokens: maxNewTokens, seed: seed)
    }

    public var grpo: GRPOConfig {
        GRPOConfig(epsilonLow: epsilonLow, epsilonHigh: epsilonHigh, delta: delta, klCoefficient: klCoefficient, entropyCoefficient: entropyCoefficient)
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

    /// Held-out tasks: a seed no training task uses.
    public var evalSeed: UInt64 { seed &+ 0x5EED_0000_0000 }
}
