import Foundation

/// The distribution the sampler draws a token from: logits / temperature, cut to the top-k and top-p support,
/// renormalised over it. Training computes log-probs under the same distribution, so the importance ratio of an
/// unchanged policy is 1 whatever the sampling settings.
public struct TokenDistribution: Sendable, Codable, Equatable, Hashable {
    /// 0 is greedy: the sampler then records the plain (temperature 1, untruncated) log-prob, and training uses that.
    public var temperature: Float
    /// Keep the k most likely tokens; 0 = off.
    public var topK: Int
    /// Keep the fewest most likely tokens whose mass reaches topP; 1 = off.
    public var topP: Float

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
    }

    /// The model's own distribution: temperature 1, nothing cut.
    public static let plain = TokenDistribution()

    /// Whether log-probs are the plain log-softmax (training's fast path): greedy, or temperature 1 with nothing cut.
    public func isPlain(vocabSize: Int) -> Bool { temperature <= 0 || (temperature == 1 && !truncates(vocabSize: vocabSize)) }

    /// Whether top-k or top-p removes any token of a vocabulary of `V`.
    func truncates(vocabSize V: Int) -> Bool { (topK > 0 && topK < V) || topP < 1 }

    /// Refuses settings no sampler can use, naming the field.
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw TokenDistributionError(field: "temperature", value: "\(temperature)", expected: "finite and >= 0 (0 = greedy)")
        }
        guard topK >= 0 else { throw TokenDistributionError(field: "topK", value: "\(topK)", expected: ">= 0 (0 = off)") }
        guard topP > 0, topP <= 1 else { throw TokenDistributionError(field: "topP", value: "\(topP)", expected: "in (0, 1] (1 = off)") }
    }

    /// The sampler's weights of one row of logits (V): probs[i] = exp((z_i − max) / T) rounded to float, their total in
    /// double; when truncating (`ranked`), `order` (V) ranks the tokens by descending weight, ties by lower id, and the
    /// support is its first `kept` entries, else the support is every token. probs may alias logits. Needs T > 0.
    /// The one implementation of the support rule: TokenChooser samples with it and training's head trains with it.
    func weights(_ logits: UnsafePointer<Float>, _ V: Int, probs: UnsafeMutablePointer<Float>, order: UnsafeMutablePointer<Int>)
        -> (kept: Int, total: Double, ranked: Bool, maxLogit: Float) {
        let invT = 1 / temperature
        var mx = -Float.infinity
        for i in 0..<V { mx = max(mx, logits[i]) }
        var total: Double = 0
        for i in 0..<V {
            let p = Float(exp(Double((logits[i] - mx) * invT)))
            probs[i] = p
            total += Double(p)
        }
        let truncate = truncates(vocabSize: V)
        var kept = V
        if truncate {
            // descending probability, ties by token id so the order is deterministic
            for i in 0..<V { order[i] = i }
            var ranks = UnsafeMutableBufferPointer(start: order, count: V)
            ranks.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
            if topK > 0 { kept = min(kept, topK) }
            if topP < 1 {
                var cum: Double = 0
                for r in 0..<kept {
                    cum += Double(probs[order[r]]) / total
                    if cum >= Double(topP) { kept = r + 1; break }
                }
            }
            total = 0
            for r in 0..<kept { total += Double(probs[order[r]]) }
        }
        return (kept, total, truncate, mx)
    }
}

/// A sampling setting out of range: which field, its value, what it must be.
public struct TokenDistributionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var value: String
    public var expected: String

    public var description: String { "sampling \(field) = \(value): must be \(expected)" }
}

extension SamplingOptions {
    /// The distribution these options draw from (what training must compute log-probs under).
    public var distribution: TokenDistribution { TokenDistribution(temperature: temperature, topK: topK, topP: topP) }
}

/// The weights' scratch (`TokenDistribution.weights`), kept between calls by the sampler (`TokenChooser`) and the
/// validator's judge (`TokenJudge`), which must see the same weights in the same order.
struct SamplingScratch {
    let V: Int
    var probs: [Float]
    var order: [Int]

    init(vocabSize: Int) {
        V = vocabSize
        probs = [Float](repeating: 0, count: vocabSize)
        order = Array(0..<vocabSize)
    }

    /// Fills `probs` (and `order` when the support is cut) for one row of logits.
    mutating func weights(_ logits: UnsafePointer<Float>, _ distribution: TokenDistribution) -> (kept: Int, total: Double, ranked: Bool) {
        let V = self.V
        let (kept, total, ranked, _) = probs.withUnsafeMutableBufferPointer { p in
            order.withUnsafeMutableBufferPointer { o in distribution.weights(logits, V, probs: p.baseAddress!, order: o.baseAddress!) }
        }
        return (kept, total, ranked)
    }

    /// Greedy decoding's token, the largest logit, and log Σ exp(logit − largest) (so log q(best) = −logSum).
    static func greedy(_ logits: UnsafePointer<Float>, _ V: Int) -> (best: Int, max: Float, logSum: Double) {
        var best = 0
        for i in 1..<V where logits[i] > logits[best] { best = i }
        let mx = logits[best]
        var s: Double = 0
        for i in 0..<V { s += exp(Double(logits[i] - mx)) }
        return (best, mx, log(s))
    }
}
