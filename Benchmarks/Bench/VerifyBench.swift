import Foundation
import Model

/// `tributary-bench verify`: what verifiable inference costs and catches. Samples `groups` prompts × `samples`
/// completions (Gumbel-max draws with hidden-state proofs), then verifies each honest completion (one full forward and
/// the checks) and each attack on it: proof bytes, generation against verification time, false positives, detection.
func runVerifyBench(json: Bool, arch: String, groups: Int, samples: Int, newTokens: Int) throws {
    BLAS.relaunchWithNativeKernelsIfNeeded()
    let threads = 2
    BLAS.setThreads(threads)
    let T = 256, C = 256, L = 4, heads = 4, promptLength = 32
    let gptConfig = GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: T, layers: L, heads: heads, channels: C)
    let llamaConfig = LlamaConfig(vocabSize: 512, contextLength: T, layers: L, channels: C, intermediateSize: 688, heads: heads,
                                  kvHeads: 2, tiedEmbeddings: true, bosToken: 1, eosToken: 2)
    // random weights plus N(0, 1/√C) so that the logits spread (σ ≈ 1) like a trained model's, not near-uniform
    func makeModel(seed: UInt64) -> any Policy {
        let model: any Policy = arch == "llama" ? Llama(config: llamaConfig, seed: seed) : GPT(config: gptConfig, seed: seed)
        var rng = SeededGenerator(seed: seed &+ 1000)
        let sigma = 1 / Float(C).squareRoot()
        model.withParameters { p, _ in for i in 0..<p.count { p[i] += rng.nextNormal() * sigma } }
        return model
    }
    let model = makeModel(seed: 1)
    let V = model.vocabSize
    var rng = SeededGenerator(seed: 2)
    let prompts = (0..<groups).map { _ in (0..<promptLength).map { _ in Int32(rng.next() % UInt64(min(V, 256))) } }
    let options = SamplingOptions(temperature: 1, topP: 0.95, maxNewTokens: newTokens, seed: 3, stopAtEOS: false)

    // generation: the whole batch, proofs included
    _ = model.sample(prompts: [prompts[0]], count: 1, options: SamplingOptions(maxNewTokens: 8, seed: 0))
    let t0 = verifyBenchNow()
    let completions = model.sample(prompts: prompts, count: samples, options: options)
    let generateTime = verifyBenchNow() - t0
    let count = groups * samples
    let generatePerCompletion = generateTime / Double(count)
    let tokensPerCompletion = Double(completions.joined().map(\.tokens.count).reduce(0, +)) / Double(count)

    // honest verification
    var verifyTimes: [Double] = []
    var falsePositives: [String] = []
    var worstLogprob: Float = 0, fewestMatches = Int.max, worstMean = 0.0, worstK = 0, strictFalsePositives = 0
    for (i, group) in completions.enumerated() {
        for (k, c) in group.enumerated() {
            let s = verifyBenchNow()
            let v = CompletionVerifier.verify(policy: model, prompt: prompts[i], completion: c, options: options, promptIndex: i, sample: k)
            verifyTimes.append(verifyBenchNow() - s)
            if !v.passed { falsePositives.append("prompt \(i) sample \(k): \(v.failures)") }
            if !CompletionVerifier.verify(policy: model, prompt: prompts[i], completion: c, options: options, promptIndex: i, sample: k,
                                          tolerances: VerificationTolerances(proof: .float32)).passed { strictFalsePositives += 1 }
            worstLogprob = max(worstLogprob, v.maxLogprobError)
            if let p = v.proof, p.topK > 0, p.exponentMatches < fewestMatches { fewestMatches = p.exponentMatches; worstK = p.topK }
            worstMean = max(worstMean, v.proof?.meanMantissaError ?? 0)
        }
    }
    let verifyPerCompletion = verifyTimes.reduce(0, +) / Double(verifyTimes.count)
    // the forward pass's share of verification
    var forwardTimes: [Double] = []
    for (i, group) in completions.enumerated() {
        let s = verifyBenchNow()
        _ = model.logitsAndHiddenStates(tokens: prompts[i] + group[0].tokens.dropLast())
        forwardTimes.append(verifyBenchNow() - s)
    }
    let forwardPerCompletion = forwardTimes.reduce(0, +) / Double(forwardTimes.count)
    // the proof's share of generation: committing the rows of one completion
    let sample0 = completions[0][0]
    let hidden = model.hiddenStates(tokens: prompts[0] + sample0.tokens.dropLast())
    let rows = Array(hidden[((promptLength - 1) * C)...])
    let c0 = verifyBenchNow()
    for _ in 0..<5 { _ = InferenceProof.commit(hidden: rows, rows: sample0.tokens.count, channels: C) }
    let commitTime = (verifyBenchNow() - c0) / 5

    // attacks: each applied to every honest completion (or sampled by another model), detected when verification fails
    let other = makeModel(seed: 77)
    let quantized = model.copy()
    quantized.withParameters { p, _ in
        for i in 0..<p.count {
            let b = p[i].bitPattern
            p[i] = Float(bitPattern: ((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16) << 16)
        }
    }
    let fromOther = other.sample(prompts: prompts, count: samples, options: options)
    let fromQuantized = quantized.sample(prompts: prompts, count: samples, options: options)
    var attackRows: [(name: String, detected: Int, total: Int, checks: [String: Int])] = []
    func attack(_ name: String, _ make: (Int, Int, SampledCompletion) -> (prompt: [Int32], completion: SampledCompletion)) {
        var detected = 0
        var checks: [String: Int] = [:]
        for (i, group) in completions.enumerated() {
            for (k, c) in group.enumerated() {
                let (p, forged) = make(i, k, c)
                let v = CompletionVerifier.verify(policy: model, prompt: p, completion: forged, options: options, promptIndex: i, sample: k)
                if !v.passed { detected += 1 }
                for f in v.failures { checks[f.check, default: 0] += 1 }
            }
        }
        attackRows.append((name, detected, count, checks))
    }
    attack("different model (other seed)") { i, k, _ in (prompts[i], fromOther[i][k]) }
    attack("bf16-rounded copy of the weights") { i, k, _ in (prompts[i], fromQuantized[i][k]) }
    // the bf16 copy once more, by the proof alone at the float32 thresholds
    var strictCaught = 0, quantizedMatches = Int.max, quantizedMean = Double.infinity
    for (i, group) in fromQuantized.enumerated() {
        for c in group {
            let h = model.hiddenStates(tokens: prompts[i] + c.tokens.dropLast())
            let check = InferenceProof.check(proof: c.proof, hidden: Array(h[((promptLength - 1) * C)...]), rows: c.tokens.count, channels: C,
                                             thresholds: .float32)
            if !check.passed { strictCaught += 1 }
            quantizedMatches = min(quantizedMatches, check.exponentMatches)
            quantizedMean = min(quantizedMean, check.meanMantissaError)
        }
    }
    attackRows.append(("bf16 copy, proof alone (.float32)", strictCaught, count, ["proof": strictCaught]))
    attack("different prompt") { i, _, c in (prompts[(i + 1) % groups], c) }
    attack("log-probs inflated by 0.05") { i, _, c in
        var f = c
        f.logprobs = c.logprobs.map { $0 + 0.05 }
        return (prompts[i], f)
    }
    attack("last token swapped (honest log-prob)") { i, _, c in
        // the most likely token other than the drawn one, with its log-prob under the sampling distribution
        var f = c
        let seq = prompts[i] + c.tokens.dropLast()
        let last = Array(model.logits(tokens: seq).suffix(V))
        let j = c.tokens.count - 1
        let replacement = Int32(last.indices.filter { $0 != Int(c.tokens[j]) }.max { last[$0] < last[$1] }!)
        f.tokens[j] = replacement
        let targets = Array(seq.dropFirst()) + [replacement]
        f.logprobs[j] = model.forward(tokens: seq, targets: targets, batch: 1, time: seq.count, distribution: options.distribution).logprobs[seq.count - 1]
        return (prompts[i], f)
    }
    attack("truncated to half, claiming the limit") { i, _, c in
        var f = c
        let n = c.tokens.count / 2
        f.tokens = Array(c.tokens.prefix(n))
        f.logprobs = Array(c.logprobs.prefix(n))
        let h = model.hiddenStates(tokens: prompts[i] + f.tokens.dropLast())
        f.proof = InferenceProof.commit(hidden: Array(h[((promptLength - 1) * C)...]), rows: n, channels: C)
        return (prompts[i], f)
    }
    var junk = SeededGenerator(seed: 4)
    attack("random proof bytes (right length)") { i, _, c in
        var f = c
        f.proof = c.proof.map { _ in UInt8(truncatingIfNeeded: junk.next()) }
        return (prompts[i], f)
    }

    let chunkBytes = InferenceProof.byteCount(rows: 32, channels: C)!
    let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
    print("verify benchmark (\(arch)): L=\(L) C=\(C) heads=\(heads) context=\(T) vocab=\(V), \(model.parameterCount) parameters, "
          + "\(groups) prompts of \(promptLength) tokens x \(samples) samples, \(newTokens) new tokens, temperature 1 top-p 0.95, "
          + "\(threads) BLAS threads, OpenBLAS core \(BLAS.coreName), load \(load)")
    let fp = Double(falsePositives.count) / Double(count)
    var rowsOut: [(String, String)] = [
        ("proof bytes per chunk", "\(chunkBytes) (32 tokens, top-128; \(String(format: "%.2f", Double(chunkBytes) / 32)) bytes per token); completion of \(Int(tokensPerCompletion)) tokens: \(sample0.proof.count) bytes"),
        ("generation per completion", String(format: "%.1f ms (batch of %d, proofs included; one commit %.2f ms)", 1000 * generatePerCompletion, count, 1000 * commitTime)),
        ("verification per completion", String(format: "%.1f ms (one full forward of %d tokens, %.1f ms, and the checks)", 1000 * verifyPerCompletion,
                                                 promptLength + Int(tokensPerCompletion) - 1, 1000 * forwardPerCompletion)),
        ("verification / generation", String(format: "%.2f", verifyPerCompletion / generatePerCompletion)),
        ("honest false positives", "\(falsePositives.count) of \(count) (\(String(format: "%.1f", 100 * fp)) %); with .float32 proof thresholds \(strictFalsePositives)"),
        ("honest worst case", String(format: "max |logprob error| %.2e (tolerance %.0e), fewest exponent matches %d of %d, max mean mantissa error %.3f",
                                     worstLogprob, VerificationTolerances.default.logprobAbsolute, fewestMatches == Int.max ? 0 : fewestMatches, worstK, worstMean)),
    ]
    rowsOut.append(("bf16 copy's proof (worst chunk)", String(format: "fewest exponent matches %d of 128, smallest mean mantissa error %.3f",
                                                              quantizedMatches, quantizedMean)))
    for (k, v) in rowsOut { print(k.padding(toLength: 50, withPad: " ", startingAt: 0) + v) }
    for a in attackRows {
        let caught = a.checks.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print(("detected: " + a.name).padding(toLength: 50, withPad: " ", startingAt: 0)
              + String(format: "%d of %d (%.1f %%); checks failed: %@", a.detected, a.total, 100 * Double(a.detected) / Double(a.total), caught))
    }
    for f in falsePositives.prefix(5) { print("false positive: \(f)") }
    if json {
        var figures: [String: Any] = [
            "arch": arch, "parameters": model.parameterCount, "completions": count, "tokens_per_completion": tokensPerCompletion,
            "proof_bytes_per_chunk": chunkBytes, "proof_bytes_per_completion": sample0.proof.count,
            "generate_ms_per_completion": (100000 * generatePerCompletion).rounded() / 100, "commit_ms_per_completion": (100000 * commitTime).rounded() / 100,
            "verify_ms_per_completion": (100000 * verifyPerCompletion).rounded() / 100,
            "verify_forward_ms_per_completion": (100000 * forwardPerCompletion).rounded() / 100,
            "verify_over_generate": (10000 * verifyPerCompletion / generatePerCompletion).rounded() / 10000,
            "false_positive_rate": fp, "false_positive_rate_float32_thresholds": Double(strictFalsePositives) / Double(count), "honest_max_logprob_error": Double(worstLogprob), "honest_fewest_exponent_matches": fewestMatches == Int.max ? 0 : fewestMatches,
            "honest_max_mean_mantissa_error": worstMean, "bf16_copy_fewest_exponent_matches": quantizedMatches, "bf16_copy_smallest_mean_mantissa_error": quantizedMean, "openblas_core": BLAS.coreName, "blas_threads": threads, "load_average_1m": Double(load) ?? -1,
        ]
        for a in attackRows { figures["detection_rate: " + a.name] = Double(a.detected) / Double(a.total) }
        let data = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

private func verifyBenchNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
