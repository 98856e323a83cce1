import Foundation

/// The optimizer knobs of a run (learning rate aside: it is a schedule's), validated before an optimizer is built.
public struct AdamWSettings: Sendable, Codable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// Decoupled weight decay per unit learning rate, on matrices and embeddings; 0 = off.
    public var weightDecay: Float
    /// Global gradient-norm clip; 0 = no clipping.
    public var maxGradNorm: Float

    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0, maxGradNorm: Float = 1) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.maxGradNorm = maxGradNorm
    }

    /// Refuses a value AdamW cannot use, naming the field: betas in [0, 1), epsilon > 0, weight decay >= 0, clip >= 0.
    public func validate() throws {
        try AdamWSettings.check(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, maxGradNorm: maxGradNorm)
    }

    static func check(beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, maxGradNorm: Float?) throws {
        // written so that NaN fails every check
        guard beta1 >= 0, beta1 < 1 else { throw OptimizerSettingError(field: "beta1", value: beta1, expected: "in [0, 1)") }
        guard beta2 >= 0, beta2 < 1 else { throw OptimizerSettingError(field: "beta2", value: beta2, expected: "in [0, 1)") }
        guard epsilon > 0, epsilon.isFinite else { throw OptimizerSettingError(field: "epsilon", value: epsilon, expected: "finite and > 0") }
        guard weightDecay >= 0, weightDecay.isFinite else {
            throw OptimizerSettingError(field: "weightDecay", value: weightDecay, expected: "finite and >= 0 (0 = off)")
        }
        if let maxGradNorm {
            guard maxGradNorm >= 0, maxGradNorm.isFinite else {
                throw OptimizerSettingError(field: "maxGradNorm", value: maxGradNorm, expected: "finite and >= 0 (0 = no clipping)")
            }
        }
    }
}

/// An optimizer knob out of range: which one, its value, what it must be.
public struct OptimizerSettingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var value: Float
    public var expected: String

    public var description: String { "AdamW \(field) = \(value): must be \(expected)" }
}

/// AdamW with decoupled weight decay (matrices and embeddings only) and global gradient-norm clipping.
/// Not thread-safe, like the model it updates; `@unchecked Sendable` only so its owner can move it to a compute thread.
public final class AdamW: @unchecked Sendable {
    public let learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// Global gradient-norm clip; nil or 0 = no clipping.
    public let maxGradNorm: Float?
    public let parameterCount: Int
    public private(set) var step: Int = 0
    let m: UnsafeMutablePointer<Float>
    let v: UnsafeMutablePointer<Float>
    /// 1 where weight decay applies, else 0 (per parameter).
    private let decayMask: UnsafeMutablePointer<Float>

    /// The knobs must be valid (`AdamWSettings.validate`); `init(model:learningRate:settings:)` throws instead of trapping.
    public init(model: any Policy, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0.0, maxGradNorm: Float? = 1.0) {
        do {
            try AdamWSettings.check(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, maxGradNorm: maxGradNorm)
        } catch {
            preconditionFailure("\(error)")
        }
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
        self.maxGradNorm = maxGradNorm
        parameterCount = model.parameterCount
        m = GPT.allocate(parameterCount); m.update(repeating: 0, count: parameterCount)
        v = GPT.allocate(parameterCount); v.update(repeating: 0, count: parameterCount)
        decayMask = GPT.allocate(parameterCount)
        var offset = 0
        for (_, shape) in model.parameterTensors {
            let n = shape.reduce(1, *)
            (decayMask + offset).update(repeating: shape.count == 2 ? 1 : 0, count: n)  // matrices and embeddings decay
            offset += n
        }
        precondition(offset == parameterCount, "AdamW: parameter tensors cover \(offset) of \(parameterCount) parameters")
    }

    /// An optimizer with a run's knobs; throws, naming the field, when one is out of range.
    public convenience init(model: any Policy, learningRate: Float, settings: AdamWSettings) throws {
        try settings.validate()
        self.init(model: model, learningRate: learningRate, beta1: settings.beta1, beta2: settings.beta2, epsilon: settings.epsilon,
                  weightDecay: settings.weightDecay, maxGradNorm: settings.maxGradNorm)
    }

    /// The knobs this optimizer runs with.
    public var settings: AdamWSettings {
        AdamWSettings(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, maxGradNorm: maxGradNorm ?? 0)
    }

