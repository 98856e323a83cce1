import Foundation

/// A checkpoint directory: model.safetensors + config.json (Hugging Face GPT-2 keys), and for resuming
/// optimizer.safetensors + trainer_state.json.
public enum Checkpoint {
    public static let modelFile = "model.safetensors"
    public static let configFile = "config.json"
    public static let optimizerFile = "optimizer.safetensors"
    public static let trainerStateFile = "trainer_state.json"

    /// Optimizer hyper-parameters and the step, beside the optimizer's moments.
    struct TrainerState: Codable {
        var step: Int
        var optimizer: OptimizerSettings?
    }

    struct OptimizerSettings: Codable {
        var learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
        var maxGradNorm: Float?
    }

    /// Writes every file atomically (write then rename); creates the directory.
    public static func save(model: GPT, optimizer: AdamW?, step: Int, to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(model.safetensorsBytes()).write(to: directory.appendingPathComponent(modelFile), options: .atomic)
        try huggingFaceConfig(model.config).write(to: directory.appendingPathComponent(configFile), options: .atomic)
        var state = TrainerState(step: step, optimizer: nil)
        if let o = optimizer {
            try Data(o.stateBytes()).write(to: directory.appendingPathComponent(optimizerFile), options: .atomic)
            state.optimizer = OptimizerSettings(learningRate: o.learningRate, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon,
                                                weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(state).write(to: directory.appendingPathComponent(trainerStateFile), options: .atomic)
    }

    /// Loads the model (config from config.json), and the optimizer when optimizer.safetensors is present.
    public static func load(from directory: URL) throws -> (model: GPT, optimizer: AdamW?, step: Int) {
        let configURL = directory.appendingPathComponent(configFile)
        guard let configData = try? Data(contentsOf: configURL) else { throw CheckpointError.missingFile(configURL.path) }
        let config = try parseHuggingFaceConfig(configData)
        let modelURL = directory.appendingPathComponent(modelFile)
        guard let modelData = try? Data(contentsOf: modelURL) else { throw CheckpointError.missingFile(modelURL.path) }
        let model = GPT(zeroedFor: config)  // loadWeights reads every parameter
        try model.loadWeights(safetensors: [UInt8](modelData))

        var step = 0, optimizer: AdamW? = nil
        let stateURL = directory.appendingPathComponent(trainerStateFile)
        if let stateData = try? Data(contentsOf: stateURL) {
            let state: TrainerState
            do { state = try JSONDecoder().decode(TrainerState.self, from: stateData) } catch {
                throw CheckpointError.badConfig("\(trainerStateFile): \(error)")
            }
            step = state.step
            let optURL = directory.appendingPathComponent(optimizerFile)
            if let s = state.optimizer {
                guard let optData = try? Data(contentsOf: optURL) else { throw CheckpointError.missingFile(optURL.path) }
                // a file's knobs are refused, not trapped on, when out of range
                do {
                    try AdamWSettings.check(beta1: s.beta1, beta2: s.beta2, epsilon: s.epsilon, weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm)
                } catch { throw CheckpointError.badConfig("\(trainerStateFile): \(error)") }
                let o = AdamW(model: model, learningRate: s.learningRate, beta1: s.beta1, beta2: s.beta2, epsilon: s.epsilon,
                              weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm)
                try o.loadState([UInt8](optData))
                optimizer = o
            }
        }
        return (model, optimizer, step)
    }

    /// config.json as Hugging Face's GPT2Config writes it.
    static func huggingFaceConfig(_ c: GPTConfig) throws -> Data {
        let dict: [String: Any] = [
            "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "vocab_size": c.vocabSize, "n_positions": c.contextLength, "n_ctx": c.contextLength,
            "n_embd": c.channels, "n_layer": c.layers, "n_head": c.heads, "n_inner": NSNull(),
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": true,
            "bos_token_id": Int(ByteTokenizer.bos), "eos_token_id": Int(ByteTokenizer.eos), "pad_token_id": Int(ByteTokenizer.pad),
            "torch_dtype": "float32",
        ]
        return try JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys, .prettyPrinted])
    }

    static func parseHuggingFaceConfig(_ data: Data) throws -> GPTConfig {
        guard let dict = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError.badConfig("\(configFile) is not a JSON object")
        }
        func int(_ key: String) throws -> Int {
            guard let v = (dict[key] as? NSNumber)?.intValue else { throw CheckpointError.badConfig("\(configFile) lacks integer \(key)") }
            return v
        }
        let c = GPTConfig(vocabSize: try int("vocab_size"), contextLength: try int("n_positions"), layers: try int("n_layer"),
                          heads: try int("n_head"), channels: try int("n_embd"))
        do { try c.validate() } catch { throw CheckpointError.badConfig("\(error)") }
        return c
    }
}
