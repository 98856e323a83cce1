import Foundation

/// Turns one row of logits into a token and its log-probability, with scratch kept between calls.
struct TokenChooser {
    let V: Int
    var probs: [Float]
    var order: [Int]

    init(vocabSize: Int) {
        V = vocabSize
        probs = [Float](repeating: 0, count: vocabSize)
        order = Array(0..<vocabSize)
    }

    mutating func choose(_ logits: UnsafePointer<Float>, options: SamplingOptions, rng: inout SeededGenerator) -> (Int32, Float) {
        let V = self.V
        if options.temperature <= 0 {
            var best = 0
            for i in 1..<V where logits[i] > logits[best] { best = i }
            let mx = logits[best]
            var s: Double = 0
            for i in 0..<V { s += exp(Double(logits[i] - mx)) }
            return (Int32(best), Float(-log(s)))
        }
        let invT = 1 / options.temperature
        var mx = -Float.infinity
        for i in 0..<V { mx = max(mx, logits[i]) }
        var total: Double = 0
        for i in 0..<V {
            let p = Float(exp(Double((logits[i] - mx) * invT)))
            probs[i] = p
            total += Double(p)
        }
        let truncate = (options.topK > 0 && options.topK < V) || options.topP < 1
        var kept = V
        if truncate {
            // descending probability, ties by token id so the order is deterministic
            for i in 0..<V { order[i] = i }
            let pr = probs
            order.sort { pr[$0] > pr[$1] || (pr[$0] == pr[$1] && $0 < $1) }
            if options.topK > 0 { kept = min(kept, options.topK) }
            if options.topP < 1 {
                var cum: Double = 0
                for r in 0..<kept {
                    cum += Double(probs[order[r]]) / total
                    if cum >= Double(options.topP) { kept = r + 1; break }
                }
            }
            total = 0
            for r in 0..<kept { total += Double(probs[order[r]]) }
        }
        let u = Double(rng.nextUniform()) * total
        var acc: Double = 0
        var chosen = -1
        for r in 0..<kept {
            let i = truncate ? order[r] : r
            acc += Double(probs[i])
            if u < acc { chosen = i; break }
        }
        if chosen < 0 {  // rounding at the very end: last token with nonzero mass
            for r in stride(from: kept - 1, through: 0, by: -1) {
                let i = truncate ? order[r] : r
                if probs[i] > 0 { chosen = i; break }
            }
        }
        return (Int32(chosen), Float(log(Double(probs[chosen]) / total)))
    }
}
