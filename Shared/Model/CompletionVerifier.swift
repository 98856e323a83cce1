import Foundation

/// How far an honest worker's claims may sit from the validator's own computation of them. Floats differ across CPUs,
/// OpenBLAS kernels, thread counts and batch shapes (KV-cache decode on the worker, one full forward here), so every
/// comparison has an allowance; the defaults are grounded in measurements (docs/benchmarks.md, "Verifiable inference").
public struct VerificationTolerances: Sendable, Equatable, Hashable {
    /// Largest |claimed − recomputed| of a log-prob. Float32 bounds (see ModelAgreement's Rounding): a dot product of
    /// length K moves by up to K·2⁻²⁴ of its magnitude between kernels, so logits of O(10) may move by ~1e-4 and a
    /// log-prob by twice that in the worst case; measured honest worst case (KV-cache decode at batch shapes 1 to 16
    /// against one full forward, GPT-2 and Llama, OpenBLAS Prescott, Haswell and SkylakeX kernels): 1.0e-5. The
    /// default 2e-3 keeps a factor of 10 over the worst-case bound and 200 over the measurement; an edit of 0.01 fails.
    public var logprobAbsolute: Float
    /// Near-tie allowance of a choice: the chosen token's Gumbel score (log w + G; for greedy its logit) may fall short
    /// of the best by this much; also how close a top-k/top-p cut must be (in log-weight, and in mass by
    /// 2·margin·topP) for a token on either side to count as kept. Honest shortfall measured: 0 (every token was the argmax
    /// of the validator's own scores); a log-weight moves by about a logit's error / T, so 1e-3 is ~100 times that.
    public var gumbelMargin: Double
    /// When a hidden-state proof passes. By default `ProofThresholds.float32`, since workers and validators both compute
    /// in float32, as Tributary's do (`validation.proof_thresholds`): it also catches by the proof a bf16-rounded, 8-bit
    /// or 1e-3-perturbed copy of the weights, which can keep every log-prob of a short completion within
    /// `logprobAbsolute`. TOPLOC's (`ProofThresholds.default`) are made for bf16 GPU inference.
    public var proof: ProofThresholds

    public init(logprobAbsolute: Float = 2e-3, gumbelMargin: Double = 1e-3, proof: ProofThresholds = .float32) {
        self.logprobAbsolute = logprobAbsolute
        self.gumbelMargin = gumbelMargin
        self.proof = proof
    }

    public static let `default` = VerificationTolerances()
}

/// One check a completion failed: which ("proof", "logprob", "support", "sampler", "ending", "shape"), at which
/// generated position (the worst one when several failed; nil when it is about the whole completion), the measured
/// figure against its limit, and a sentence for logs.
public struct VerificationFailure: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var check: String
    public var position: Int?
    public var measured: Double
    public var limit: Double
    public var detail: String

    public init(check: String, position: Int?, measured: Double, limit: Double, detail: String) {
        self.check = check
        self.position = position
        self.measured = measured
        self.limit = limit
        self.detail = detail
    }

    public var description: String { "\(check)\(position.map { " at \($0)" } ?? ""): \(detail) (measured \(measured), limit \(limit))" }
}

/// What verifying one completion found. At most one failure per check (its worst position).
public struct CompletionVerification: Sendable, Equatable {
    public var failures: [VerificationFailure]
    public var passed: Bool { failures.isEmpty }
    /// Largest |claimed − recomputed| log-prob over the tokens inside the support (0 when none was compared).
    public var maxLogprobError: Float
    /// The proof's check; nil when the shape check refused the completion first.
    public var proof: ProofCheck?

    public init(failures: [VerificationFailure] = [], maxLogprobError: Float = 0, proof: ProofCheck? = nil) {
        self.failures = failures
        self.maxLogprobError = maxLogprobError
        self.proof = proof
    }
}

/// Re-runs a claimed completion through the claimed policy (one full forward pass over prompt and completion) and
/// checks what an untrusted worker claimed: the hidden-state proof, each log-prob, that each token lies in the
/// sampling support and is the Gumbel-max choice of the seed's noise (or the argmax when greedy), and how it ended.
public enum CompletionVerifier {
    /// prompt as fed to the sampler (non-empty; the sampler feeds bos for an empty prompt), completion as claimed, the
    /// options the sampler used, and (promptIndex, sample) as in `sample(prompts:count:options:)`.
    /// Any claimed content is accepted as input: out-of-range tokens, NaN, wrong counts or a bad proof fail a check.
    public static func verify(policy: any Policy, prompt: [Int32], completion: SampledCompletion, options: SamplingOptions,
                              promptIndex: Int, sample: Int, tolerances: VerificationTolerances = .default) -> CompletionVerification {
        verify(policy: policy, prompt: prompt, completions: [completion], options: options, promptIndex: promptIndex,
               firstSample: sample, tolerances: tolerances)[0]
    }

