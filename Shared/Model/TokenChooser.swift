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
        let (kept, total, truncate, _) = probs.withUnsafeMutableBufferPointer { p in
            order.withUnsafeMutableBufferPointer { o in options.distribution.weights(logits, V, probs: p.baseAddress!, order: o.baseAddress!) }
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
