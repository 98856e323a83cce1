import Foundation

/// What the RL code and the services use of a language model, whatever its architecture (GPT-2 or the Llama family):
/// training log-probabilities and their gradients, batched sampling, the weights for optimisers and checkpoints.
/// Not thread-safe, like its models: one owner serialises every call.
public protocol Policy: AnyObject, Sendable {
    /// "gpt2", "llama" or "qwen2" (config.json's model_type).
    var architecture: String { get }
    /// Longest sequence (prompt and completion) the policy reads.
    var contextLength: Int { get }
    var vocabSize: Int { get }
    /// Fed for an empty prompt.
    var bosToken: Int32 { get }
    /// Ends a completion when sampling stops at eos.
    var eosToken: Int32 { get }
    var parameterCount: Int { get }
    /// Names and shapes of the parameter tensors, in the order of `withParameters`' flat buffers.
    var parameterTensors: [(name: String, shape: [Int])] { get }

    /// Training pass over (B,T) tokens and targets: log q(target) and entropy per position under `distribution` (the
    /// sampler's: tempered, top-k/top-p cut, renormalised), so they compare with sampled log-probs; a negative target gets 0.
    /// The gradient flows through the logits of the support; which tokens are in it counts as constant.
    func forward(tokens: [Int32], targets: [Int32], batch: Int, time: Int, distribution: TokenDistribution) -> (logprobs: [Float], entropy: [Float])
    /// Adds the gradients of sum(dLogprobs * mask * logprobs) from the last `forward`.
    func backward(dLogprobs: [Float], mask: [Float])
    func zeroGradients()
    /// Runs `body` with the flat parameters and gradients.
    func withParameters<R>(_ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R
    /// Logits (T,V) of one sequence by the full forward pass.
    func logits(tokens: [Int32]) -> [Float]
    /// Logits (B·T,V) and hidden states (B·T,C) of B sequences of T tokens (row-major (B,T)) from one full forward pass
    /// (what a validator re-runs). The hidden states are the final block's output: the residual stream before the
    /// final norm, row (b,t) being what produced position t's logits of sequence b (what `InferenceProof` commits to).
    /// Attention is causal, so a sequence's rows do not depend on what follows them: shorter sequences may be padded
    /// at the end with any token.
    func logitsAndHiddenStates(tokens: [Int32], batch: Int, time: Int) -> (logits: [Float], hidden: [Float])
    /// `count` samples for each prompt with the KV cache; [i][k] is sample k of prompt i (seeded per (seed, i, k)), with
    /// its proof.
    func sample(prompts: [[Int32]], count: Int, options: SamplingOptions) -> [[SampledCompletion]]
    /// Bytes that training at (batch, time) needs.
    func trainingStateBytes(batch: Int, time: Int) -> Int

    /// One safetensors blob with Hugging Face names and the config in its metadata (what the broadcaster ships).
    func safetensorsBytes() -> [UInt8]
    /// Replaces the weights from such a blob; refuses, naming the tensor, one that does not fit. On error nothing changes.
    func loadWeights(safetensors bytes: [UInt8]) throws
    /// A Hugging Face directory (config.json and safetensors in `dtype`) that transformers opens.
    func saveHuggingFace(to directory: URL, dtype: SafetensorsDType) throws
    /// The config.json that `saveHuggingFace` writes, without the weights.
    func huggingFaceConfigJSON(dtype: SafetensorsDType) throws -> Data
    /// A new model of the same architecture and config with the same weights (e.g. a frozen reference policy).
    func copy() -> any Policy
    /// Copies the weights of `other`, which must have the same architecture and config.
    func copyWeights(from other: any Policy)
}

extension Policy {
    /// Logits (T,V) and hidden states (T,C) of one sequence from one full forward pass.
    public func logitsAndHiddenStates(tokens: [Int32]) -> (logits: [Float], hidden: [Float]) {
        logitsAndHiddenStates(tokens: tokens, batch: 1, time: tokens.count)
    }

