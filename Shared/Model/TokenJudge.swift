import Foundation

/// The validator's view of one sampling step: the support, log q of a token and how far its Gumbel score falls short
/// of the best, with allowance for cuts (top-k, top-p) that sit on a near-tie, where rounding may move the cut.
struct TokenJudge {
    var scratch: SamplingScratch
    /// Mass of the ranks before r (V+1), in the sampler's summation order.
    var cumBefore: [Double]

    init(vocabSize: Int) {
        scratch = SamplingScratch(vocabSize: vocabSize)
        cumBefore = [Double](repeating: 0, count: vocabSize + 1)
    }

    struct Verdict {
        /// The token's rank when it lies outside every plausible support (nil inside).
        var outsideRank: Int?
        /// The support size by this computation.
        var kept: Int
        /// log q(token) under each plausible support (one unless a cut is near a tie).
        var logprobs: [Double]
        /// best score − the token's score (≥ 0 up to rounding), over the tokens sure to be kept.
        var shortfall: Double
        var best: Int
    }

    /// logits (V); the same weights as `TokenChooser` (`TokenDistribution.weights`), the same noise.
    mutating func judge(_ logits: UnsafePointer<Float>, token t: Int, options: SamplingOptions, key: UInt64, position: Int,
                        margin: Double) -> Verdict {
        let V = scratch.V
        if options.temperature <= 0 {
            let (best, mx, logSum) = SamplingScratch.greedy(logits, V)
            return Verdict(outsideRank: nil, kept: V, logprobs: [Double(logits[t] - mx) - logSum],
                           shortfall: Double(mx) - Double(logits[t]), best: best)
        }
        let distribution = options.distribution
        let (kept, total, truncate) = scratch.weights(logits, distribution)
        let (probs, order) = (scratch.probs, scratch.order)
        func score(_ i: Int) -> Double { log(Double(probs[i])) + SamplingOptions.gumbelNoise(key: key, position: position, token: i) }
        guard probs[t] > 0 else { return Verdict(outsideRank: V, kept: kept, logprobs: [], shortfall: .infinity, best: t) }
        guard truncate else {
            var best = t, bestScore = score(t)
            for i in 0..<V where probs[i] > 0 {
                let s = score(i)
                if s > bestScore { bestScore = s; best = i }
            }
            return Verdict(outsideRank: nil, kept: V, logprobs: [log(Double(probs[t]) / total)], shortfall: bestScore - score(t), best: best)
        }
        // plausible supports: the first K ranks for K in lo...hi, where a rank past the cut counts when a rounding-sized
        // change could keep it and a rank before it when one could drop it
        var all: Double = 0
        for i in 0..<V { all += Double(probs[i]) }
        for r in 0..<V { cumBefore[r + 1] = cumBefore[r] + Double(probs[order[r]]) }
        let topK = distribution.topK, topP = Double(distribution.topP), slack = exp(margin)
        // log-weights moving by ±margin move the mass before a rank, as a share of all, by a factor e^(±2·margin)
        let massSlack = 2 * margin * topP
        func mayKeep(_ r: Int) -> Bool {
            (topK <= 0 || r < topK || Double(probs[order[r]]) * slack >= Double(probs[order[topK - 1]]))
                && (topP >= 1 || cumBefore[r] / all < topP + massSlack)
        }
        func mayDrop(_ r: Int) -> Bool {
            (topK > 0 && topK < V && Double(probs[order[r]]) <= Double(probs[order[topK]]) * slack)
                || (topP < 1 && cumBefore[r] / all >= topP - massSlack)
        }
        var hi = kept, lo = kept
        while hi < V && mayKeep(hi) { hi += 1 }
        while lo > 1 && mayDrop(lo - 1) { lo -= 1 }
        let rank = order.firstIndex(of: t)!
        guard rank < hi else { return Verdict(outsideRank: rank, kept: kept, logprobs: [], shortfall: .infinity, best: order[0]) }
        var logprobs: [Double] = []
        for K in max(lo, rank + 1)...hi { logprobs.append(log(Double(probs[t]) / cumBefore[K])) }
        var best = order[0], bestScore = score(order[0])
        for r in 1..<lo where probs[order[r]] > 0 {
            let s = score(order[r])
            if s > bestScore { bestScore = s; best = order[r] }
        }
        return Verdict(outsideRank: nil, kept: kept, logprobs: logprobs, shortfall: max(0, bestScore - score(t)), best: best)
    }
}
