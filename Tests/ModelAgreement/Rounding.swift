import Foundation
import Model

/// How far apart two computations of the same model may land when they run different kernels: batched against
/// single, KV cache against the full forward, another OpenBLAS core type or thread count. They agree to rounding,
/// never bit for bit by anything but luck.
///
/// The bound, from the arithmetic of the tiny models the tests use (C ≤ 64 channels, MLP width 4C, T ≤ 64):
/// a float32 dot product of length K carries an error of at most K·u·Σ|aᵢbᵢ| (u = 2⁻²⁴ ≈ 6e-8), and two
/// summation orders (blocking, FMA or not) can differ by twice that. The longest product is K = 4C ≤ 256, so one
/// product may move by up to 3e-5 of its magnitude; LayerNorm renormalises between layers, so the error does not
/// compound past a few such products, and the logits of these models are O(1–10). A log-prob is a logit minus a
/// log-sum-exp of logits, so it moves by about twice a logit's error. That puts a worst case near 1e-4 in
/// absolute terms for a log-prob of magnitude ≤ 10; the usual error (random-walk √K, not K) is about 1e-6, which is
/// what the tests see.
public enum Rounding {
    /// Largest |a − b| allowed between two log-probs (or logits): absolute part.
    public static let absolute: Float = 1e-4
    /// … plus this much of the larger magnitude.
    public static let relative: Float = 1e-4

    /// Whether two floats from two computations agree to rounding.
    public static func agree(_ a: Float, _ b: Float) -> Bool {
        a.isFinite && b.isFinite && abs(a - b) <= absolute + relative * max(abs(a), abs(b))
    }

    /// Index of the first pair of gradients that disagree beyond rounding, nil if none. A gradient entry is a sum
    /// over every token of the batch of products of length ≤ 4C, so its error is bounded relative to the scale of
    /// the whole vector (its largest entry), not to its own size: entries that cancel to near zero keep the error of
    /// the terms they cancelled. K·u·scale ≈ 1.5e-5·scale for K = 256; allow 1e-4·scale plus `relative` of the entry.
    public static func firstDisagreement(gradients a: [Float], _ b: [Float]) -> Int? {
        guard a.count == b.count else { return min(a.count, b.count) }
        let scale = max(a.map(abs).max() ?? 0, b.map(abs).max() ?? 0)
        return a.indices.first { i in
            !(a[i].isFinite && b[i].isFinite && abs(a[i] - b[i]) <= 1e-4 * scale + relative * max(abs(a[i]), abs(b[i])))
        }
    }

    /// A decision closer than this to its boundary may go either way between two computations: ten times the
    /// logit tolerance. For a greedy pick it bounds the gap of the top two logits; moving every logit by up to
    /// δ moves each probability by a factor of at most e^{±2δ}, so a sampled (Gumbel-max) draw is fragile where the
    /// best two scores log p + G are within 4δ/T of each other, or where two probabilities a cut depends on are
    /// within a factor 1 ± 2δ of each other.
    public static let tieMargin: Float = 1e-3

    /// Whether a rounding-sized change of `logits` could change the token that `options` draws: a greedy pick within
    /// `tieMargin` of the runner-up; a sampled draw whose best two Gumbel scores are within 4·`tieMargin`/T, or whose
    /// token's rank or truncation cut (top-k, top-p) sits on a near-tie. `key` is the sample's
    /// (`SamplingOptions.gumbelKey`), `position` the token's index in its completion.
    /// Returns nil when the choice is stable, else why it is fragile. `chosen` is the token a computation drew.
    public static func fragility(logits: ArraySlice<Float>, chosen: Int32, options: SamplingOptions,
                                 key: UInt64, position: Int) -> String? {
        let logits = Array(logits)
        let V = logits.count
        let margin = Double(tieMargin), probabilityMargin = 2 * margin
        if options.temperature <= 0 {
            let ranked = logits.indices.sorted { logits[$0] > logits[$1] }
            let gap = Double(logits[ranked[0]] - logits[ranked[1]])
            return gap < margin ? "greedy near-tie: top two logits \(gap) apart" : nil
        }
        // the sampler's arithmetic, in Double: tempered probabilities, optional truncation, then Gumbel-max
        let invT = 1 / Double(options.temperature)
        let mx = Double(logits.max()!)
        let p: [Double] = logits.map { (x: Float) -> Double in exp((Double(x) - mx) * invT) }
        let truncate = (options.topK > 0 && options.topK < V) || options.topP < 1
        var order = Array(0..<V)
        var kept = V
        var reasons: [String] = []
        if truncate {
            order.sort { (i: Int, j: Int) -> Bool in p[i] > p[j] || (p[i] == p[j] && i < j) }
            if options.topK > 0 { kept = min(kept, options.topK) }
            if options.topP < 1 {
                let all = p.reduce(0, +)
                var cum = 0.0
                for r in 0..<kept {
                    cum += p[order[r]] / all
                    if cum >= Double(options.topP) {
                        kept = r + 1
                        let topP = Double(options.topP), before = cum - p[order[r]] / all
                        if cum - topP < probabilityMargin || before > topP - probabilityMargin {
                            reasons.append("top-p cut near a tie")
                        }
                        break
                    }
                }
            }
            if kept < V, p[order[kept - 1]] - p[order[kept]] < probabilityMargin * p[order[kept - 1]] {
                reasons.append("truncation cut between near-equal tokens")
            }
            // a near-equal neighbour in rank order can swap places with the chosen token
            if let rank = order.firstIndex(of: Int(chosen)), rank < kept {
                for neighbour in [rank - 1, rank + 1] where neighbour >= 0 && neighbour < kept {
                    if abs(p[order[neighbour]] - p[order[rank]]) < probabilityMargin * p[order[rank]] { reasons.append("chosen token's rank near a tie") }
                }
            }
        }
        let scores = order.prefix(kept).filter { p[$0] > 0 }
            .map { log(p[$0]) + SamplingOptions.gumbelNoise(key: key, position: position, token: $0) }.sorted(by: >)
        if scores.count >= 2, scores[0] - scores[1] < 2 * probabilityMargin * invT {
            reasons.append("best two Gumbel scores within \(2 * probabilityMargin * invT)")
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }
}
