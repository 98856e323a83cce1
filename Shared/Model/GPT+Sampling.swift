import Foundation

// Batched sampling with a KV cache, seeded so that the same seed gives the same tokens.
extension GPT {
    /// Batched sampling with a KV cache: the prompt is prefilled once and its cache shared by `count` samples.
    /// An empty prompt starts from bos; a prompt longer than the context keeps its last `contextLength` tokens.
    /// Sample k draws with the Gumbel noise of options.gumbelKey(prompt: 0, sample: k), so results do not depend on `count`.
    public func sample(prompt: [Int32], count: Int, options: SamplingOptions) -> [SampledCompletion] {
        sample(prompts: [prompt], count: count, options: options)[0]
    }

    /// Greedy or sampled generation for many different prompts (evaluation): one completion each, decoded together.
    /// Prompt i is seeded as in `sample(prompts:count:options:)`.
    public func sample(prompts: [[Int32]], options: SamplingOptions) -> [SampledCompletion] {
        sample(prompts: prompts, count: 1, options: options).map { $0[0] }
    }

    /// `count` samples for each of several prompts, decoded as one batch (each prompt prefilled once).
    /// Result [i][k] is sample k of prompt i, drawn by Gumbel-max with the noise of options.gumbelKey(prompt: i, sample: k),
    /// so it does not depend on which other prompts or how many samples share the batch.
    public func sample(prompts: [[Int32]], count: Int, options: SamplingOptions) -> [[SampledCompletion]] {
        sampler.sample(prompts: prompts, count: count, options: options)
    }

    /// The shared batched sampler over this model's KV cache, with the byte tokenizer's bos and eos.
    var sampler: BatchedSampler {
        BatchedSampler(contextLength: config.contextLength, vocabSize: config.vocabSize, channels: config.channels, bos: ByteTokenizer.bos, eos: ByteTokenizer.eos) {
            DecodeState(model: self, prompts: $0, perGroup: $1, maxSteps: $2)
        }
    }
}
