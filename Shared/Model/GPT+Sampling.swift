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