    /// Completions of one prompt (a rollout group; completion i is sample `firstSample + i`), verified as `verify` does
    /// one, but re-run together: one forward pass over several sequences, each padded at its end to the longest of its
    /// batch (attention is causal, so the padding changes nothing before it). A prefill of many rows is what makes
    /// validation cheaper than generation, which decodes one position at a time. Batches are cut so that the forward's
    /// activations stay within `maxActivationBytes` (always at least one sequence; the policy keeps that buffer for its
    /// next call, and the copies of the logits and hidden states returned come on top of it).
    public static func verify(policy: any Policy, prompt: [Int32], completions: [SampledCompletion], options: SamplingOptions,
                              promptIndex: Int, firstSample: Int = 0, tolerances: VerificationTolerances = .default,
                              maxActivationBytes: Int = 64 << 20) -> [CompletionVerification] {
        var results = [CompletionVerification](repeating: CompletionVerification(), count: completions.count)
        var pending: [Int] = []
        for (i, completion) in completions.enumerated() {
            if let refusal = shapeRefusal(policy: policy, prompt: prompt, completion: completion, options: options) {
                results[i].failures.append(refusal)
            } else if completion.tokens.isEmpty {
                results[i] = check(policy: policy, prompt: prompt, completion: completion, options: options,
                                   key: options.gumbelKey(prompt: promptIndex, sample: firstSample + i), tolerances: tolerances, computed: nil)
            } else {
                pending.append(i)
            }
        }
        // longest first, so each batch's padding is short; a batch's rows are as many as its length's activations allow
        pending.sort { completions[$0].tokens.count > completions[$1].tokens.count }
        let P = prompt.count, V = policy.vocabSize
        let fixedBytes = policy.trainingStateBytes(batch: 0, time: 1)
        var next = 0
        while next < pending.count {
            let T = P + completions[pending[next]].tokens.count - 1
            let perRow = max(1, policy.trainingStateBytes(batch: 1, time: T) - fixedBytes)
            let rows = min(pending.count - next, max(1, maxActivationBytes / perRow))
            let batch = Array(pending[next..<(next + rows)])
            next += rows
            var tokens = [Int32](repeating: 0, count: rows * T)
            for (r, i) in batch.enumerated() {
                let sequence = prompt + completions[i].tokens.dropLast()
                tokens.replaceSubrange((r * T)..<(r * T + sequence.count), with: sequence)
            }
            let (logits, hidden) = policy.logitsAndHiddenStates(tokens: tokens, batch: rows, time: T)
            let C = hidden.count / (rows * T)
            logits.withUnsafeBufferPointer { l in
                for (r, i) in batch.enumerated() {
                    // row P − 1 + j of sequence r chose token j
                    let n = completions[i].tokens.count
                    let first = r * T + P - 1
                    let computed = Computed(logits: l.baseAddress! + first * V, hidden: Array(hidden[(first * C)..<((first + n) * C)]), channels: C)
                    results[i] = check(policy: policy, prompt: prompt, completion: completions[i], options: options,
                                       key: options.gumbelKey(prompt: promptIndex, sample: firstSample + i), tolerances: tolerances,
                                       computed: computed)
                }
            }
        }
        return results
    }

    /// What the forward pass computed for one completion: the logits (n,V) and hidden states (n,C) of the positions
    /// that chose its n tokens.
    struct Computed {
        var logits: UnsafePointer<Float>
        var hidden: [Float]
        var channels: Int
    }

