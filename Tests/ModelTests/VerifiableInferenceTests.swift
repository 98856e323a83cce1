import Foundation
import ModelAgreement
import Testing
@testable import Model

/// Verifiable inference: Gumbel-max sampling a validator can replay, hidden-state proofs, and the completion verifier
/// against honest workers (several seeds, settings and batch shapes) and each attack it must catch.
@Suite struct VerifiableInferenceTests {
    /// GPT-2 with spread logits (sampled draws need them) and a Llama of the same size, contexts of 48 so that a
    /// completion spans two proof chunks.
    static func model(_ architecture: String, seed: UInt64 = 31) -> any Policy {
        if architecture == "gpt2" {
            let config = GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: 48, layers: 2, heads: 2, channels: 32)
            return spreadingLogits(GPT(config: config, seed: seed), seed: seed &+ 1)
        }
        var config = tinyLlamaConfig()
        config.vocabSize = 64
        config.contextLength = 48
        return noisyLlama(config, seed: seed)
    }

    static let architectures = ["gpt2", "llama"]

    static let settings: [SamplingOptions] = [
        SamplingOptions(temperature: 1, maxNewTokens: 40, seed: 1, stopAtEOS: false),
        SamplingOptions(temperature: 0.7, topP: 0.9, maxNewTokens: 40, seed: 2, stopAtEOS: false),
        SamplingOptions(temperature: 1.3, topK: 5, maxNewTokens: 40, seed: 3),
        SamplingOptions(temperature: 1, topP: 0.8, topK: 20, maxNewTokens: 12, seed: 4),
        SamplingOptions.greedy(maxNewTokens: 40, stopAtEOS: false),
    ]

    /// The sampler's view of a prompt (bos for an empty one).
    static func fed(_ prompt: [Int32], _ model: any Policy) -> [Int32] { prompt.isEmpty ? [model.bosToken] : prompt }

    static func prompts(_ model: any Policy) -> [[Int32]] {
        let V = Int32(model.vocabSize)
        return [[3, 4, 5], [], (0..<9).map { ($0 * 7 + 1) % V }, [V - 1]]
    }

    // MARK: Gumbel-max

    /// Gumbel-max with the counter-based noise is an exact sampler: frequencies over many positions match q, for a
    /// tempered, a top-k and a top-p distribution; and the log-prob returned is log q.
    @Test func gumbelMaxDrawsTheDistribution() {
        let logits: [Float] = [2, 1.5, 1.4, 0.3, -1, -2.5, 0.9]
        let V = logits.count, N = 20000
        for options in [SamplingOptions(temperature: 0.8, maxNewTokens: 1, seed: 5), SamplingOptions(topK: 3, maxNewTokens: 1, seed: 6),
                        SamplingOptions(temperature: 1.2, topP: 0.7, maxNewTokens: 1, seed: 7)] {
            let d = options.distribution
            let ref = SamplingDistributionTests.reference(logits.map(Double.init), target: -1, d)
            let w = logits.map { exp(Double($0 - logits.max()!) / Double(d.temperature)) }
            let total = ref.support.reduce(0.0) { $0 + w[$1] }
            var chooser = TokenChooser(vocabSize: V)
            var counts = [Int](repeating: 0, count: V)
            let key = options.gumbelKey(prompt: 2, sample: 1)
            for position in 0..<N {
                let (t, lp) = logits.withUnsafeBufferPointer { chooser.choose($0.baseAddress!, options: options, key: key, position: position) }
                counts[Int(t)] += 1
                #expect(abs(Double(lp) - log(w[Int(t)] / total)) < 1e-5)
            }
            for i in 0..<V {
                let q = ref.support.contains(i) ? w[i] / total : 0
                let f = Double(counts[i]) / Double(N)
                #expect(abs(f - q) <= 4.5 * (q * (1 - q) / Double(N)).squareRoot() + 1e-9, "\(options): token \(i) drawn \(f), q \(q)")
            }
        }
        // the noise is a pure function of (key, position, token), and keys differ by prompt and sample
        let o = SamplingOptions(maxNewTokens: 1, seed: 9)
        #expect(SamplingOptions.gumbelNoise(key: 7, position: 3, token: 11) == SamplingOptions.gumbelNoise(key: 7, position: 3, token: 11))
        #expect(Set([o.gumbelKey(prompt: 0, sample: 0), o.gumbelKey(prompt: 1, sample: 0), o.gumbelKey(prompt: 0, sample: 1)]).count == 3)
        let g = (0..<10000).map { SamplingOptions.gumbelNoise(key: 1, position: $0 / 100, token: $0 % 100) }
        let mean = g.reduce(0, +) / Double(g.count)
        #expect(abs(mean - 0.5772) < 0.05, "Gumbel mean is Euler's constant, got \(mean)")
        #expect(g.allSatisfy { $0.isFinite })
    }

    // MARK: proofs

    @Test func proofRoundTripAndFormat() {
        let rows = 70, C = 16
        let hidden = randomFloats(rows * C, seed: 41, scale: 3)
        let proof = InferenceProof.commit(hidden: hidden, rows: rows, channels: C)
        // chunks of 32, 32 and 6 rows: 128, 128 and 96 entries
        #expect(proof.count == 3 * 2 + 2 * (128 + 128 + 96))
        #expect(InferenceProof.byteCount(rows: 32, channels: C) == 258)
        #expect(proof.count == InferenceProof.byteCount(rows: rows, channels: C))
        let exact = InferenceProof.check(proof: proof, hidden: hidden, rows: rows, channels: C)
        #expect(exact.passed && exact.chunks == 3 && exact.exponentMatches == exact.topK && exact.meanMantissaError == 0, "\(exact)")
        // the polynomial gives back every committed value at its index
        let first = Array(hidden.prefix(32 * C))
        let kept = first.withUnsafeBufferPointer { InferenceProof.topIndices($0, k: 128) }
        let salt = UInt16(proof[0]) | UInt16(proof[1]) << 8
        let coefficients = (0..<128).map { UInt64(UInt16(proof[2 + 2 * $0]) | UInt16(proof[3 + 2 * $0]) << 8) }
        for i in kept {
            #expect(InferenceProof.evaluate(coefficients, at: [InferenceProof.indexHash(i, salt: salt)])[0] == UInt64(InferenceProof.bfloat16Bits(first[i])))
        }
        // rounding-sized noise passes; other hidden states fail
        let noisy = hidden.enumerated().map { $0.element * (1 + 1e-5 * Float(($0.offset % 7) - 3)) }
        #expect(InferenceProof.check(proof: proof, hidden: noisy, rows: rows, channels: C).passed)
        let other = randomFloats(rows * C, seed: 42, scale: 3)
        let wrong = InferenceProof.check(proof: proof, hidden: other, rows: rows, channels: C)
        #expect(!wrong.passed && wrong.exponentMatches < wrong.requiredMatches, "\(wrong)")
        // an empty completion has an empty proof
        #expect(InferenceProof.commit(hidden: [], rows: 0, channels: C).isEmpty)
        #expect(InferenceProof.check(proof: [], hidden: [], rows: 0, channels: C).passed)
    }

    /// A chunk that keeps every entry (2 rows of 32 channels: 64 of k = 128) keeps near-zero ones, where float32 noise
    /// of 1e-6 of the largest value is many bf16 steps of the entry: that passes, against the chunk's resolution floor.
    /// A claim that is wrong by more than noise there, or above the floor, still fails.
    @Test func entriesBelowTheChunksResolutionAreComparedByTheirDifference() {
        let rows = 2, C = 32
        var hidden = randomFloats(rows * C, seed: 45, scale: 3)
        let largest = hidden.map(abs).max()!
        let tiny: [(index: Int, scale: Float)] = [(5, 3e-6), (17, -1e-5), (40, -2e-4), (50, 5e-5)]
        for (i, scale) in tiny { hidden[i] = largest * scale }
        // below the floor, each of them
        #expect(tiny.allSatisfy { abs(hidden[$0.index]) < largest * Float(sign: .plus, exponent: -InferenceProof.resolutionBits, significand: 1) })
        let proof = InferenceProof.commit(hidden: hidden, rows: rows, channels: C)
        // the validator's own float32 values, 1e-6 of the largest away everywhere (absolute, as two kernels differ)
        var noisy = hidden.enumerated().map { $0.element + largest * 1e-6 * Float(($0.offset % 5) - 2) }
        noisy[5] = -largest * 1e-6  // even its sign flipped
        let honest = InferenceProof.check(proof: proof, hidden: noisy, rows: rows, channels: C, thresholds: .float32)
        #expect(honest.passed && honest.exponentMatches == 64 && honest.meanMantissaError < 0.05, "\(honest)")
        // claims far from the validator's values below the floor fail
        var lying = hidden
        for (i, _) in tiny { lying[i] = largest * 3e-3 }
        let caught = InferenceProof.check(proof: InferenceProof.commit(hidden: lying, rows: rows, channels: C), hidden: noisy, rows: rows, channels: C,
                                          thresholds: .float32)
        #expect(!caught.passed, "\(caught)")
        // and above it, the mantissa still counts: 2% off in the large entries fails float32's thresholds
        let shifted = hidden.map { abs($0) > largest / 4 ? $0 * 1.02 : $0 }
        let moved = InferenceProof.check(proof: InferenceProof.commit(hidden: shifted, rows: rows, channels: C), hidden: noisy, rows: rows, channels: C,
                                         thresholds: .float32)
        #expect(!moved.passed, "\(moved)")
    }

    /// Hostile proofs fail and never trap: wrong lengths, random bytes, coefficients outside the field, NaN states.
    @Test func malformedProofsFail() {
        let rows = 40, C = 8
        let hidden = randomFloats(rows * C, seed: 43)
        let proof = InferenceProof.commit(hidden: hidden, rows: rows, channels: C)
        var rng = SeededGenerator(seed: 44)
        let random = (0..<proof.count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var outside = proof
        outside[2] = 0xFF; outside[3] = 0xFF
        for bad in [[], Array(proof.dropLast()), proof + [0], random, outside, [UInt8](repeating: 0xFF, count: proof.count)] {
            let c = InferenceProof.check(proof: bad, hidden: hidden, rows: rows, channels: C)
            #expect(!c.passed, "\(bad.count) bytes passed")
        }
        #expect(!InferenceProof.check(proof: proof, hidden: hidden, rows: rows + 1, channels: C).passed)
        #expect(!InferenceProof.check(proof: proof, hidden: hidden, rows: Int.max / 2, channels: 4).passed)
        #expect(!InferenceProof.check(proof: proof, hidden: hidden, rows: rows, channels: C, chunk: 0).passed)
        let nan = [Float](repeating: .nan, count: rows * C)
        #expect(!InferenceProof.check(proof: proof, hidden: nan, rows: rows, channels: C).passed)
        _ = InferenceProof.commit(hidden: nan, rows: rows, channels: C)  // a broken model still gets a proof
    }

    // MARK: hidden states

    /// The decoders' hidden rows are the full forward's final block output at the same positions, and the sampler's
    /// proofs are the commitments of those rows.
    @Test(arguments: architectures) func decoderHiddenStatesMatchTheFullForward(architecture: String) {
        let model = Self.model(architecture)
        let options = SamplingOptions(temperature: 1, maxNewTokens: 30, seed: 8, stopAtEOS: false)
        let prompt: [Int32] = [5, 6, 7]
        let c = model.sample(prompt: prompt, count: 2, options: options)[1]
        let seq = prompt + c.tokens.dropLast()
        let full = model.hiddenStates(tokens: seq)
        let C = full.count / seq.count
        let rows = Array(full[((prompt.count - 1) * C)...])
        #expect(InferenceProof.check(proof: c.proof, hidden: rows, rows: c.tokens.count, channels: C).passed)
        #expect(c.proof.count == InferenceProof.byteCount(rows: c.tokens.count, channels: C))
    }

    // MARK: honest completions

    /// Honest completions pass under every setting, sampled in several batch shapes (one prompt alone, prompts
    /// together, groups of 1 and 4) while the verifier runs one full forward. Prints the honest worst cases.
    @Test(arguments: architectures) func honestCompletionsPass(architecture: String) {
        let model = Self.model(architecture)
        let prompts = Self.prompts(model)
        var worstLogprob: Float = 0, fewestMatches = 1.0, worstMean = 0.0, worstShortfall = 0.0, verified = 0
        for options in Self.settings {
            for count in [1, 4] {
                let together = model.sample(prompts: prompts, count: count, options: options)
                let alone = model.sample(prompts: [prompts[2]], count: count, options: options)[0]
                var cases: [(prompt: [Int32], c: SampledCompletion, index: Int, k: Int)] = []
                for (i, group) in together.enumerated() { for (k, c) in group.enumerated() { cases.append((prompts[i], c, i, k)) } }
                for (k, c) in alone.enumerated() { cases.append((prompts[2], c, 0, k)) }
                for (prompt, c, i, k) in cases {
                    let v = CompletionVerifier.verify(policy: model, prompt: Self.fed(prompt, model), completion: c, options: options,
                                                      promptIndex: i, sample: k)
                    #expect(v.passed, "\(architecture) \(options) prompt \(i) sample \(k): \(v.failures)")
                    let toploc = CompletionVerifier.verify(policy: model, prompt: Self.fed(prompt, model), completion: c, options: options,
                                                           promptIndex: i, sample: k, tolerances: VerificationTolerances(proof: .default))
                    #expect(toploc.passed, "TOPLOC's thresholds: \(toploc.failures)")
                    worstLogprob = max(worstLogprob, v.maxLogprobError)
                    if let p = v.proof, p.topK > 0 {
                        fewestMatches = min(fewestMatches, Double(p.exponentMatches) / Double(p.topK))
                        worstMean = max(worstMean, p.meanMantissaError)
                    }
                    // how close the chosen tokens came to the near-tie allowance
                    let seq = Self.fed(prompt, model) + c.tokens.dropLast()
                    let logits = model.logits(tokens: seq)
                    var judge = TokenJudge(vocabSize: model.vocabSize)
                    let key = options.gumbelKey(prompt: i, sample: k)
                    for j in c.tokens.indices {
                        let row = Self.fed(prompt, model).count - 1 + j
                        let verdict = logits.withUnsafeBufferPointer {
                            judge.judge($0.baseAddress! + row * model.vocabSize, token: Int(c.tokens[j]), options: options, key: key, position: j, margin: 0)
                        }
                        if verdict.shortfall.isFinite { worstShortfall = max(worstShortfall, verdict.shortfall) }
                    }
                    verified += 1
                }
            }
        }
        print("verifiable inference, honest \(architecture) (OpenBLAS \(BLAS.coreName)): \(verified) completions, "
              + "max |logprob error| \(worstLogprob), max Gumbel shortfall \(worstShortfall), "
              + "fewest exponent matches \(fewestMatches) of k, max mean mantissa error \(worstMean)")
        #expect(worstLogprob < VerificationTolerances.default.logprobAbsolute / 10, "the tolerance keeps a margin of 10")
        #expect(worstShortfall < VerificationTolerances.default.gumbelMargin / 10)
    }

    /// Completions of a model as small as the end-to-end tests' (32 channels, up to 4 new tokens): a proof chunk of one
    /// to four rows keeps every one of its entries, the near-zero ones too, whose float32 noise is large against their
    /// own bf16 rounding (under OPENBLAS_CORETYPE=Haswell 3 of 1152 such completions failed before the check compared
    /// them against the chunk's resolution). Honest groups of 8 over many prompts and seeds pass, in float32's
    /// thresholds; prints the worst.
    @Test func shortCompletionsOfATinyModelPass() {
        var worstMean = 0.0, fewestMatches = 1.0, verified = 0, failures: [String] = []
        for seed in UInt64(1)...12 {
            let config = GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: 16, layers: 1, heads: 2, channels: 32)
            let model = spreadingLogits(GPT(config: config, seed: seed), seed: seed &+ 100)
            for p in 0..<24 {
                let prompt: [Int32] = (0..<(3 + p % 9)).map { Int32((Int($0) * 37 + p * 11 + Int(seed)) % 256) }
                let options = SamplingOptions(temperature: 1, maxNewTokens: 1 + p % 4, seed: seed &* 1000 &+ UInt64(p))
                let group = model.sample(prompt: prompt, count: 8, options: options)
                let verdicts = CompletionVerifier.verify(policy: model, prompt: prompt, completions: group, options: options, promptIndex: 0)
                for (k, v) in verdicts.enumerated() {
                    verified += 1
                    if !v.passed { failures.append("seed \(seed) prompt \(p) sample \(k): \(v.failures)") }
                    if let proof = v.proof, proof.topK > 0 {
                        worstMean = max(worstMean, proof.meanMantissaError)
                        fewestMatches = min(fewestMatches, Double(proof.exponentMatches) / Double(proof.topK))
                    }
                }
            }
        }
        print("verifiable inference, short completions of a 32-channel GPT-2 (OpenBLAS \(BLAS.coreName)): \(verified) completions, "
              + "\(failures.count) failed; fewest exponent matches \(fewestMatches) of k, max mean mantissa error \(worstMean)")
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    /// Completions that end at eos verify, and dropping their eos flag or the eos itself fails the ending check.
    @Test func eosEndingsVerify() {
        let model = Self.model("llama")
        let options = SamplingOptions(temperature: 1.5, maxNewTokens: 40, seed: 13)
        let prompt: [Int32] = [3, 4, 5]
        let group = model.sample(prompt: prompt, count: 32, options: options)
        let ended = group.indices.filter { group[$0].finishedWithEOS }
        #expect(!ended.isEmpty, "no completion reached eos")
        for (k, c) in group.enumerated() {
            let v = CompletionVerifier.verify(policy: model, prompt: prompt, completion: c, options: options, promptIndex: 0, sample: k)
            #expect(v.passed, "sample \(k): \(v.failures)")
        }
        guard let k = ended.first else { return }
        var unflagged = group[k]
        unflagged.finishedWithEOS = false
        #expect(CompletionVerifier.verify(policy: model, prompt: prompt, completion: unflagged, options: options, promptIndex: 0, sample: k)
            .failures.map(\.check) == ["ending"])
        var noStop = options
        noStop.stopAtEOS = false
        #expect(CompletionVerifier.verify(policy: model, prompt: prompt, completion: group[k], options: noStop, promptIndex: 0, sample: k)
            .failures.map(\.check).contains("ending"))
    }

    // MARK: attacks

    /// Each attack fails with the check that should catch it.
    @Test(arguments: architectures) func attacksAreCaught(architecture: String) {
        let model = Self.model(architecture)
        let options = SamplingOptions(temperature: 1, topP: 0.95, maxNewTokens: 40, seed: 11, stopAtEOS: false)
        let prompt: [Int32] = [3, 4, 5]
        let honest = model.sample(prompt: prompt, count: 3, options: options)
        func verify(_ c: SampledCompletion, prompt p: [Int32] = prompt, options o: SamplingOptions = options, sample k: Int = 0,
                    policy: any Policy = model) -> CompletionVerification {
            CompletionVerifier.verify(policy: policy, prompt: p, completion: c, options: o, promptIndex: 0, sample: k)
        }
        func checks(_ v: CompletionVerification) -> Set<String> { Set(v.failures.map(\.check)) }
        for k in 0..<3 { #expect(verify(honest[k], sample: k).passed, "\(verify(honest[k], sample: k).failures)") }
        let c = honest[0]

        // a different model (another init seed) generated it
        let other = Self.model(architecture, seed: 77)
        let fromOther = other.sample(prompt: prompt, count: 1, options: options)[0]
        #expect(checks(verify(fromOther)).contains("proof"), "\(verify(fromOther).failures)")

        // a quantized copy: the same weights rounded to bf16
        let quantized = model.copy()
        quantized.withParameters { p, _ in for i in 0..<p.count { p[i] = Float(bitPattern: UInt32(InferenceProof.bfloat16Bits(p[i])) << 16) } }
        let fromQuantized = quantized.sample(prompt: prompt, count: 1, options: options)[0]
        let vq = verify(fromQuantized)
        print("verifiable inference, bf16 copy of \(architecture): \(vq.failures.map(\.description)); proof \(vq.proof.map { "\($0.exponentMatches)/\($0.topK), mean \($0.meanMantissaError)" } ?? "-"), max logprob error \(vq.maxLogprobError)")
        #expect(checks(vq).contains("logprob"), "\(vq.failures)")
        // float32 proof thresholds catch it by the proof alone
        let strict = CompletionVerifier.verify(policy: model, prompt: prompt, completion: fromQuantized, options: options,
                                               promptIndex: 0, sample: 0, tolerances: VerificationTolerances(proof: .float32))
        #expect(checks(strict).contains("proof"), "\(strict.failures)")

        // generated for another prompt
        #expect(checks(verify(c, prompt: [9, 4, 5])).contains("proof"), "\(verify(c, prompt: [9, 4, 5]).failures)")

        // log-probs inflated by 0.05 (what a worker gains when the learner trusts them)
        var inflated = c
        inflated.logprobs = c.logprobs.map { $0 + 0.05 }
        #expect(checks(verify(inflated)) == ["logprob"], "\(verify(inflated).failures)")
        var oneEdited = c
        oneEdited.logprobs[5] -= 0.01
        #expect(verify(oneEdited).failures.map(\.position) == [5])

        // the last token swapped for another token of the support, with its honest log-prob: only the draw is wrong
        var swapped = c
        let j = c.tokens.count - 1
        let logits = model.logits(tokens: prompt + c.tokens.dropLast())
        var judge = TokenJudge(vocabSize: model.vocabSize)
        let row = (prompt.count - 1 + j) * model.vocabSize
        let replacement = (0..<model.vocabSize).map(Int32.init).first { t in
            t != c.tokens[j] && logits.withUnsafeBufferPointer {
                judge.judge($0.baseAddress! + row, token: Int(t), options: options, key: 0, position: 0, margin: 0).outsideRank == nil
            }
        }!
        swapped.tokens[j] = replacement
        swapped.logprobs[j] = Float(logits.withUnsafeBufferPointer {
            judge.judge($0.baseAddress! + row, token: Int(replacement), options: options, key: 0, position: 0, margin: 0).logprobs[0]
        })
        #expect(checks(verify(swapped)) == ["sampler"], "\(verify(swapped).failures)")
        // a token outside the support
        var outside = c
        let outsider = (0..<model.vocabSize).map(Int32.init).first { t in
            logits.withUnsafeBufferPointer {
                judge.judge($0.baseAddress! + row, token: Int(t), options: options, key: 0, position: 0, margin: 0).outsideRank != nil
            }
        }
        if let outsider {
            outside.tokens[j] = outsider
            #expect(checks(verify(outside)).contains("support"), "\(verify(outside).failures)")
        }

        // truncated, claiming it ran to the token limit (with an honest proof of what is left)
        var truncated = c
        truncated.tokens = Array(c.tokens.prefix(25))
        truncated.logprobs = Array(c.logprobs.prefix(25))
        let hidden = model.hiddenStates(tokens: prompt + truncated.tokens.dropLast())
        let C = hidden.count / (prompt.count + 24)
        truncated.proof = InferenceProof.commit(hidden: Array(hidden[((prompt.count - 1) * C)...]), rows: 25, channels: C)
        #expect(checks(verify(truncated)) == ["ending"], "\(verify(truncated).failures)")
        // the same, claiming eos
        var claimsEOS = truncated
        claimsEOS.finishedWithEOS = true
        #expect(checks(verify(claimsEOS, options: { var o = options; o.stopAtEOS = true; return o }())) == ["ending"])

        // malformed proofs: empty, one byte short, random bytes of the right length
        var rng = SeededGenerator(seed: 45)
        for bad in [[], Array(c.proof.dropLast()), (0..<c.proof.count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }] {
            var m = c
            m.proof = bad
            #expect(checks(verify(m)) == ["proof"], "\(bad.count) bytes: \(verify(m).failures)")
        }

        // a greedy completion with one token that is not the argmax
        let greedy = SamplingOptions.greedy(maxNewTokens: 20, stopAtEOS: false)
        let g = model.sample(prompt: prompt, count: 1, options: greedy)[0]
        #expect(verify(g, options: greedy).passed, "\(verify(g, options: greedy).failures)")
        var notArgmax = g
        let gl = Array(model.logits(tokens: prompt + g.tokens.dropLast()).suffix(model.vocabSize))
        let second = gl.indices.sorted { gl[$0] > gl[$1] }[1]
        notArgmax.tokens[g.tokens.count - 1] = Int32(second)
        let mx = gl.max()!
        notArgmax.logprobs[g.tokens.count - 1] = Float(Double(gl[second] - mx) - log(gl.reduce(0.0) { $0 + exp(Double($1 - mx)) }))
        #expect(checks(verify(notArgmax, options: greedy)) == ["sampler"], "\(verify(notArgmax, options: greedy).failures)")
    }

    /// Every lie of `Lie`, told about a whole group, fails every completion it touched; the lies about claims fail by
    /// the check that covers what they lie about.
    @Test(arguments: architectures) func everyLieIsCaught(architecture: String) {
        let older = Self.model(architecture)
        let model = older.copy()
        Liar.trainOneStep(model, seed: 5)
        let options = SamplingOptions(temperature: 1, topP: 0.95, maxNewTokens: 40, seed: 21)
        let prompt: [Int32] = [3, 4, 5, 6]
        let sampled = model.sample(prompt: prompt, count: 4, options: options)
        let honest = CompletionVerifier.verify(policy: model, prompt: prompt, completions: sampled, options: options, promptIndex: 0)
        #expect(honest.allSatisfy { $0.passed }, "\(honest.map(\.failures))")
        // every lie changes every completion only when none is too short to lie about (one token cannot end earlier)
        #expect(sampled.allSatisfy { $0.tokens.count >= 2 }, "a completion too short for the test: \(sampled.map(\.tokens.count))")
        for lie in Lie.allCases {
            let forged = Liar(lie, claimed: model, older: older).group(prompt: prompt, count: 4, options: options)
            let verdicts = CompletionVerifier.verify(policy: model, prompt: prompt, completions: forged, options: options, promptIndex: 0)
            let checks = Set(verdicts.flatMap { $0.failures.map(\.check) })
            print("verifiable inference, \(architecture), \(lie.rawValue): checks failed \(checks.sorted())")
            // the validator refuses a group when any completion fails; here every one does
            #expect(verdicts.allSatisfy { !$0.passed }, "\(lie.rawValue): \(verdicts.map(\.failures))")
            switch lie {
            case .scaledLogprobs: #expect(checks == ["logprob"], "\(lie.rawValue)")
            case .greedyClaimingTemperature: #expect(checks == ["sampler"], "\(lie.rawValue)")
            // eos where the seed drew another token: not its draw, or not even in the support
            case .truncatedClaimingEOS: #expect(!checks.isEmpty && checks.isSubset(of: ["sampler", "support"]), "\(lie.rawValue)")
            case .oneTokenIn32: #expect(checks.isSubset(of: ["sampler", "support"]) && !checks.isEmpty, "\(lie.rawValue): \(checks)")
            default: #expect(checks.contains("logprob") || checks.contains("proof"), "\(lie.rawValue): \(checks)")
            }
        }
    }

    /// A group verified together (one prefill, sequences of different lengths padded) judges each completion as it is
    /// judged alone, whatever the batches it is cut into; a forged completion fails alone among honest ones.
    @Test(arguments: architectures) func groupVerificationMatchesOneAtATime(architecture: String) {
        let model = Self.model(architecture)
        let prompt: [Int32] = [3, 4, 5]
        // the first seed whose group has completions of different lengths (some end at eos), so that padding is exercised
        let sampled = (13..<60).lazy.map { seed in
            let options = SamplingOptions(temperature: 1.5, maxNewTokens: 40, seed: UInt64(seed))
            return (options, model.sample(prompt: prompt, count: 8, options: options))
        }.first { Set($0.1.map(\.tokens.count)).count > 1 }
        guard let (options, sampledGroup) = sampled else {
            Issue.record("no seed gave completions of different lengths")
            return
        }
        var group = sampledGroup
        group[5].logprobs[group[5].logprobs.count - 1] += 0.05
        let alone = group.enumerated().map { k, c in
            CompletionVerifier.verify(policy: model, prompt: prompt, completion: c, options: options, promptIndex: 0, sample: k)
        }
        // one row per batch, and all rows in one
        for budget in [1, 1 << 30] {
            let together = CompletionVerifier.verify(policy: model, prompt: prompt, completions: group, options: options, promptIndex: 0,
                                                     maxActivationBytes: budget)
            #expect(together.map(\.passed) == alone.map(\.passed), "budget \(budget)")
            #expect(together.map { $0.failures.map(\.check) } == alone.map { $0.failures.map(\.check) })
            #expect(together.enumerated().allSatisfy { k, v in k == 5 ? !v.passed : v.passed }, "\(together.map(\.failures))")
            for (a, b) in zip(alone, together) {
                #expect(abs(a.maxLogprobError - b.maxLogprobError) < VerificationTolerances.default.logprobAbsolute / 100)
            }
        }
    }

    /// The proof's top-k selection keeps the same indices as a full sort by magnitude (ties by lower index, NaN as 0).
    @Test func topIndicesMatchASort() {
        var rng = SeededGenerator(seed: 8)
        for trial in 0..<200 {
            let n = 1 + Int(rng.next() % 600)
            // few distinct magnitudes in some trials, so that ties cross the cut
            let levels = trial % 2 == 0 ? 4 : 1 << 20
            let x: [Float] = (0..<n).map { _ in
                let r = rng.next()
                if r % 97 == 0 { return .nan }
                let magnitude = Float(r % UInt64(levels)) / Float(levels)
                return r & (1 << 40) == 0 ? magnitude : -magnitude
            }
            for k in [1, 5, 128, n] {
                let kept = x.withUnsafeBufferPointer { InferenceProof.topIndices($0, k: k) }
                let magnitude = { (i: Int) -> Float in x[i].isNaN ? 0 : abs(x[i]) }
                let reference = x.indices.sorted { magnitude($0) > magnitude($1) || (magnitude($0) == magnitude($1) && $0 < $1) }.prefix(k)
                #expect(Set(kept) == Set(reference) && kept.count == min(k, n), "n \(n) k \(k)")
            }
        }
    }

    /// Hostile shapes are refused as "shape", never trap.
    @Test(arguments: architectures) func hostileShapesAreRefused(architecture: String) {
        let model = Self.model(architecture)
        let options = SamplingOptions(temperature: 1, maxNewTokens: 40, seed: 12, stopAtEOS: false)
        let prompt: [Int32] = [3, 4, 5]
        let c = model.sample(prompt: prompt, count: 1, options: options)[0]
        func shape(_ c: SampledCompletion, prompt p: [Int32] = prompt, options o: SamplingOptions = options) -> Bool {
            CompletionVerifier.verify(policy: model, prompt: p, completion: c, options: o, promptIndex: 0, sample: 0).failures.map(\.check) == ["shape"]
        }
        var bad = c
        bad.tokens[3] = 1_000_000
        #expect(shape(bad))
        bad = c
        bad.tokens[3] = -1
        #expect(shape(bad))
        bad = c
        bad.logprobs[2] = .nan
        #expect(shape(bad))
        bad = c
        bad.logprobs[2] = -.infinity
        #expect(shape(bad))
        bad = c
        bad.logprobs.removeLast()
        #expect(shape(bad))
        bad = c
        bad.tokens += [Int32](repeating: 7, count: 100_000)
        bad.logprobs += [Float](repeating: -1, count: 100_000)
        #expect(shape(bad))
        #expect(shape(c, prompt: []))
        #expect(shape(c, prompt: [Int32](repeating: 1, count: model.contextLength + 1)))
        #expect(shape(c, prompt: [3, 4, Int32(model.vocabSize)]))
        #expect(shape(c, options: SamplingOptions(temperature: .nan, maxNewTokens: 40, seed: 12)))
        // an empty completion where tokens were due fails its ending, and passes where none were
        let empty = SampledCompletion(tokens: [], logprobs: [], finishedWithEOS: false)
        #expect(CompletionVerifier.verify(policy: model, prompt: prompt, completion: empty, options: options, promptIndex: 0, sample: 0)
            .failures.map(\.check) == ["ending"])
        var none = options
        none.maxNewTokens = 0
        #expect(CompletionVerifier.verify(policy: model, prompt: prompt, completion: empty, options: none, promptIndex: 0, sample: 0).passed)
    }
}
