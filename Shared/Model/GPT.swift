import Foundation

/// A GPT-2-style language model: parameters, gradients and activations, each one allocation with named views.
///
/// Not thread-safe: one owner at a time must serialise every call. It is `@unchecked Sendable` only so that an
/// owner can hand it to the thread or executor that runs its compute; never use one instance from two threads at once.
public final class GPT: @unchecked Sendable {
    public let config: GPTConfig
    let layout: ParameterLayout
    /// All parameters, in `layout` order.
    let params: UnsafeMutablePointer<Float>
    /// Gradients, same layout as `params`.
    let grads: UnsafeMutablePointer<Float>

    let activationBuffer = FloatBuffer()
    let scratchBuffer = FloatBuffer()
    /// Saved by `forward` for `backward`.
    var lastBatch = 0, lastTime = 0
    var lastTokens: [Int32] = []
    var lastTargets: [Int32] = []
    /// d logit / d raw logit of the last forward: 1 / temperature when it trained under a tempered distribution.
    var lastLogitScale: Float = 1
    var acts: Activations?

    public convenience init(config: GPTConfig, seed: UInt64) {
        self.init(zeroedFor: config)
        initialiseParameters(seed: seed)
    }

    /// Zero weights, for a loader that overwrites every one (a random initialisation costs more than reading the file).
    init(zeroedFor config: GPTConfig) {
        precondition((try? config.validate()) != nil, "invalid GPTConfig \(config)")
        self.config = config
        layout = ParameterLayout(config)
        params = GPT.allocate(layout.count)
        params.update(repeating: 0, count: layout.count)
        grads = GPT.allocate(layout.count)
        grads.update(repeating: 0, count: layout.count)
    }

    deinit {
        params.deallocate()
        grads.deallocate()
    }

    static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
    }

    public var parameterCount: Int { layout.count }

    /// GPT-2 initialisation: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2L), zero biases, unit LayerNorm.
    private func initialiseParameters(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let residualStd = 0.02 / Float(2 * config.layers).squareRoot()
        for e in layout.entries {
            let p = params + e.offset
            if e.name.hasSuffix("ln_1.weight") || e.name.hasSuffix("ln_2.weight") || e.name.hasSuffix("ln_f.weight") {
                p.update(repeating: 1, count: e.count)
            } else if e.shape.count == 1 {
                p.update(repeating: 0, count: e.count)
            } else {
                let std: Float = e.name.hasSuffix("c_proj.weight") ? residualStd : 0.02
                for i in 0..<e.count { p[i] = rng.nextNormal() * std }
            }
        }
    }

    /// Copies every parameter of `other` (same config), e.g. to snapshot a reference policy.
    public func copyWeights(from other: GPT) {
        precondition(other.config == config, "copyWeights: config \(other.config) differs from \(config)")
        params.update(from: other.params, count: layout.count)
    }

    /// Runs `body` with the parameters and gradients, e.g. for custom optimisers or checks.
    public func withParameters<R>(_ body: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: params, count: layout.count), UnsafeMutableBufferPointer(start: grads, count: layout.count))
    }

    /// Names and shapes of the parameter tensors, in checkpoint order.
    public var parameterTensors: [(name: String, shape: [Int])] { layout.entries.map { ($0.name, $0.shape) } }
}

extension GPT {
    /// Bytes that training at (batch, time) needs: parameters, gradients, two AdamW moments and forward activations.
    public func trainingStateBytes(batch: Int, time: Int) -> Int {
        4 * (4 * parameterCount + Activations.floatCount(config, B: batch, T: time))
    }
}