    deinit { m.deallocate(); v.deallocate(); decayMask.deallocate() }

    /// One step with the model's accumulated gradients, which it then zeroes. Returns the gradient norm before clipping.
    @discardableResult public func update(_ model: any Policy, learningRate lr: Float) -> Float {
        precondition(model.parameterCount == parameterCount, "AdamW: model has \(model.parameterCount) parameters, optimizer \(parameterCount)")
        let norm = model.withParameters { p, g in update(params: p.baseAddress!, grads: g.baseAddress!, learningRate: lr) }
        model.zeroGradients()
        return norm
    }

    private func update(params p: UnsafeMutablePointer<Float>, grads g: UnsafeMutablePointer<Float>, learningRate lr: Float) -> Float {
        let n = parameterCount
        // squared norm in double, per worker chunk of 8-lane blocks, then the tail
        let blocks = n / 8
        var partial = [Double](repeating: 0, count: Parallel.maxPieces)
        partial.withUnsafeMutableBufferPointer { part in
            let part = part.baseAddress!
            Parallel.chunks(blocks, minPerWorker: 4096) { worker, range in
                var acc = SIMD8<Double>()
                for blk in range { let x = SIMD8<Double>(load8(g + 8 * blk)); acc += x * x }
                part[worker] = acc.sum()
            }
        }
        var sq = partial.reduce(0, +)
        for i in (8 * blocks)..<n { sq += Double(g[i]) * Double(g[i]) }
        let norm = Float(sq.squareRoot())
        var clip: Float = 1
        if let maxNorm = maxGradNorm, maxNorm > 0, norm > maxNorm, norm.isFinite { clip = maxNorm / norm }

        step += 1
        let b1 = beta1, b2 = beta2, eps = epsilon
        let c1 = 1 / (1 - Float(pow(Double(b1), Double(step))))
        let c2 = 1 / (1 - Float(pow(Double(b2), Double(step))))
        let wd = lr * weightDecay
        let m = self.m, v = self.v, decay = decayMask
        Parallel.chunks(blocks, minPerWorker: 4096) { _, range in
            for blk in range {
                let k = 8 * blk
                let grad = load8(g + k) * clip
                let mk: F8 = b1 * load8(m + k) + (1 - b1) * grad
                let vk: F8 = b2 * load8(v + k) + (1 - b2) * grad * grad
                store8(mk, m + k); store8(vk, v + k)
                let pk = load8(p + k)
                let denom: F8 = (vk * c2).squareRoot() + eps
                let stepk: F8 = lr * (mk * c1) / denom + wd * load8(decay + k) * pk
                store8(pk - stepk, p + k)
            }
        }
        for k in (8 * blocks)..<n {
            let grad = g[k] * clip
            let mk = b1 * m[k] + (1 - b1) * grad
            let vk = b2 * v[k] + (1 - b2) * grad * grad
            m[k] = mk; v[k] = vk
            p[k] -= lr * (mk * c1) / ((vk * c2).squareRoot() + eps) + wd * decay[k] * p[k]
        }
        return norm
    }

    /// Safetensors with tensors `m` and `v` (each flat, parameterCount) and the step in __metadata__.
    public func stateBytes() -> [UInt8] {
        Safetensors.write([.init(name: "m", shape: [parameterCount], data: m), .init(name: "v", shape: [parameterCount], data: v)],
                          metadata: ["step": String(step), "parameter_count": String(parameterCount)])
    }

    /// Restores m, v and step; refuses a file for a different parameter count.
    public func loadState(_ bytes: [UInt8]) throws {
        let file = try Safetensors.parse(bytes)
        guard let s = file.metadata["step"] else { throw CheckpointError.missingMetadata("step") }
        guard let stepValue = Int(s), stepValue >= 0 else { throw CheckpointError.badMetadata(key: "step", value: s) }
        for name in ["m", "v"] {
            guard let t = file.tensors[name] else { throw CheckpointError.missingTensor(name) }
            try Safetensors.check(name, t, expectedShape: [parameterCount])
        }
        try Safetensors.read("m", from: file, bytes: bytes, expectedShape: [parameterCount], into: m)
        try Safetensors.read("v", from: file, bytes: bytes, expectedShape: [parameterCount], into: v)
        step = stepValue
    }
}
