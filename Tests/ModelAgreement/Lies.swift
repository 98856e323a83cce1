import Foundation
import Model

/// What a dishonest rollout worker can send instead of what the claimed policy sampled, for the verifiable-inference
/// tests, the validation end-to-end test and `tributary-bench verify`. Each liar is as strong as it can be for its lie:
/// what it does not lie about is honest, and the log-probs and proof it claims are recomputed by the claimed policy
/// over the tokens it sends whenever the lie is about the tokens alone, so that only the check the lie breaks can
/// catch it.
public enum Lie: String, CaseIterable, Sendable {
    /// Sampled by another model of the same shape (its own weights, log-probs and proof).
    case otherModel = "different model of the same shape"
    /// Sampled by the claimed weights perturbed by 1e-3 relative (each times 1 + 1e-3·N(0,1)).
    case perturbedWeights = "weights perturbed by 1e-3 relative"
    /// Sampled by an older version than the one claimed.
    case olderVersion = "an older version"
    /// Sampled by the claimed weights quantized to 8 bits (symmetric, one scale per row of each tensor).
    case int8Weights = "weights quantized to 8 bits"
    /// Sampled for another prompt (its first token changed), claimed for this one.
    case otherPrompt = "a different prompt"
    /// Honest tokens and proof, every log-prob scaled by 0.9 (log-probs are ≤ 0: each is claimed likelier).
    case scaledLogprobs = "log-probs scaled by 0.9"
    /// One token in each 32 replaced by the likeliest other token (never eos, and never the eos that ended it); log-probs
    /// and proof of the edited sequence.
    case oneTokenIn32 = "one token in 32 replaced"
    /// Sampled greedily, claiming the task's temperature; log-probs under the claimed distribution.
    case greedyClaimingTemperature = "greedy, claiming the task's temperature"
    /// Cut at half its length and ended with eos, claiming eos; log-probs and proof of what is sent (a completion of
    /// one token is sent as it is).
    case truncatedClaimingEOS = "truncated early, claiming eos"

    /// A short name for tables and logs.
    public var slug: String {
        switch self {
        case .otherModel: "other_model"
        case .perturbedWeights: "perturbed_1e-3"
        case .olderVersion: "older_version"
        case .int8Weights: "int8_weights"
        case .otherPrompt: "other_prompt"
        case .scaledLogprobs: "logprobs_x0.9"
        case .oneTokenIn32: "one_token_in_32"
        case .greedyClaimingTemperature: "greedy_claiming_t1"
        case .truncatedClaimingEOS: "truncated_claiming_eos"
        }
    }
}

/// A worker that tells one lie about every group it sends, claiming `claimed`. Not thread-safe (it owns models).
public final class Liar: @unchecked Sendable {
    public let lie: Lie
    public let claimed: any Policy
    /// The model that samples (the claimed one when the lie is not about the weights).
    let sampler: any Policy

    /// `older` is the version an `.olderVersion` liar runs (required for that lie); `seed` makes the other model and
    /// the perturbation.
    public init(_ lie: Lie, claimed: any Policy, older: (any Policy)? = nil, seed: UInt64 = 77) {
        self.lie = lie
        self.claimed = claimed
        switch lie {
        case .otherModel:
            // the same architecture and shapes, weights of its own at the claimed weights' scale per tensor
            let other = claimed.copy()
            var rng = SeededGenerator(seed: seed)
            other.withParameters { p, _ in
                var offset = 0
                for (_, shape) in other.parameterTensors {
                    let n = shape.reduce(1, *)
                    var sumSquares = 0.0
                    for i in offset..<(offset + n) { sumSquares += Double(p[i] * p[i]) }
                    let scale = Float((sumSquares / Double(max(n, 1))).squareRoot())
                    for i in offset..<(offset + n) { p[i] = rng.nextNormal() * scale }
                    offset += n
                }
            }
            sampler = other
        case .perturbedWeights:
            let perturbed = claimed.copy()
            var rng = SeededGenerator(seed: seed)
            perturbed.withParameters { p, _ in for i in 0..<p.count { p[i] *= 1 + 1e-3 * rng.nextNormal() } }
            sampler = perturbed
        case .olderVersion:
            guard let older else { preconditionFailure("Liar(.olderVersion) needs the older version") }
            sampler = older
        case .int8Weights:
            let quantized = claimed.copy()
            quantized.withParameters { p, _ in
                var offset = 0
                for (_, shape) in quantized.parameterTensors {
                    let n = shape.reduce(1, *)
                    let width = shape.count >= 2 ? shape.last! : n
                    var row = offset
                    while row < offset + n {
                        let end = min(row + max(width, 1), offset + n)
                        var top: Float = 0
                        for i in row..<end { top = max(top, abs(p[i])) }
                        if top > 0 {
                            let scale = top / 127
                            for i in row..<end { p[i] = (p[i] / scale).rounded() * scale }
                        }
                        row = end
                    }
                    offset += n
                }
            }
            sampler = quantized
        default:
            sampler = claimed
        }
    }

