import Foundation

/// Knobs of the GRPO objective (INTELLECT-2 defaults).
public struct GRPOConfig: Sendable, Codable, Equatable {
    /// Ratio floor is 1 − epsilonLow.
    public var epsilonLow: Double
    /// Ratio ceiling is 1 + epsilonHigh.
    public var epsilonHigh: Double
    /// With a negative advantage the ratio counts at most delta (INTELLECT-2's two-sided clipping).
    public var delta: Double
    /// β of the k3 KL penalty against the reference policy; 0 turns it off.
    public var klCoefficient: Double
    /// Entropy bonus coefficient; 0 turns it off.
    public var entropyCoefficient: Double

    public init(epsilonLow: Double = 0.2, epsilonHigh: Double = 0.2, delta: Double = 4, klCoefficient: Double = 0, entropyCoefficient: Double = 0) {
        self.epsilonLow = epsilonLow
        self.epsilonHigh = epsilonHigh
        self.delta = delta
        self.klCoefficient = klCoefficient
        self.entropyCoefficient = entropyCoefficient
    }
}

/// What the loss measured over the masked tokens.
public struct GRPOLossMetrics: Sendable, Codable, Equatable {
    public var tokens: Int
    /// Share of tokens whose gradient was cut because A < 0 and ratio < 1 − ε_low.
    public var clipFractionLow: Double
    /// Share of tokens whose gradient was cut because A > 0 and ratio > 1 + ε_high.
    public var clipFractionHigh: Double
    /// Share of tokens whose gradient was cut because A < 0 and ratio > δ.
    public var clipFractionDelta: Double
    public var meanRatio: Double
    /// Mean per-token entropy (when the model's entropies were given).
    public var entropy: Double
    /// Mean k3 KL estimate against the reference (when reference logprobs were given).
    public var kl: Double
    /// The clipped policy-gradient part of the loss alone.
    public var policyLoss: Double

    public init(tokens: Int = 0, clipFractionLow: Double = 0, clipFractionHigh: Double = 0, clipFractionDelta: Double = 0,
                meanRatio: Double = 0, entropy: Double = 0, kl: Double = 0, policyLoss: Double = 0) {
        self.tokens = tokens
        self.clipFractionLow = clipFractionLow
        self.clipFractionHigh = clipFractionHigh
        self.clipFractionDelta = clipFractionDelta
        self.meanRatio = meanRatio
        self.entropy = entropy
        self.kl = kl
        self.policyLoss = policyLoss
    }
}

/// The loss value, its gradient with respect to each token's logprob (what `Policy.backward(dLogprobs:mask:)` takes), and metrics.
public struct GRPOLossResult: Sendable {
    public var loss: Double
    public var gradient: [Float]
    public var metrics: GRPOLossMetrics
}

/// GRPO with INTELLECT-2's two-sided clipping, token-level normalisation, optional k3 KL and entropy bonus.
///
/// Per masked token t with r = exp(logprob − behaviour logprob) and advantage A:
///   A ≥ 0: objective A · min(r, 1 + ε_high)
///   A < 0: objective A · max(min(r, δ), 1 − ε_low)   (= min(min(r, δ)·A, clip(r)·A))
/// loss = Σ_t mask_t · (−objective_t + β · k3_t − c · entropy_t) / normalizer, normalizer = Σ mask over the whole batch.
/// k3_t = exp(ref − logprob) − (ref − logprob) − 1.
/// The entropy bonus's gradient is the score-function estimate c · logprob_t per sampled token (the model's backward
/// only takes d/dlogprob), so the finite-difference identity holds exactly only with `entropyCoefficient` 0.
public enum GRPOLoss {
    public static func compute(
        logprobs: [Float], behaviourLogprobs: [Float], advantages: [Float], mask: [Float],
        referenceLogprobs: [Float]? = nil, entropy: [Float]? = nil, config: GRPOConfig = GRPOConfig(),
        normalizer: Double? = nil
    ) -> GRPOLossResult {
        let n = logprobs.count
        precondition(behaviourLogprobs.count == n && advantages.count == n && mask.count == n, "GRPOLoss: arrays differ in length")
        precondition(referenceLogprobs == nil || referenceLogprobs!.count == n, "GRPOLoss: reference logprobs differ in length")
        precondition(entropy == nil || entropy!.count == n, "GRPOLoss: entropy differs in length")
        let maskedTokens = mask.reduce(0.0) { $0 + Double($1) }
        let scale = 1.0 / max(normalizer ?? maskedTokens, 1)

        var gradient = [Float](repeating: 0, count: n)
        var loss = 0.0, policyLoss = 0.0
        var ratioSum = 0.0, entropySum = 0.0, klSum = 0.0
        var clipLow = 0.0, clipHigh = 0.0, clipDelta = 0.0
        let floor = 1 - config.epsilonLow, ceiling = 1 + config.epsilonHigh
        for t in 0..<n where mask[t] != 0 {
            let m = Double(mask[t])
            let logprob = Double(logprobs[t])
            let ratio = (logprob - Double(behaviourLogprobs[t])).clampedExp
            let advantage = Double(advantages[t])
            var objective: Double
            var dObjective = 0.0  // d objective / d logprob
            if advantage >= 0 {
                if ratio > ceiling {
                    objective = advantage * ceiling
                    if advantage > 0 { clipHigh += m }
                } else {
                    objective = advantage * ratio
                    dObjective = advantage * ratio
                }
            } else if ratio > config.delta {
                objective = advantage * config.delta
                clipDelta += m
            } else if ratio < floor {
                objective = advantage * floor
                clipLow += m
            } else {
                objective = advantage * ratio
                dObjective = advantage * ratio
            }
            var tokenLoss = -objective
            var dLoss = -dObjective
            policyLoss += m * -objective
            if let referenceLogprobs {
                let diff = Double(referenceLogprobs[t]) - logprob
                let k3 = diff.clampedExp - diff - 1
                klSum += m * k3
                tokenLoss += config.klCoefficient * k3
                dLoss += config.klCoefficient * (1 - diff.clampedExp)
            }
            if let entropy {
                entropySum += m * Double(entropy[t])
                tokenLoss -= config.entropyCoefficient * Double(entropy[t])
                dLoss += config.entropyCoefficient * logprob
            }
            ratioSum += m * ratio
            loss += m * tokenLoss
            gradient[t] = Float(m * dLoss * scale)
        }
        let denominator = max(maskedTokens, 1)
        let metrics = GRPOLossMetrics(
            tokens: Int(maskedTokens.rounded()), clipFractionLow: clipLow / denominator, clipFractionHigh: clipHigh / denominator,
            clipFractionDelta: clipDelta / denominator, meanRatio: ratioSum / denominator, entropy: entropySum / denominator,
            kl: klSum / denominator, policyLoss: policyLoss * scale)
        return GRPOLossResult(loss: loss * scale, gradient: gradient, metrics: metrics)
    }
}

extension Double {
    /// exp that saturates instead of overflowing: a stale behaviour policy can make log-ratios large.
    var clampedExp: Double { exp(Swift.min(self, 50)) }
}
