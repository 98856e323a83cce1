import Foundation

// Batched sampling with a KV cache for Llama, through the sampler GPT uses (same seeding, options and token choice);
// the one-prompt and one-sample forms come from `Policy`.
extension Llama {
    /// `count` samples for each of several prompts, decoded as one batch (each prompt prefilled once).
    /// Result [i][k] is sample k of prompt i, drawn by Gumbel-max with the noise of options.gumbelKey(prompt: i, sample: k),
    /// so it does not depend on which other prompts or how many samples share the batch.
    public func sample(prompts: [[Int32]], count: Int, options: SamplingOptions) -> [[SampledCompletion]] {
        sampler.sample(prompts: prompts, count: count, options: options)
    }

    /// The shared batched sampler over this model's KV cache, with the config's bos and eos.
    var sampler: BatchedSampler {
        BatchedSampler(contextLength: config.contextLength, vocabSize: config.vocabSize, channels: config.channels, bos: config.bosToken, eos: config.eosToken) {
            LlamaDecodeState(model: self, prompts: $0, perGroup: $1, maxSteps: $2)
        }
    }
}
