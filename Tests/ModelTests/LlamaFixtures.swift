import Foundation
@testable import Model

/// The Hugging Face fixtures under Tests/Fixtures/models, built by scripts/fixtures/llama_fixtures.py: tiny random
/// LlamaForCausalLM (GQA, tied, Llama 3 rope scaling), Qwen2ForCausalLM (q/k/v biases, untied) and GPT2LMHeadModel,
/// each in float32, bfloat16 and float16, with transformers' float32 logits, log-probs and greedy continuations.
enum LlamaFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/models")
    static let architectures = ["llama", "qwen2", "gpt2"]
    static let dtypes = ["float32", "bfloat16", "float16"]

    struct Greedy: Decodable {
        var prompt: [Int32]
        var tokens: [Int32]
        /// Top-1 minus top-2 logit at each greedy step, as transformers computed them.
        var margins: [Float]
    }

    struct DTypeEntry: Decodable {
        var dir: String
        var sharded: Bool
        var logprobs: [[Double]]
        var greedy: [Greedy]
    }

    struct ModelEntry: Decodable {
        var sequences: [[Int32]]
        var dtypes: [String: DTypeEntry]
    }

    struct Manifest: Decodable {
        var models: [String: ModelEntry]
    }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: root.appendingPathComponent("manifest.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    static func directory(_ arch: String, _ dtype: String) -> URL {
        root.appendingPathComponent(manifest.models[arch]!.dtypes[dtype]!.dir)
    }

    /// transformers' logits (T,V) for fixture sequence i of the checkpoint in (arch, dtype).
    static func referenceLogits(_ arch: String, _ dtype: String) throws -> [[Float]] {
        let bytes = [UInt8](try Data(contentsOf: directory(arch, dtype).appendingPathComponent("reference_logits.safetensors")))
        let file = try Safetensors.parse(bytes)
        return try manifest.models[arch]!.sequences.indices.map { i in
            let info = file.tensors["logits.\(i)"]!
            var out = [Float](repeating: 0, count: info.shape.reduce(1, *))
            try out.withUnsafeMutableBufferPointer {
                try Safetensors.read("logits.\(i)", from: file, bytes: bytes, expectedShape: info.shape, into: $0.baseAddress!)
            }
            return out
        }
    }
}

/// Largest |a - b| / max(|a|, |b|, floor) and largest |a - b| over the pairs.
func relativeAndAbsoluteError(_ a: [Float], _ b: [Float], floor: Float) -> (relative: Float, absolute: Float) {
    var rel: Float = 0, abs_: Float = 0
    for (x, y) in zip(a, b) {
        let d = abs(x - y)
        rel = max(rel, d / max(abs(x), abs(y), floor))
        abs_ = max(abs_, d)
    }
    return (rel, abs_)
}

/// A small Llama config for unit tests (GQA 4:2, head_dim 8, untied head, q/k/v biases when asked).
func tinyLlamaConfig(bias: Bool = false, tied: Bool = false, scaling: Llama3RopeScaling? = nil) -> LlamaConfig {
    LlamaConfig(modelType: bias ? "qwen2" : "llama", vocabSize: 23, contextLength: 24, layers: 2, channels: 16, intermediateSize: 24,
                heads: 4, kvHeads: 2, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: scaling, tiedEmbeddings: tied,
                qkvBias: bias, bosToken: 1, eosToken: 2)
}

/// A model whose weights are larger than the 0.02 init, so logits and gradients are well above float noise.
func noisyLlama(_ config: LlamaConfig, seed: UInt64, scale: Float = 0.3) -> Llama {
    let model = Llama(config: config, seed: seed)
    model.withParameters { p, _ in
        let noise = randomFloats(p.count, seed: seed &+ 100, scale: scale)
        for i in 0..<p.count { p[i] += noise[i] }
    }
    return model
}
