import Foundation
import Model

/// What the model computes for a fixed set of inputs under one OpenBLAS kernel family and thread count: decodes,
/// log-probs, gradients and a finite-difference check of those gradients. `tributary-model-probe` prints it as
/// JSON so that a test can run it under each kernel family the CPU can execute and compare the results.
public struct KernelReport: Codable, Sendable {
    public struct Decode: Codable, Sendable {
        public var name: String
        public var prompts: [[Int32]]
        public var count: Int
        public var options: SamplingOptions
        public var completions: [[Completion]]
    }

    public var coreName: String
    public var threads: Int
    public var decodes: [Decode]
    /// Per-token log-probs of a training batch (B = 5, T = 16: big enough for the plain sgemm path).
    public var logprobs: [Float]
    /// Gradients of sum(w · logprob) on that batch, in checkpoint order.
    public var gradients: [Float]
    /// Worst relative error of backward against central differences (on a model where it is well conditioned).
    public var finiteDifferenceWorst: Float
    public var finiteDifferenceChecked: Int

    /// The model every scenario runs: the tests' tiny config (259 tokens, context 16, 2 layers, 2 heads, 16 channels)
    /// with spread logits.
    public static func model() -> GPT {
        spreadingLogits(GPT(config: GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: 16, layers: 2, heads: 2, channels: 16), seed: 15), seed: 16)
    }

    /// The decode scenarios: greedy over prompts of several lengths (one past the context), a truncated sampled
    /// group, and a tempered one.
    public static let decodeScenarios: [(name: String, prompts: [[Int32]], count: Int, options: SamplingOptions)] = [
        ("greedy", [[1, 2, 3], [], Array(1...15).map { Int32($0 * 13) }, [9], Array(1...40).map { Int32($0 * 7) }], 1,
         .greedy(maxNewTokens: 6, stopAtEOS: false)),
        ("top-p-top-k", [[1, 2, 3], [4, 5]], 4, SamplingOptions(temperature: 1, topP: 0.95, topK: 50, maxNewTokens: 10, seed: 99, stopAtEOS: false)),
        ("tempered", [[72, 105]], 3, SamplingOptions(temperature: 0.7, maxNewTokens: 12, seed: 3)),
    ]

    /// Runs every scenario in this process (whatever kernels OpenBLAS chose at load). `threads` sets OpenBLAS's
    /// thread count first (a probe process); nil keeps it, for a process whose other work is running.
    public static func measure(threads: Int?) -> KernelReport {
        if let threads { BLAS.setThreads(threads) }
        let model = model()
        let decodes = decodeScenarios.map { s in
            Decode(name: s.name, prompts: s.prompts, count: s.count, options: s.options,
                   completions: model.sample(prompts: s.prompts, count: s.count, options: s.options).map { $0.map(Completion.init) })
        }
        let (B, T) = (5, 16)
        let tokens = Self.tokens(B * T, seed: 1), targets = Self.tokens(B * T, seed: 2)
        let w = (0..<(B * T)).map { Float(($0 * 37) % 11) / 11 - 0.5 }
        let logprobs = model.forward(tokens: tokens, targets: targets, batch: B, time: T).logprobs
        model.zeroGradients()
        model.backward(dLogprobs: w, mask: [Float](repeating: 1, count: B * T))
        let (worst, checked) = finiteDifferenceCheck()
        return KernelReport(coreName: BLAS.coreName, threads: BLAS.threads, decodes: decodes, logprobs: logprobs,
                            gradients: model.flatGradients, finiteDifferenceWorst: worst, finiteDifferenceChecked: checked)
    }

    static func tokens(_ n: Int, seed: UInt64, below v: Int = ByteTokenizer.vocabSize) -> [Int32] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { _ in Int32(rng.next() % UInt64(v)) }
    }

    /// Backward against central differences of loss = Σ w·mask·logprob, on six entries of every tensor of a small
    /// model with weights large enough that every gradient stands well above float noise.
    static func finiteDifferenceCheck() -> (worst: Float, checked: Int) {
        let model = GPT(config: GPTConfig(vocabSize: 13, contextLength: 8, layers: 2, heads: 2, channels: 8), seed: 42)
        var rng = SeededGenerator(seed: 1)
        model.withParameters { p, _ in for i in 0..<p.count { p[i] += rng.nextNormal() * 0.3 } }
        let (B, T) = (2, 5)
        let tokens = Self.tokens(B * T, seed: 2, below: 13), targets = Self.tokens(B * T, seed: 3, below: 13)
        let w = (0..<(B * T)).map { _ in rng.nextNormal() }
        var mask = [Float](repeating: 1, count: B * T)
        mask[3] = 0
        func loss() -> Double {
            let lp = model.forward(tokens: tokens, targets: targets, batch: B, time: T).logprobs
            var sum = 0.0
            for i in lp.indices { sum += Double(lp[i]) * Double(w[i] * mask[i]) }
            return sum
        }
        _ = model.forward(tokens: tokens, targets: targets, batch: B, time: T)
        model.zeroGradients()
        model.backward(dLogprobs: w, mask: mask)
        let analytic = model.flatGradients
        var worst: Float = 0, checked = 0, offset = 0
        for (_, shape) in model.parameterTensors {
            let n = shape.reduce(1, *)
            for _ in 0..<min(n, 6) {
                let i = offset + Int(rng.next() % UInt64(n))
                let numeric = model.centralDifference(parameter: i, loss: loss)
                worst = max(worst, abs(numeric - analytic[i]) / max(abs(numeric), abs(analytic[i]), 1e-2))
                checked += 1
            }
            offset += n
        }
        return (worst, checked)
    }
}

/// Adds N(0, 0.5²) to every parameter of `model` and returns it. GPT-2's initialisation gives nearly uniform
/// next-token distributions (logits within ~0.1 of each other over 259 tokens), where almost every sampled draw
/// sits near a tie; spread logits (σ ≈ 2) are what a trained model has, and let a comparison of sampled decodes
/// run long before a near-tie stops it.
public func spreadingLogits(_ model: GPT, seed: UInt64) -> GPT {
    var rng = SeededGenerator(seed: seed)
    model.withParameters { p, _ in for i in 0..<p.count { p[i] += rng.nextNormal() * 0.5 } }
    return model
}
