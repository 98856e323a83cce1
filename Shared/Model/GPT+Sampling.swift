import Foundation

// Batched sampling with a KV cache, seeded so that the same seed gives the same tokens.
extension GPT {
    /// Batched sampling with a KV cache: the prompt is prefilled once and its cache shared by `count` samples.
    /// An empty prompt starts from bos; a prompt longer than the context keeps its last `contextLength` tokens.
    /// Sample i draws from its own generator seeded by (options.seed, i), so results do not depend on `count`.
    public func sample(prompt: [Int32], count: Int, options: SamplingOptions) -> [SampledCompletion] {
        precondition(count >= 1, "sample: count must be at least 1")
        var prompt = prompt.isEmpty ? [ByteTokenizer.bos] : prompt
        if prompt.count > config.contextLength { prompt = Array(prompt.suffix(config.contextLength)) }
        let maxNew = max(0, min(options.maxNewTokens, config.contextLength - prompt.count + 1))
        var results = [SampledCompletion](repeating: SampledCompletion(tokens: [], logprobs: [], finishedWithEOS: false), count: count)
        guard maxNew > 0 else { return results }
        for i in 0..<count { results[i].tokens.reserveCapacity(maxNew); results[i].logprobs.reserveCapacity(maxNew) }

        let state = DecodeState(model: self, prompt: prompt, count: count, maxSteps: maxNew - 1)
        var rngs = (0..<count).map { SeededGenerator(seed: options.seed ^ (UInt64($0) &* 0x9E37_79B9_7F4A_7C15)) }
        var active = Array(0..<count)
        var chooser = TokenChooser(vocabSize: config.vocabSize)
        for j in 0..<maxNew {
            var fed: [Int32] = [], stillActive: [Int] = []
            for (row, s) in active.enumerated() {
                let (token, logprob) = chooser.choose(state.currentLogits + row * config.vocabSize, options: options, rng: &rngs[s])
                results[s].tokens.append(token)
                results[s].logprobs.append(logprob)
                if options.stopAtEOS && token == ByteTokenizer.eos {
                    results[s].finishedWithEOS = true
                } else {
                    fed.append(token)
                    stillActive.append(s)
                }
            }
            active = stillActive
            if active.isEmpty || j == maxNew - 1 { break }
            state.advance(tokens: fed, samples: active)
        }
        return results
    }

    /// Generation for many different prompts (evaluation): one completion each, prompt i seeded by (options.seed, i).
    public func sample(prompts: [[Int32]], options: SamplingOptions) -> [SampledCompletion] {
        prompts.enumerated().map { i, prompt in
            var o = options
            o.seed = options.seed &+ UInt64(i) &* 0xD1B5_4A32_D192_ED03
            return sample(prompt: prompt, count: 1, options: o)[0]
        }
    }
}

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
