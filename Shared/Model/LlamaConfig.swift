import Foundation

/// Shape of a Llama-family model (Llama 2/3, Qwen2, SmolLM2), as Hugging Face's config.json gives it.
public struct LlamaConfig: Sendable, Codable, Equatable, Hashable {
    /// "llama" or "qwen2": decides the config.json written back and the architecture name.
    public var modelType: String
    public var vocabSize: Int
    /// max_position_embeddings: the longest sequence the model is used at.
    public var contextLength: Int
    public var layers: Int
    public var channels: Int          // hidden_size
    public var intermediateSize: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: Llama3RopeScaling?
    public var tiedEmbeddings: Bool
    /// q, k and v projections have biases (Qwen2 always; a Llama with attention_bias is refused: it biases o_proj too).
    public var qkvBias: Bool
    public var bosToken: Int32
    public var eosToken: Int32

    public init(modelType: String = "llama", vocabSize: Int, contextLength: Int, layers: Int, channels: Int, intermediateSize: Int,
                heads: Int, kvHeads: Int, headDim: Int? = nil, rmsNormEps: Float = 1e-5, ropeTheta: Double = 10000,
                ropeScaling: Llama3RopeScaling? = nil, tiedEmbeddings: Bool = true, qkvBias: Bool = false,
                bosToken: Int32 = 1, eosToken: Int32 = 2) {
        self.modelType = modelType
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.layers = layers
        self.channels = channels
        self.intermediateSize = intermediateSize
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim ?? (heads > 0 ? channels / heads : 0)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tiedEmbeddings = tiedEmbeddings
        self.qkvBias = qkvBias
        self.bosToken = bosToken
        self.eosToken = eosToken
    }

    /// Width of the fused q,k,v projection: NH + 2 NKV heads.
    public var qkvWidth: Int { (heads + 2 * kvHeads) * headDim }
    /// Query heads per key/value head.
    public var groupSize: Int { heads / kvHeads }

    /// Throws `LlamaConfigError` naming the first field that cannot work.
    public func validate() throws {
        func need(_ ok: Bool, _ field: String, _ reason: @autoclosure () -> String) throws {
            if !ok { throw LlamaConfigError(field: field, reason: reason()) }
        }
        try need(modelType == "llama" || modelType == "qwen2", "model_type", "\(modelType) is not llama or qwen2")
        try need(vocabSize >= 1, "vocab_size", "must be at least 1, got \(vocabSize)")
        try need(contextLength >= 1, "max_position_embeddings", "must be at least 1, got \(contextLength)")
        try need(layers >= 1, "num_hidden_layers", "must be at least 1, got \(layers)")
        try need(channels >= 1, "hidden_size", "must be at least 1, got \(channels)")
        try need(intermediateSize >= 1, "intermediate_size", "must be at least 1, got \(intermediateSize)")
        try need(heads >= 1, "num_attention_heads", "must be at least 1, got \(heads)")
        try need(kvHeads >= 1 && heads % kvHeads == 0, "num_key_value_heads",
                 "\(kvHeads) must be at least 1 and divide num_attention_heads (\(heads))")
        try need(headDim >= 2 && headDim % 2 == 0, "head_dim", "must be even and at least 2, got \(headDim)")
        try need(rmsNormEps > 0, "rms_norm_eps", "must be positive, got \(rmsNormEps)")
        try need(ropeTheta > 0, "rope_theta", "must be positive, got \(ropeTheta)")
        try need(bosToken >= 0 && Int(bosToken) < vocabSize, "bos_token_id", "\(bosToken) is outside the vocabulary (\(vocabSize))")
        try need(eosToken >= 0 && Int(eosToken) < vocabSize, "eos_token_id", "\(eosToken) is outside the vocabulary (\(vocabSize))")
        if let s = ropeScaling {
            try need(s.factor >= 1, "rope_scaling.factor", "must be at least 1, got \(s.factor)")
            try need(s.highFreqFactor > s.lowFreqFactor, "rope_scaling.high_freq_factor",
                     "\(s.highFreqFactor) must exceed low_freq_factor \(s.lowFreqFactor)")
            try need(s.originalContextLength >= 1, "rope_scaling.original_max_position_embeddings", "must be at least 1")
        }
    }
}

/// Llama 3's frequency-dependent rope scaling ("rope_type": "llama3").
public struct Llama3RopeScaling: Sendable, Codable, Equatable, Hashable {
    public var factor: Double
    public var lowFreqFactor: Double
    public var highFreqFactor: Double
    public var originalContextLength: Int

    public init(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalContextLength: Int) {
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalContextLength = originalContextLength
    }
}

/// A configuration field that cannot work or is not implemented, and why (fields under their config.json names).
public struct LlamaConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public var description: String { "config.json \(field): \(reason)" }
}

