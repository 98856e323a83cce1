import Foundation
import Testing
@testable import RL

@Suite struct GRPOLossTests {
    /// A small batch with tokens inside, above and below the clip range, positive, negative and zero advantages.
    static let logprobs: [Float] = [-1.0, -0.5, -2.0, -0.2, -1.5, -0.9, -3.0, -0.7]
    static let behaviour: [Float] = [-1.1, -0.45, -2.5, -0.9, -1.4, -0.8, -1.0, -0.7]
    static let advantages: [Float] = [1.0, -0.5, 0.8, -1.2, 0.0, 2.0, -1.0, 0.3]
    static let mask: [Float] = [1, 1, 1, 1, 1, 0, 1, 1]

    @Test func gradientMatchesFiniteDifferences() {
        let reference: [Float] = [-1.2, -0.4, -2.1, -0.5, -1.0, -0.7, -2.0, -0.9]
        let config = GRPOConfig(klCoefficient: 0.1)
        func loss(_ lp: [Float]) -> Double {
            GRPOLoss.compute(logprobs: lp, behaviourLogprobs: Self.behaviour, advantages: Self.advantages, mask: Self.mask,
                             referenceLogprobs: reference, config: config).loss
        }
        let result = GRPOLoss.compute(logprobs: Self.logprobs, behaviourLogprobs: Self.behaviour, advantages: Self.advantages,
                                      mask: Self.mask, referenceLogprobs: reference, config: config)
        let h: Float = 1e-3
        for t in 0..<Self.logprobs.count {
            var plus = Self.logprobs, minus = Self.logprobs
            plus[t] += h
            minus[t] -= h
            let numeric = (loss(plus) - loss(minus)) / Double(2 * h)
            #expect(abs(numeric - Double(result.gradient[t])) < 2e-3, "token \(t): numeric \(numeric) analytic \(result.gradient[t])")
        }
        #expect(result.gradient[5] == 0, "masked token gets no gradient")
    }

    /// One token at a time: ratio r = exp(lp − blp), advantage a; returns (gradient, metrics).
    func single(ratio: Double, advantage: Float, config: GRPOConfig = GRPOConfig()) -> (Float, GRPOLossMetrics) {
        let lp = Float(log(ratio)) - 1
        let result = GRPOLoss.compute(logprobs: [lp], behaviourLogprobs: [-1], advantages: [advantage], mask: [1], config: config)
        return (result.gradient[0], result.metrics)
    }

    @Test func positiveAdvantageClipsOnlyAbove() {
        let (inside, m1) = single(ratio: 1.1, advantage: 1)
        #expect(abs(inside - -1.1) < 1e-4)  // d(−A r)/dlp = −A r
        #expect(m1.clipFractionHigh == 0 && m1.clipFractionLow == 0)
        let (above, m2) = single(ratio: 1.5, advantage: 1)
        #expect(above == 0)
        #expect(m2.clipFractionHigh == 1)
        let (below, m3) = single(ratio: 0.5, advantage: 1)
        #expect(abs(below - -0.5) < 1e-4, "below the floor a positive advantage still pushes up")
        #expect(m3.clipFractionLow == 0)
    }

    @Test func negativeAdvantageClipsBelowAndAboveDelta() {
        let (inside, m1) = single(ratio: 0.9, advantage: -1)
        #expect(abs(inside - 0.9) < 1e-4)
        #expect(m1.clipFractionLow == 0)
        let (below, m2) = single(ratio: 0.5, advantage: -1)
        #expect(below == 0)
        #expect(m2.clipFractionLow == 1)
        let (between, m3) = single(ratio: 2.0, advantage: -1)
        #expect(abs(between - 2.0) < 1e-3, "above 1+eps but under delta the gradient flows")
        #expect(m3.clipFractionDelta == 0 && m3.clipFractionHigh == 0)
        let (aboveDelta, m4) = single(ratio: 6.0, advantage: -1)
        #expect(aboveDelta == 0)
        #expect(m4.clipFractionDelta == 1)
        let loss = GRPOLoss.compute(logprobs: [Float(log(6.0)) - 1], behaviourLogprobs: [-1], advantages: [-1], mask: [1]).loss
        #expect(abs(loss - 4) < 1e-4, "the objective is bounded by delta")
    }

    @Test func customBoundsAreHonoured() {
        let config = GRPOConfig(epsilonLow: 0.1, epsilonHigh: 0.3, delta: 2)
        #expect(single(ratio: 1.25, advantage: 1, config: config).0 != 0)
        #expect(single(ratio: 1.35, advantage: 1, config: config).0 == 0)
        #expect(single(ratio: 0.85, advantage: -1, config: config).0 == 0)
        #expect(single(ratio: 2.5, advantage: -1, config: config).0 == 0)
    }

    @Test func tokenLevelNormalisationOverTheBatch() {
        let one = GRPOLoss.compute(logprobs: [-1], behaviourLogprobs: [-1], advantages: [1], mask: [1])
        let four = GRPOLoss.compute(logprobs: [-1, -1, -1, -1], behaviourLogprobs: [-1, -1, -1, -1], advantages: [1, 1, 1, 1], mask: [1, 1, 1, 1])
        #expect(abs(one.loss - four.loss) < 1e-9)
        #expect(abs(four.gradient[0] - 0.25) < 1e-6 || abs(four.gradient[0] + 0.25) < 1e-6)
        let normalised = GRPOLoss.compute(logprobs: [-1], behaviourLogprobs: [-1], advantages: [1], mask: [1], normalizer: 10)
        #expect(abs(normalised.gradient[0] + 0.1) < 1e-6)
    }

    @Test func metricsReportRatioEntropyAndKL() {
        let result = GRPOLoss.compute(logprobs: [-1, -1], behaviourLogprobs: [-1, -1], advantages: [1, -1], mask: [1, 1],
                                      referenceLogprobs: [-1, -1], entropy: [2, 4])
        #expect(abs(result.metrics.meanRatio - 1) < 1e-9)
        #expect(abs(result.metrics.entropy - 3) < 1e-9)
        #expect(abs(result.metrics.kl) < 1e-9)
        #expect(result.metrics.tokens == 2)
    }
}
