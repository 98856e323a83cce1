import Foundation

/// What the batched sampler needs of a model's incremental decoder (`DecodeState`, `LlamaDecodeState`).
protocol IncrementalDecoder: AnyObject {
    /// Logits (rows,V) for the next token; after `advance`, row i belongs to the i-th active sample.
    var currentLogits: UnsafeMutablePointer<Float> { get }
    /// Feeds one token per active sample (`samples[i]` is the sample index of row i, increasing).
    func advance(tokens: [Int32], samples: [Int])
}

extension DecodeState: IncrementalDecoder {}

/// Batched sampling with a KV cache, shared by every architecture so that the same seed, options and prompts give the
/// same draws whatever the model: prompt i's sample k draws from a generator seeded by (options.seed + i * constant, k).
struct BatchedSampler {
    let contextLength: Int
    let vocabSize: Int
    /// Fed when a prompt is empty.
    let bos: Int32
    /// Ends a completion when options.stopAtEOS.
    let eos: Int32
    /// Makes the decoder for (prompts, samples per prompt, tokens fed after the prompts).
    let makeDecoder: (_ prompts: [[Int32]], _ perGroup: Int, _ maxSteps: Int) -> any IncrementalDecoder

    /// `count` samples for each prompt; result [i][k] is sample k of prompt i.
    func sample(prompts: [[Int32]], count: Int, options: SamplingOptions) -> [[SampledCompletion]] {
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
        let ctx = contextLength, V = vocabSize
        let prompts = rawPrompts.map { p -> [Int32] in
            let p = p.isEmpty ? [bos] : p
            return p.count > ctx ? Array(p.suffix(ctx)) : p
        }
        // tokens each prompt may generate: the last one needs no position of its own
        let limits = prompts.map { max(0, min(options.maxNewTokens, ctx - $0.count + 1)) }
        let empty = SampledCompletion(tokens: [], logprobs: [], finishedWithEOS: false)
        var results = prompts.map { _ in [SampledCompletion](repeating: empty, count: count) }
        let maxNew = limits.max() ?? 0
        guard maxNew > 0 else { return results }

        let state = makeDecoder(prompts, count, maxNew - 1)
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
                if options.stopAtEOS && token == eos {
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