    /// The hidden states (T,C) of `logitsAndHiddenStates`, for tools and tests.
    public func hiddenStates(tokens: [Int32]) -> [Float] { logitsAndHiddenStates(tokens: tokens).hidden }

    /// Training pass under the model's plain distribution (temperature 1, nothing cut).
    public func forward(tokens: [Int32], targets: [Int32], batch: Int, time: Int) -> (logprobs: [Float], entropy: [Float]) {
        forward(tokens: tokens, targets: targets, batch: batch, time: time, distribution: .plain)
    }

    public func zeroGradients() {
        withParameters { _, grads in grads.update(repeating: 0) }
    }

    /// Parameters as a flat array in checkpoint order (for tests and tools).
    public var flatParameters: [Float] { withParameters { params, _ in Array(params) } }

    /// Gradients as a flat array in checkpoint order.
    public var flatGradients: [Float] { withParameters { _, grads in Array(grads) } }

    /// `count` samples of one prompt.
    public func sample(prompt: [Int32], count: Int, options: SamplingOptions) -> [SampledCompletion] {
        sample(prompts: [prompt], count: count, options: options)[0]
    }

    /// One completion for each prompt, decoded together.
    public func sample(prompts: [[Int32]], options: SamplingOptions) -> [SampledCompletion] {
        sample(prompts: prompts, count: 1, options: options).map { $0[0] }
    }
}

/// Models from the single-blob safetensors that `Policy.safetensorsBytes` writes, whatever the architecture.
public enum Policies {
    /// The model a blob describes (its config rides in __metadata__).
    public static func fromSafetensors(_ bytes: [UInt8]) throws -> any Policy {
        let file = try Safetensors.parse(bytes)
        if file.metadata[Llama.configMetadataKey] != nil { return try Llama.fromSafetensors(bytes) }
        return try GPT.fromSafetensors(bytes)
    }
}

extension GPT: Policy {
    public var architecture: String { "gpt2" }
    public var contextLength: Int { config.contextLength }
    public var vocabSize: Int { config.vocabSize }
    public var bosToken: Int32 { ByteTokenizer.bos }
    public var eosToken: Int32 { ByteTokenizer.eos }

    public func saveHuggingFace(to directory: URL, dtype: SafetensorsDType) throws {
        try HuggingFaceCheckpoint.save(self, to: directory, dtype: dtype)
    }

    public func huggingFaceConfigJSON(dtype: SafetensorsDType) throws -> Data { try HuggingFaceCheckpoint.configJSON(self, dtype: dtype) }

    public func copy() -> any Policy {
        let other = GPT(zeroedFor: config)
        other.copyWeights(from: self)
        return other
    }

    public func copyWeights(from other: any Policy) {
        guard let other = other as? GPT else { preconditionFailure("copyWeights: \(other.architecture) into gpt2") }
        copyWeights(from: other)
    }
}

extension Llama: Policy {
    public var architecture: String { config.modelType }
    public var contextLength: Int { config.contextLength }
    public var vocabSize: Int { config.vocabSize }
    public var bosToken: Int32 { config.bosToken }
    public var eosToken: Int32 { config.eosToken }

    public func saveHuggingFace(to directory: URL, dtype: SafetensorsDType) throws {
        try HuggingFaceCheckpoint.save(self, to: directory, dtype: dtype)
    }

    public func huggingFaceConfigJSON(dtype: SafetensorsDType) throws -> Data { try HuggingFaceCheckpoint.configJSON(self, dtype: dtype) }

    public func copy() -> any Policy {
        let other = Llama(zeroedFor: config)
        other.copyWeights(from: self)
        return other
    }

    public func copyWeights(from other: any Policy) {
        guard let other = other as? Llama else { preconditionFailure("copyWeights: \(other.architecture) into \(architecture)") }
        copyWeights(from: other)
    }
}
