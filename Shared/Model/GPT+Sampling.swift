import Foundation

// Batched sampling with a KV cache, seeded so that the same seed gives the same tokens.
extension GPT {
    /// Batched sampling with a KV cache: the prompt is prefilled once and its cache shared by `count` samples.
    /// An empty prompt starts from bos; a prompt longer than the context keeps its last `contextLength` tokens.
    /// Sample k draws from its own generator seeded by (options.seed, k), so results do not depend on `count`.
    public func sample(prompt: [Int32], count: Int, options: SamplingOptions) -> [SampledCompletion] {
        sample(prompts: [prompt], count: count, options: options)[0]
    }

    /// Greedy or sampled generation for many different prompts (evaluation): one completion each, decoded together.
    /// Prompt i is seeded as in `sample(prompts:count:options:)`.
    public func sample(prompts: [[Int32]], options: SamplingOptions) -> [SampledCompletion] {
        sample(prompts: prompts, count: 1, options: options).map { $0[0] }
    }

    /// `count` samples for each of several prompts, decoded as one batch (each prompt prefilled once).
    /// Result [i][k] is sample k of prompt i, drawn from a generator seeded by (options.seed + i * constant, k),
    /// so it does not depend on which other prompts or how many samples share the batch.
    public func sample(prompts: [[Int32]], count: Int, options: SamplingOptions) -> [[SampledCompletion]] {
        precondition(count >= 1, "sample: count must be at least 1")
        var results: [[SampledCompletion]] = []
        results.reserveCapacity(prompts.count)
        // batches of about 64 samples keep the caches small (one prompt's group is never split)
        let promptsPerBatch = max(1, 64 / count)
        var start = 0
        while start < prompts.count {
            let end = min(prompts.count, start + promptsPerBatch)
            results += sampleBatch(prompts: Array(prompts[start..<end]), firstIndex: start, count: count, options: options)
            start = end
        }
        return results
    }

    private func sampleBatch(prompts rawPrompts: [[Int32]], firstIndex: Int, count: Int, options: SamplingOptions) -> [[SampledCompletion]] {
        let ctx = config.contextLength, V = config.vocabSize
        let prompts = rawPrompts.map { p -> [Int32] in
            let p = p.isEmpty ? [ByteTokenizer.bos] : p
            return p.count > ctx ? Array(p.suffix(ctx)) : p
        }
        // tokens each prompt may generate: the last one needs no position of its own
        let limits = prompts.map { max(0, min(options.maxNewTokens, ctx - $0.count + 1)) }
        let empty = SampledCompletion(tokens: [], logprobs: [], finishedWithEOS: false)
        var results = prompts.map { _ in [SampledCompletion](repeating: empty, count: count) }
        let maxNew = limits.max() ?? 0
        guard maxNew > 0 else { return results }

        let state = DecodeState(model: self, prompts: prompts, perGroup: count, maxSteps: maxNew - 1)
        var rngs: [SeededGenerator] = []
        for g in 0..<prompts.count {
            for k in 0..<count { rngs.append(options.generator(prompt: firstIndex + g, sample: k)) }
        }
        var active = (0..<(prompts.count * count)).filter { limits[$0 / count] > 0 }
        var chooser = TokenChooser(vocabSize: V)
        // rows of the current logits: all samples in order before the first step, the fed ones after
        var rowOf = Array(0..<(prompts.count * count))
        for j in 0..<maxNew {
            var fed: [Int32] = [], stillActive: [Int] = []
            for s in active {
                let g = s / count, k = s % count
                let (token, logprob) = chooser.choose(state.currentLogits + rowOf[s] * V, options: options, rng: &rngs[s])
                results[g][k].tokens.append(token)
                results[g][k].logprobs.append(logprob)
                if options.stopAtEOS && token == ByteTokenizer.eos {
                    results[g][k].finishedWithEOS = true
                } else if j + 1 < limits[g] {
                    fed.append(token)
                    stillActive.append(s)
                }
            }
            active = stillActive
            if active.isEmpty { break }
            for (row, s) in active.enumerated() { rowOf[s] = row }
            state.advance(tokens: fed, samples: active)
        }
        return results
    }
}
