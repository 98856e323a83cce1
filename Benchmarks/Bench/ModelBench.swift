import Foundation
import Model

/// `tributary-bench model`: training and decoding speed of the benchmark config, as MFU against a same-run sgemm peak.
func runModelBench(json: Bool, arch: String = "gpt2") throws {
    // OpenBLAS picks its kernels when it loads: if it fell back to generic ones, run again with the right core type
    BLAS.relaunchWithNativeKernelsIfNeeded()
    let threads = 2
    BLAS.setThreads(threads)
    let B = 8, T = 256, C = 256, L = 4, heads = 4
    let gptConfig = GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: T, layers: L, heads: heads, channels: C)
    // Llama at the same depth and width: GQA 4:2, SwiGLU at ~8/3 C (SmolLM2's ratio), tied embeddings
    let llamaConfig = LlamaConfig(vocabSize: 512, contextLength: T, layers: L, channels: C, intermediateSize: 688, heads: heads,
                                  kvHeads: 2, tiedEmbeddings: true, bosToken: 1, eosToken: 2)
    let V = arch == "llama" ? llamaConfig.vocabSize : gptConfig.vocabSize
    // FLOPs per token (PaLM/nanoGPT convention): 2 per weight in the matrix products (blocks and tied head),
    // plus 4*L*C*T for attention's two products over the context; training is 3x the forward pass.
    let blockWeights = arch == "llama"
        ? 2 * C * C + 2 * C * llamaConfig.kvHeads * llamaConfig.headDim + 3 * C * llamaConfig.intermediateSize
        : 12 * C * C
    let matmulWeights = Double(L * blockWeights + V * C)
    func forwardFlopsPerToken(context: Double) -> Double { 2 * matmulWeights + 4 * Double(L * C) * context }
    let trainFlopsPerToken = 3 * forwardFlopsPerToken(context: Double(T))

    // the sgemm peak is taken before and after the model runs (the better of the two), so a neighbour's burst
    // during one measurement does not inflate MFU; its matrices are freed before training (VmHWM stays below training's)
    let peakBefore = sgemmPeakGFLOPS()
    let model: any Policy = arch == "llama" ? Llama(config: llamaConfig, seed: 1) : GPT(config: gptConfig, seed: 1)
    let optimizer = AdamW(model: model, learningRate: 3e-4, beta2: 0.95, weightDecay: 0.1)
    var rng = SeededGenerator(seed: 2)
    let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % 256) }
    let targets = Array(tokens.dropFirst()) + [model.eosToken]
    let mask = [Float](repeating: 1, count: B * T)
    let dLogprobs = [Float](repeating: -1 / Float(B * T), count: B * T)
    func trainStep() -> Float {
        let lp = model.forward(tokens: tokens, targets: targets, batch: B, time: T).logprobs
        model.backward(dLogprobs: dLogprobs, mask: mask)
        optimizer.update(model, learningRate: 3e-4)
        return -lp.reduce(0, +) / Float(B * T)
    }
    _ = trainStep()
    // the machine is shared: figures use the best step (like the sgemm peak, a best of several), the median is shown too
    let trainSteps = 8
    var stepTimes: [Double] = [], phases: [[Double]] = []
    var loss: Float = 0
    for _ in 0..<trainSteps {
        let t0 = benchNow()
        let lp = model.forward(tokens: tokens, targets: targets, batch: B, time: T).logprobs
        let t1 = benchNow()
        model.backward(dLogprobs: dLogprobs, mask: mask)
        let t2 = benchNow()
        optimizer.update(model, learningRate: 3e-4)
        let t3 = benchNow()
        stepTimes.append(t3 - t0)
        phases.append([t1 - t0, t2 - t1, t3 - t2])
        loss = -lp.reduce(0, +) / Float(B * T)
    }
    let bestStep = stepTimes.indices.min { stepTimes[$0] < stepTimes[$1] }!
    let phase = phases[bestStep]
    let trainTime = stepTimes[bestStep]
    let medianStep = stepTimes.sorted()[trainSteps / 2]
    let trainTokensPerSecond = Double(B * T) / trainTime
    let peakRSS = peakResidentMB()
    let budgetMB = Double(model.trainingStateBytes(batch: B, time: T)) / 1_048_576

    // decoding: 64-token prompt, 192 new tokens (fills the context), sampled at temperature 1
    let promptLength = 64, newTokens = 192
    let prompt = (0..<promptLength).map { _ in Int32(rng.next() % 256) }
    func decode(count: Int) -> Double {
        let options = SamplingOptions(temperature: 1, maxNewTokens: newTokens, seed: 3, stopAtEOS: false)
        _ = model.sample(prompt: prompt, count: count, options: options)
        var best = Double.infinity
        for _ in 0..<3 {
            let t0 = benchNow()
            let out = model.sample(prompt: prompt, count: count, options: options)
            best = min(best, benchNow() - t0)
            precondition(out.allSatisfy { $0.tokens.count == newTokens })
        }
        return Double(count * newTokens) / best
    }
    let decode1 = decode(count: 1)
    let decode16 = decode(count: 16)
    let decodeFlopsPerToken = forwardFlopsPerToken(context: Double(promptLength) + Double(newTokens) / 2)

    let peakAfter = sgemmPeakGFLOPS()
    let peak = max(peakBefore, peakAfter)
    let trainMFU = trainTokensPerSecond * trainFlopsPerToken / (peak * 1e9)
    // the same with causal attention counted at half (the work actually needed)
    let trainMFUCausal = trainTokensPerSecond * 3 * (2 * matmulWeights + 2 * Double(L * C * T)) / (peak * 1e9)
    let decodeMFU16 = decode16 * decodeFlopsPerToken / (peak * 1e9)
    let decodeMFU1 = decode1 * decodeFlopsPerToken / (peak * 1e9)

    let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
    let shape = arch == "llama" ? "kv_heads=\(llamaConfig.kvHeads) intermediate=\(llamaConfig.intermediateSize) " : ""
    print("model benchmark (\(arch)): L=\(L) heads=\(heads) \(shape)C=\(C) context=\(T) batch=\(B) vocab=\(V), \(model.parameterCount) parameters, \(threads) BLAS threads, OpenBLAS core \(BLAS.coreName), load \(load)")
    let rows: [(String, String)] = [
        ("sgemm peak (2048^3)", String(format: "%.1f GFLOP/s (before %.1f, after %.1f)", peak, peakBefore, peakAfter)),
        ("train step (best of 8)", String(format: "%.1f ms (forward %.1f, backward %.1f, AdamW %.1f); median %.1f ms",
                                          1000 * trainTime, 1000 * phase[0], 1000 * phase[1], 1000 * phase[2], 1000 * medianStep)),
        ("train tokens/s", String(format: "%.0f", trainTokensPerSecond)),
        ("train MFU", String(format: "%.3f (%.3f counting causal attention at half)", trainMFU, trainMFUCausal)),
        ("train loss (random bytes)", String(format: "%.3f", loss)),
        ("train peak RSS", String(format: "%.1f MB (budget params+grads+moments+activations %.1f MB, ratio %.2f)", peakRSS, budgetMB, peakRSS / budgetMB)),
        ("decode tokens/s batch 1", String(format: "%.0f (MFU %.3f)", decode1, decodeMFU1)),
        ("decode tokens/s batch 16", String(format: "%.0f", decode16)),
        ("decode MFU batch 16", String(format: "%.3f", decodeMFU16)),
    ]
    for (k, v) in rows { print(k.padding(toLength: 30, withPad: " ", startingAt: 0) + v) }
    if json {
        let figures: [String: Any] = [
            "sgemm_peak_gflops": modelBenchRound2(peak), "train_tokens_per_s": modelBenchRound2(trainTokensPerSecond), "train_mfu": modelBenchRound4(trainMFU), "train_mfu_causal": modelBenchRound4(trainMFUCausal),
            "decode_tokens_per_s_batch1": modelBenchRound2(decode1), "decode_tokens_per_s_batch16": modelBenchRound2(decode16),
            "decode_mfu_batch16": modelBenchRound4(decodeMFU16), "decode_mfu_batch1": modelBenchRound4(decodeMFU1),
            "train_peak_rss_mb": modelBenchRound2(peakRSS), "train_memory_budget_mb": modelBenchRound2(budgetMB),
            "train_memory_ratio": modelBenchRound4(peakRSS / budgetMB), "train_step_ms": modelBenchRound2(1000 * trainTime), "train_step_median_ms": modelBenchRound2(1000 * medianStep),
            "blas_threads": threads, "openblas_core": BLAS.coreName, "parameters": model.parameterCount, "arch": arch, "load_average_1m": Double(load) ?? -1,
        ]
        let data = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Monotonic seconds, for the benches' timings.
func benchNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

private func modelBenchRound2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
private func modelBenchRound4(_ x: Double) -> Double { (x * 10000).rounded() / 10000 }

/// VmHWM from /proc/self/status, in MiB.
private func peakResidentMB() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? -1
        return kb / 1024
    }
    return -1
}

/// Best of several large square sgemm products through the Model module's BLAS.
private func sgemmPeakGFLOPS() -> Double {
    let n = 2048
    var a = [Float](repeating: 0, count: n * n), b = a, c = a
    var rng = SeededGenerator(seed: 9)
    for i in 0..<(n * n) { a[i] = rng.nextUniform() - 0.5; b[i] = rng.nextUniform() - 0.5 }
    var best = 0.0
    for _ in 0..<5 {
        let t0 = benchNow()
        BLAS.sgemm(m: n, n: n, k: n, a: &a, b: &b, c: &c)
        best = max(best, 2 * Double(n) * Double(n) * Double(n) / (benchNow() - t0) / 1e9)
    }
    return best
}
