/// One generated continuation of a prompt.
public struct SampledCompletion: Sendable, Equatable, Hashable {
    /// Generated tokens (the eos token included if hit).
    public var tokens: [Int32]
    /// Log-prob of each sampled token under the sampling distribution (after temperature, top-k and top-p);
    /// with temperature 0 (greedy), under the model's plain distribution.
    public var logprobs: [Float]
    public var finishedWithEOS: Bool

    public init(tokens: [Int32], logprobs: [Float], finishedWithEOS: Bool) {
        self.tokens = tokens
        self.logprobs = logprobs
        self.finishedWithEOS = finishedWithEOS
    }
}
