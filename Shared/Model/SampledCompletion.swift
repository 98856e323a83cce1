/// One generated continuation of a prompt.
public struct SampledCompletion: Sendable, Equatable, Hashable {
    /// Generated tokens (the eos token included if hit).
    public var tokens: [Int32]
    /// Log-prob of each sampled token under the sampling distribution (after temperature, top-k and top-p);
    /// with temperature 0 (greedy), under the model's plain distribution.
    public var logprobs: [Float]
    public var finishedWithEOS: Bool
    /// Commitment to the hidden states that chose the tokens (`InferenceProof.commit`, default chunk and top-k);
    /// empty when the completion is.
    public var proof: [UInt8]

    public init(tokens: [Int32], logprobs: [Float], finishedWithEOS: Bool, proof: [UInt8] = []) {
        self.tokens = tokens
        self.logprobs = logprobs
        self.finishedWithEOS = finishedWithEOS
        self.proof = proof
    }
}
