import Foundation

/// A Llama-family language model (Llama 2/3, Qwen2, SmolLM2): RMSNorm, rotary positions, SwiGLU, grouped-query attention.
/// Parameters, gradients and activations are each one allocation with named views, as in `GPT`.
///
/// Not thread-safe: one owner at a time must serialise every call. It is `@unchecked Sendable` only so that an
/// owner can hand it to the thread or executor that runs its compute; never use one instance from two threads at once.
public final class Llama: @unchecked Sendable {
    public let config: LlamaConfig
    let layout: LlamaParameterLayout
    /// All parameters, in `layout` order.
    let params: UnsafeMutablePointer<Float>
    /// Gradients, same layout as `params`.
    let grads: UnsafeMutablePointer<Float>
    /// Rotary inverse frequencies (hd/2), from rope_theta and the scaling.
    let invFreq: [Float]

    let activationBuffer = FloatBuffer()
    let scratchBuffer = FloatBuffer()
    /// Saved by `forward` for `backward`.
    var lastTokens: [Int32] = []
    var lastTargets: [Int32] = []
    /// d logit / d raw logit of the last forward: 1 / temperature when it trained under a tempered distribution.
    var lastLogitScale: Float = 1
    var acts: LlamaActivations?

    /// Random weights: N(0, 0.02) matrices and embeddings, unit RMSNorm weights, zero biases.
    public convenience init(config: LlamaConfig, seed: UInt64) {
        self.init(zeroedFor: config)
        var rng = SeededGenerator(seed: seed)
        for e in layout.entries {
            let p = params + e.offset
            if e.name.hasSuffix("norm.weight") {
                p.update(repeating: 1, count: e.count)
            } else if e.shape.count == 1 {
                p.update(repeating: 0, count: e.count)
            } else {
                for i in 0..<e.count { p[i] = rng.nextNormal() * 0.02 }
            }
        }
    }

    /// Zero weights, for a loader that overwrites every one (a random initialisation costs more than reading the file).
    init(zeroedFor config: LlamaConfig) {
        precondition((try? config.validate()) != nil, "invalid LlamaConfig \(config)")
        self.config = config
        layout = LlamaParameterLayout(config)
        params = GPT.allocate(layout.count)
        params.update(repeating: 0, count: layout.count)
        grads = GPT.allocate(layout.count)
        grads.update(repeating: 0, count: layout.count)
        invFreq = ropeInverseFrequencies(config)
    }

    deinit {
        params.deallocate()
        grads.deallocate()
    }

    public var parameterCount: Int { layout.count }

    /// Copies every parameter of `other` (same config), e.g. to snapshot a reference policy.
    public func copyWeights(from other: Llama) {
        precondition(other.config == config, "copyWeights: config \(other.config) differs from \(config)")
        params.update(from: other.params, count: layout.count)
    }

    /// Runs `body` with the parameters and gradients, e.g. for custom optimisers or checks.
    public func withParameters<R>(_ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: params, count: layout.count), UnsafeMutableBufferPointer(start: grads, count: layout.count))
    }

    /// Names and shapes of the parameter tensors, in checkpoint order (lm_head only when untied).
    public var parameterTensors: [(name: String, shape: [Int])] { layout.entries.map { ($0.name, $0.shape) } }

    /// Bytes that training at (batch, time) needs: parameters, gradients, two AdamW moments and forward activations.
    public func trainingStateBytes(batch: Int, time: Int) -> Int {
        4 * (4 * parameterCount + LlamaActivations.floatCount(config, B: batch, T: time))
    }
}
