import Foundation

/// Turns one row of logits into a token and its log-probability, with scratch kept between calls.
/// Sampled draws are Gumbel-max over the support with counter-based noise (`SamplingOptions.gumbelNoise`): the
/// token is argmax_i (log w_i + G(key, position, i)), which a validator recomputes from the seed for any position.
struct TokenChooser {
    let V: Int
    var probs: [Float]
    var order: [Int]

    init(vocabSize: Int) {
        V = vocabSize
        probs = [Float](repeating: 0, count: vocabSize)
        order = Array(0..<vocabSize)
    }

    /// logits (V); key from `SamplingOptions.gumbelKey`, position = index of the token in its completion.
    mutating func choose(_ logits: UnsafePointer<Float>, options: SamplingOptions, key: UInt64, position: Int) -> (Int32, Float) {
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
        var chosen = -1
        var best = -Double.infinity
        for r in 0..<kept {
            let i = truncate ? order[r] : r
            guard probs[i] > 0 else { continue }  // underflowed weight: log w = −inf, never the argmax
            let score = log(Double(probs[i])) + SamplingOptions.gumbelNoise(key: key, position: position, token: i)
            if score > best { best = score; chosen = i }
        }
        return (Int32(chosen), Float(log(Double(probs[chosen]) / total)))
    }
}