    /// The checks of one completion that passed the shape check; `computed` is nil only for an empty completion.
    static func check(policy: any Policy, prompt: [Int32], completion: SampledCompletion, options: SamplingOptions, key: UInt64,
                      tolerances: VerificationTolerances, computed: Computed?) -> CompletionVerification {
        var result = CompletionVerification()
        let ctx = policy.contextLength, V = policy.vocabSize, P = prompt.count
        let tokens = completion.tokens, n = tokens.count
        var worst: [String: VerificationFailure] = [:]
        var counts: [String: Int] = [:]
        func fail(_ check: String, _ position: Int?, measured: Double, limit: Double, _ detail: String) {
            counts[check, default: 0] += 1
            if let w = worst[check], w.measured >= measured { return }
            worst[check] = VerificationFailure(check: check, position: position, measured: measured, limit: limit, detail: detail)
        }

        // ending: eos only as the last token and only when flagged, else exactly the sampler's limit of tokens
        let limit = max(0, min(options.maxNewTokens, ctx - P + 1))
        let eos = policy.eosToken
        if options.stopAtEOS, let j = tokens.dropLast().firstIndex(of: eos) {
            fail("ending", j, measured: Double(j), limit: Double(n - 1), "eos at position \(j) but the completion goes on")
        }
        if n > limit {
            fail("ending", nil, measured: Double(n), limit: Double(limit), "\(n) tokens, the sampler stops at \(limit)")
        } else if completion.finishedWithEOS {
            if !options.stopAtEOS || tokens.last != eos {
                fail("ending", n > 0 ? n - 1 : nil, measured: Double(n), limit: Double(limit),
                     options.stopAtEOS ? "claims eos but the last token is not eos" : "claims eos but the options do not stop at eos")
            }
        } else if options.stopAtEOS && n > 0 && tokens.last == eos {
            fail("ending", n - 1, measured: Double(n), limit: Double(limit), "ends with eos but does not claim it")
        } else if n != limit {
            fail("ending", nil, measured: Double(n), limit: Double(limit), "\(n) tokens without eos, the sampler makes \(limit)")
        }

        guard n > 0, let computed else {
            result.proof = InferenceProof.check(proof: completion.proof, hidden: [], rows: 0, channels: 1, thresholds: tolerances.proof)
            if result.proof?.passed == false {
                fail("proof", nil, measured: Double(completion.proof.count), limit: 0, result.proof!.detail)
            }
            result.failures = ["ending", "proof"].compactMap { worst[$0] }
            return result
        }

        let C = computed.channels
        let proof = InferenceProof.check(proof: completion.proof, hidden: computed.hidden, rows: n, channels: C, thresholds: tolerances.proof)
        result.proof = proof
        if !proof.passed {
            let chunkStart = (proof.worstChunk ?? 0) * 32
            if proof.chunks == 0 {
                fail("proof", nil, measured: Double(completion.proof.count),
                     limit: Double(InferenceProof.byteCount(rows: n, channels: C) ?? 0), proof.detail)
            } else if proof.exponentMatches < proof.requiredMatches {
                fail("proof", chunkStart, measured: Double(proof.exponentMatches), limit: Double(proof.requiredMatches), proof.detail)
            } else if proof.meanMantissaError > tolerances.proof.meanMantissaError {
                fail("proof", chunkStart, measured: proof.meanMantissaError, limit: tolerances.proof.meanMantissaError, proof.detail)
            } else {
                fail("proof", chunkStart, measured: proof.medianMantissaError, limit: tolerances.proof.medianMantissaError, proof.detail)
            }
        }

        let tol = Double(tolerances.logprobAbsolute), margin = tolerances.gumbelMargin
        var judge = TokenJudge(vocabSize: V)
        for j in 0..<n {
            let t = Int(tokens[j])
            let claimed = Double(completion.logprobs[j])
            let verdict = judge.judge(computed.logits + j * V, token: t, options: options, key: key, position: j, margin: margin)
            if let rank = verdict.outsideRank {
                fail("support", j, measured: Double(rank), limit: Double(verdict.kept), "token \(t) ranks \(rank), the support keeps \(verdict.kept)")
                continue
            }
            let err = verdict.logprobs.map { abs(claimed - $0) }.min() ?? .infinity
            result.maxLogprobError = max(result.maxLogprobError, Float(err))
            if !(err <= tol) {
                fail("logprob", j, measured: err, limit: tol, "claimed \(claimed), recomputed \(verdict.logprobs.map { String($0) }.joined(separator: " or "))")
            }
            if !(verdict.shortfall <= margin) {
                fail("sampler", j, measured: verdict.shortfall, limit: margin,
                     "token \(t) scores \(verdict.shortfall) below token \(verdict.best)\(options.temperature <= 0 ? " (greedy)" : "")")
            }
        }
        for (check, count) in counts where count > 1 && ["logprob", "support", "sampler"].contains(check) {
            worst[check]!.detail += " (\(count) positions failed)"
        }
        result.failures = ["proof", "logprob", "support", "sampler", "ending"].compactMap { worst[$0] }
        return result
    }

    /// The "shape" failure of a completion the forward pass cannot take, nil when it can.
    static func shapeRefusal(policy: any Policy, prompt: [Int32], completion: SampledCompletion, options: SamplingOptions) -> VerificationFailure? {
        let ctx = policy.contextLength, V = policy.vocabSize
        let tokens = completion.tokens, n = tokens.count
        func refuse(_ position: Int?, _ measured: Double, _ limit: Double, _ detail: String) -> VerificationFailure {
            VerificationFailure(check: "shape", position: position, measured: measured, limit: limit, detail: detail)
        }
        do { try options.distribution.validate() } catch { return refuse(nil, 0, 0, "options: \(error)") }
        if prompt.isEmpty || prompt.count > ctx {
            return refuse(nil, Double(prompt.count), Double(ctx), "prompt of \(prompt.count) tokens, need 1 to the context \(ctx)")
        }
        if let i = prompt.firstIndex(where: { $0 < 0 || Int($0) >= V }) {
            return refuse(nil, Double(prompt[i]), Double(V), "prompt token \(i) is \(prompt[i]), outside the vocabulary")
        }
        if completion.logprobs.count != n {
            return refuse(nil, Double(completion.logprobs.count), Double(n), "\(completion.logprobs.count) log-probs for \(n) tokens")
        }
        if n > 0 && prompt.count + n - 1 > ctx {
            return refuse(nil, Double(prompt.count + n - 1), Double(ctx), "prompt and completion need \(prompt.count + n - 1) positions, the context has \(ctx)")
        }
        if let j = tokens.firstIndex(where: { $0 < 0 || Int($0) >= V }) {
            return refuse(j, Double(tokens[j]), Double(V), "token \(tokens[j]) outside the vocabulary")
        }
        if let j = completion.logprobs.firstIndex(where: { !$0.isFinite }) {
            return refuse(j, Double(completion.logprobs[j]), 0, "log-prob \(completion.logprobs[j]) is not finite")
        }
        return nil
    }
}
