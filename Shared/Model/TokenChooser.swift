import Foundation

/// Turns one row of logits into a token and its log-probability, with scratch kept between calls.
/// Sampled draws are Gumbel-max over the support with counter-based noise (`SamplingOptions.gumbelNoise`): the
/// token is argmax_i (log w_i + G(key, position, i)), which a validator recomputes from the seed for any position.
struct TokenChooser {
    var scratch: SamplingScratch

    init(vocabSize: Int) { scratch = SamplingScratch(vocabSize: vocabSize) }

    /// logits (V); key from `SamplingOptions.gumbelKey`, position = index of the token in its completion.
    mutating func choose(_ logits: UnsafePointer<Float>, options: SamplingOptions, key: UInt64, position: Int) -> (Int32, Float) {
        if options.temperature <= 0 {
            let greedy = SamplingScratch.greedy(logits, scratch.V)
            return (Int32(greedy.best), Float(-greedy.logSum))
        }
        let (kept, total, truncate) = scratch.weights(logits, options.distribution)
        let (probs, order) = (scratch.probs, scratch.order)
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
