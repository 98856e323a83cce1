// TEMPORARY (not to be committed): the verifier API the model branch provides, so this target compiles before the merge.
import Model

public struct ProofCheck: Sendable { public var passed: Bool }
public struct VerificationFailure: Sendable, Equatable {
    public var check: String; public var position: Int?; public var measured: Double; public var limit: Double; public var detail: String
}
public struct CompletionVerification: Sendable {
    public var failures: [VerificationFailure]; public var passed: Bool { failures.isEmpty }; public var maxLogprobError: Float; public var proof: ProofCheck?
}
public enum CompletionVerifier {
    public static func verify(policy: any Policy, prompt: [Int32], completion: SampledCompletion, options: SamplingOptions, promptIndex: Int, sample: Int) -> CompletionVerification {
        fatalError("pending merge")
    }
}
extension SampledCompletion {
    public init(tokens: [Int32], logprobs: [Float], finishedWithEOS: Bool, proof: [UInt8]) { self.init(tokens: tokens, logprobs: logprobs, finishedWithEOS: finishedWithEOS) }
    public var proof: [UInt8] { [] }
}