    /// The group of `count` completions this liar sends for `prompt` (as fed to the sampler, non-empty), claiming that
    /// `claimed` sampled it with `options` (sample k drawn with `options.gumbelKey(prompt: 0, sample: k)`, as a rollout
    /// worker samples one task's group).
    public func group(prompt: [Int32], count: Int, options: SamplingOptions) -> [SampledCompletion] {
        let V = claimed.vocabSize
        switch lie {
        case .otherModel, .perturbedWeights, .olderVersion, .int8Weights:
            return sampler.sample(prompt: prompt, count: count, options: options)
        case .otherPrompt:
            var other = prompt
            other[0] = Int32((Int(other[0]) + 1) % V)
            return claimed.sample(prompt: other, count: count, options: options)
        case .scaledLogprobs:
            return claimed.sample(prompt: prompt, count: count, options: options).map { c in
                var forged = c
                forged.logprobs = c.logprobs.map { $0 * 0.9 }
                return forged
            }
        case .oneTokenIn32:
            return claimed.sample(prompt: prompt, count: count, options: options).map { c in
                // an eos that ended the completion stays: replacing it would be a lie about the ending
                let editable = c.finishedWithEOS ? c.tokens.count - 1 : c.tokens.count
                guard editable > 0 else { return c }
                var tokens = c.tokens
                let logits = claimed.logits(tokens: prompt + c.tokens.dropLast())
                for j in stride(from: min(16, editable - 1), to: editable, by: 32) {
                    let row = (prompt.count - 1 + j) * V
                    // the likeliest token other than the drawn one and eos (an early eos would be a different lie)
                    var best = -1
                    for t in 0..<V where t != Int(c.tokens[j]) && Int32(t) != claimed.eosToken {
                        if best < 0 || logits[row + t] > logits[row + best] { best = t }
                    }
                    if best >= 0 { tokens[j] = Int32(best) }
                }
                return honestClaims(tokens: tokens, finishedWithEOS: c.finishedWithEOS, prompt: prompt, options: options)
            }
        case .greedyClaimingTemperature:
            var greedy = options
            greedy.temperature = 0
            greedy.topK = 0
            greedy.topP = 1
            return claimed.sample(prompt: prompt, count: count, options: greedy).map {
                honestClaims(tokens: $0.tokens, finishedWithEOS: $0.finishedWithEOS, prompt: prompt, options: options)
            }
        case .truncatedClaimingEOS:
            return claimed.sample(prompt: prompt, count: count, options: options).map { c in
                // a completion of one token cannot end earlier: it is sent as sampled
                guard c.tokens.count >= 2 else { return c }
                let kept = c.tokens.count / 2
                let tokens = Array(c.tokens.prefix(kept - 1)) + [claimed.eosToken]
                return honestClaims(tokens: tokens, finishedWithEOS: true, prompt: prompt, options: options)
            }
        }
    }

    /// One AdamW step at the quickstart's learning rate (1e-3) on random sequences, in place: what one policy version
    /// changes, to make the version an `.olderVersion` liar runs.
    public static func trainOneStep(_ model: any Policy, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let B = 4, T = min(64, model.contextLength)
        let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(min(model.vocabSize, 256))) }
        let targets = (0..<(B * T)).map { i in (i + 1) % T == 0 ? Int32(-1) : tokens[i + 1] }
        let optimizer = AdamW(model: model, learningRate: 1e-3)
        model.zeroGradients()
        _ = model.forward(tokens: tokens, targets: targets, batch: B, time: T)
        model.backward(dLogprobs: [Float](repeating: 1 / Float(B * T), count: B * T), mask: targets.map { $0 < 0 ? 0 : 1 })
        optimizer.update(model, learningRate: 1e-3)
    }

    /// `tokens` with the log-probs under `options`' distribution and the proof that the claimed policy computes for them.
    func honestClaims(tokens: [Int32], finishedWithEOS: Bool, prompt: [Int32], options: SamplingOptions) -> SampledCompletion {
        guard !tokens.isEmpty else { return SampledCompletion(tokens: [], logprobs: [], finishedWithEOS: finishedWithEOS) }
        let sequence = prompt + tokens.dropLast()
        let P = prompt.count, n = tokens.count
        let targets = Array(sequence.dropFirst()) + [tokens[n - 1]]
        let logprobs = claimed.forward(tokens: sequence, targets: targets, batch: 1, time: sequence.count,
                                       distribution: options.distribution).logprobs
        let hidden = claimed.hiddenStates(tokens: sequence)
        let C = hidden.count / sequence.count
        return SampledCompletion(tokens: tokens, logprobs: Array(logprobs[(P - 1)...]), finishedWithEOS: finishedWithEOS,
                                 proof: InferenceProof.commit(hidden: Array(hidden[((P - 1) * C)...]), rows: n, channels: C))
    }
}