// MARK: config.json

/// The architectures a Hugging Face config.json can describe here.
public enum HuggingFaceConfig: Sendable, Equatable {
    case gpt2(GPTConfig)
    case llama(LlamaConfig)

    /// Reads config.json; refuses, naming the field, whatever this implementation would get wrong.
    public static func parse(_ data: Data) throws -> HuggingFaceConfig {
        guard let dict = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw LlamaConfigError(field: "config.json", reason: "not a JSON object")
        }
        guard let type = dict["model_type"] as? String else { throw LlamaConfigError(field: "model_type", reason: "missing") }
        switch type {
        case "gpt2": return .gpt2(try parseGPT2(dict))
        case "llama", "qwen2": return .llama(try parseLlama(dict, modelType: type))
        default: throw LlamaConfigError(field: "model_type", reason: "\(type) is not implemented (llama, qwen2, gpt2 are)")
        }
    }

    static func parseGPT2(_ d: [String: Any]) throws -> GPTConfig {
        let j = JSONFields(d)
        if let act = d["activation_function"] as? String, act != "gelu_new" && act != "gelu_pytorch_tanh" {
            throw LlamaConfigError(field: "activation_function", reason: "\(act) is not implemented (gelu_new is)")
        }
        if let inner = d["n_inner"], !(inner is NSNull), (inner as? NSNumber)?.intValue != 4 * (try j.int("n_embd")) {
            throw LlamaConfigError(field: "n_inner", reason: "\(inner) is not implemented (only 4 * n_embd)")
        }
        if let eps = (d["layer_norm_epsilon"] as? NSNumber)?.doubleValue, abs(eps - 1e-5) > 1e-12 {
            throw LlamaConfigError(field: "layer_norm_epsilon", reason: "\(eps) is not implemented (only 1e-5)")
        }
        if let tied = d["tie_word_embeddings"] as? Bool, !tied {
            throw LlamaConfigError(field: "tie_word_embeddings", reason: "false is not implemented for gpt2")
        }
        let c = GPTConfig(vocabSize: try j.int("vocab_size"), contextLength: try j.int("n_positions"), layers: try j.int("n_layer"),
                          heads: try j.int("n_head"), channels: try j.int("n_embd"))
        do { try c.validate() } catch let e as GPTConfigError { throw LlamaConfigError(field: e.field, reason: e.reason) }
        return c
    }

    static func parseLlama(_ d: [String: Any], modelType: String) throws -> LlamaConfig {
        let j = JSONFields(d)
        for moe in ["num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size"] where j.present(moe) {
            if moe == "num_experts" || moe == "num_local_experts", let n = (d[moe] as? NSNumber)?.intValue, n <= 1 { continue }
            throw LlamaConfigError(field: moe, reason: "mixture of experts is not implemented")
        }
        if let act = d["hidden_act"] as? String, act != "silu" {
            throw LlamaConfigError(field: "hidden_act", reason: "\(act) is not implemented (silu is)")
        }
        if let sliding = d["use_sliding_window"] as? Bool, sliding {
            throw LlamaConfigError(field: "use_sliding_window", reason: "sliding-window attention is not implemented")
        }
        if let types = d["layer_types"] as? [String], let other = types.first(where: { $0 != "full_attention" }) {
            throw LlamaConfigError(field: "layer_types", reason: "\(other) is not implemented (full_attention is)")
        }
        if let tp = (d["pretraining_tp"] as? NSNumber)?.intValue, tp != 1 {
            throw LlamaConfigError(field: "pretraining_tp", reason: "\(tp) is not implemented (1 is)")
        }
        if modelType == "llama", let mlpBias = d["mlp_bias"] as? Bool, mlpBias {
            throw LlamaConfigError(field: "mlp_bias", reason: "MLP biases are not implemented")
        }
        // rope: transformers 4 writes rope_theta + rope_scaling, transformers 5 a rope_parameters object (which wins)
        var theta = (d["rope_theta"] as? NSNumber)?.doubleValue ?? 10000.0
        var scaling: [String: Any]? = nil
        var scalingField = "rope_scaling"
        if let params = d["rope_parameters"] as? [String: Any] {
            scalingField = "rope_parameters"
            if let t = (params["rope_theta"] as? NSNumber)?.doubleValue { theta = t }
            scaling = params
        } else if let s = d["rope_scaling"], !(s is NSNull) {
            guard let s = s as? [String: Any] else { throw LlamaConfigError(field: "rope_scaling", reason: "is not an object") }
            scaling = s
        }
        var ropeScaling: Llama3RopeScaling? = nil
        if let s = scaling {
            let type = (s["rope_type"] as? String) ?? (s["type"] as? String) ?? "default"
            switch type {
            case "default": break
            case "llama3":
                func num(_ k: String) throws -> Double {
                    guard let v = (s[k] as? NSNumber)?.doubleValue else {
                        throw LlamaConfigError(field: "\(scalingField).\(k)", reason: "missing for rope_type llama3")
                    }
                    return v
                }
                ropeScaling = Llama3RopeScaling(factor: try num("factor"), lowFreqFactor: try num("low_freq_factor"),
                                                highFreqFactor: try num("high_freq_factor"),
                                                originalContextLength: Int(try num("original_max_position_embeddings")))
            default:
                throw LlamaConfigError(field: "\(scalingField).rope_type", reason: "\(type) is not implemented (default and llama3 are)")
            }
        }
        let heads = try j.int("num_attention_heads")
        let hidden = try j.int("hidden_size")
        let headDim = j.present("head_dim") ? try j.int("head_dim") : hidden / max(heads, 1)
        // Llama's attention_bias biases o_proj as well as q, k and v; only Qwen2's q/k/v biases are implemented
        if modelType == "llama", (d["attention_bias"] as? Bool) == true {
            throw LlamaConfigError(field: "attention_bias", reason: "true is not implemented for llama (it also biases o_proj)")
        }
        let bias = modelType == "qwen2"
        let c = LlamaConfig(
            modelType: modelType, vocabSize: try j.int("vocab_size"), contextLength: try j.int("max_position_embeddings"),
            layers: try j.int("num_hidden_layers"), channels: hidden, intermediateSize: try j.int("intermediate_size"),
            heads: heads, kvHeads: j.present("num_key_value_heads") ? try j.int("num_key_value_heads") : heads, headDim: headDim,
            rmsNormEps: Float(j.double("rms_norm_eps") ?? 1e-6), ropeTheta: theta, ropeScaling: ropeScaling,
            tiedEmbeddings: (d["tie_word_embeddings"] as? Bool) ?? false,
            qkvBias: bias, bosToken: Int32(try j.tokenID("bos_token_id", default: 1)), eosToken: Int32(try j.tokenID("eos_token_id", default: 2)))
        try c.validate()
        return c
    }

    /// config.json for a Llama-family model, with the keys transformers reads.
    public static func json(_ c: LlamaConfig, dtype: SafetensorsDType = .float32) throws -> Data {
        var dict: [String: Any] = [
            "model_type": c.modelType,
            "architectures": [c.modelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
            "vocab_size": c.vocabSize, "max_position_embeddings": c.contextLength, "hidden_size": c.channels,
            "intermediate_size": c.intermediateSize, "num_hidden_layers": c.layers, "num_attention_heads": c.heads,
            "num_key_value_heads": c.kvHeads, "head_dim": c.headDim, "rms_norm_eps": Double(c.rmsNormEps), "rope_theta": c.ropeTheta,
            "hidden_act": "silu", "tie_word_embeddings": c.tiedEmbeddings, "bos_token_id": Int(c.bosToken), "eos_token_id": Int(c.eosToken),
            "torch_dtype": dtype.torchName, "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": true,
        ]
        if let s = c.ropeScaling {
            dict["rope_scaling"] = ["rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.lowFreqFactor,
                                    "high_freq_factor": s.highFreqFactor, "original_max_position_embeddings": s.originalContextLength]
        } else {
            dict["rope_scaling"] = NSNull()
        }
        if c.modelType == "qwen2" {
            dict["use_sliding_window"] = false
        } else {
            dict["attention_bias"] = false
            dict["mlp_bias"] = false
        }
        return try JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys, .prettyPrinted])
    }
}

/// Typed reads of config.json fields that name the field when it is missing or of the wrong type.
private struct JSONFields {
    let d: [String: Any]
    init(_ d: [String: Any]) { self.d = d }

    func present(_ key: String) -> Bool { d[key] != nil && !(d[key] is NSNull) }

    func int(_ key: String) throws -> Int {
        guard let n = d[key] as? NSNumber else { throw LlamaConfigError(field: key, reason: "missing or not a number") }
        guard Double(n.intValue) == n.doubleValue else { throw LlamaConfigError(field: key, reason: "\(n) is not an integer") }
        return n.intValue
    }

    func double(_ key: String) -> Double? { (d[key] as? NSNumber)?.doubleValue }

    /// A token id, or the first of a list (Llama 3 lists several eos ids; the first ends a completion here).
    func tokenID(_ key: String, default def: Int) throws -> Int {
        guard present(key) else { return def }
        if let n = d[key] as? NSNumber { return n.intValue }
        if let list = d[key] as? [NSNumber], let first = list.first { return first.intValue }
        throw LlamaConfigError(field: key, reason: "not a token id or list of ids")
    }
}
