import Foundation

/// What the batched sampler needs of a model's incremental decoder (`DecodeState`, `LlamaDecodeState`).
protocol IncrementalDecoder: AnyObject {
    /// Logits (rows,V) for the next token; after `advance`, row i belongs to the i-th active sample.
    var currentLogits: UnsafeMutablePointer<Float> { get }
    /// The final block's output (rows,C) that produced each row of `currentLogits`, before the final norm.
    var currentHidden: UnsafeMutablePointer<Float> { get }
    /// Feeds one token per active sample (`samples[i]` is the sample index of row i, increasing).
    func advance(tokens: [Int32], samples: [Int])
}

extension DecodeState: IncrementalDecoder {}

/// Batched sampling with a KV cache, shared by every architecture so that the same seed, options and prompts give the
/// same draws whatever the model: prompt i's sample k draws its j-th token by Gumbel-max with the noise of
/// (options.gumbelKey(prompt: i, sample: k), j), and commits to the hidden states behind its tokens (`InferenceProof`).
struct BatchedSampler {
    let contextLength: Int
    let vocabSize: Int
    /// Width of the hidden states the proofs commit to.
    let channels: Int
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
        let C = channels
        var keys: [UInt64] = []
        for g in 0..<prompts.count {
            for k in 0..<count { keys.append(options.gumbelKey(prompt: firstIndex + g, sample: k)) }
        }
        // each sample's hidden states (tokens,C), committed to once it is complete
        var hidden = [[Float]](repeating: [], count: prompts.count * count)
        var active = (0..<(prompts.count * count)).filter { limits[$0 / count] > 0 }
        var chooser = TokenChooser(vocabSize: V)
        // rows of the current logits: all samples in order before the first step, the fed ones after
        var rowOf = Array(0..<(prompts.count * count))
        for j in 0..<maxNew {
            var fed: [Int32] = [], stillActive: [Int] = []
            for s in active {
                let g = s / count, k = s % count
                let (token, logprob) = chooser.choose(state.currentLogits + rowOf[s] * V, options: options, key: keys[s], position: j)
                hidden[s].append(contentsOf: UnsafeBufferPointer(start: state.currentHidden + rowOf[s] * C, count: C))
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
        for s in hidden.indices where !hidden[s].isEmpty {
            let g = s / count, k = s % count
            results[g][k].proof = InferenceProof.commit(hidden: hidden[s], rows: results[g][k].tokens.count, channels: C)
        }
        return results
    }
}
