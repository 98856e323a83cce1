import Foundation
import ModelAgreement
import Testing
@testable import Model

// Against transformers: every logit of each fixture architecture and dtype, log-probs and greedy continuations.
// Two different computations (ours vs torch, cached vs full) are compared with a stated tolerance, never `==`.
@Suite struct LlamaReferenceTests {
    /// Logits agree within 1e-4 of max(|ours|, |theirs|, 0.1): relative for |logit| >= 0.1, at most 1e-5 absolute below
    /// (float32 sums of 64-128 products differ by a few 1e-6 absolute between OpenBLAS and torch, whatever the logit).
    static let logitTolerance: Float = 1e-4
    static let logitFloor: Float = 0.1

    static var cases: [(String, String)] { LlamaFixtures.architectures.flatMap { a in LlamaFixtures.dtypes.map { (a, $0) } } }

    @Test(arguments: cases) func logitsMatchTransformers(arch: String, dtype: String) throws {
        let model = try HuggingFaceCheckpoint.load(from: LlamaFixtures.directory(arch, dtype))
        #expect(model.architecture == arch)
        let reference = try LlamaFixtures.referenceLogits(arch, dtype)
        let sequences = LlamaFixtures.manifest.models[arch]!.sequences
        var worst: (relative: Float, absolute: Float) = (0, 0)
        for (seq, ref) in zip(sequences, reference) {
            let ours = model.logits(tokens: seq)
            #expect(ours.count == ref.count)
            let e = relativeAndAbsoluteError(ours, ref, floor: Self.logitFloor)
            worst = (max(worst.relative, e.relative), max(worst.absolute, e.absolute))
        }
        print("logits \(arch) \(dtype): max relative error \(worst.relative), max absolute \(worst.absolute)")
        #expect(worst.relative < Self.logitTolerance)
    }

    /// Per-token log-probs of the training pass (batched, targets = next token) against transformers' log-softmax.
    @Test(arguments: cases) func logprobsMatchTransformers(arch: String, dtype: String) throws {
        let model = try HuggingFaceCheckpoint.load(from: LlamaFixtures.directory(arch, dtype))
        let entry = LlamaFixtures.manifest.models[arch]!
        let expected = entry.dtypes[dtype]!.logprobs
        let longest = entry.sequences.last!
        // all sequences as one padded batch (negative targets where there is none)
        let T = longest.count, B = entry.sequences.count
        var tokens: [Int32] = [], targets: [Int32] = []
        for seq in entry.sequences {
            tokens += seq + [Int32](repeating: 0, count: T - seq.count)
            let next = Array(seq.dropFirst())
            targets += next + [Int32](repeating: -1, count: T - next.count)
        }
        let lp = model.forward(tokens: tokens, targets: targets, batch: B, time: T).logprobs
        var worst: Float = 0
        for (b, ref) in expected.enumerated() {
            for (t, r) in ref.enumerated() { worst = max(worst, abs(lp[b * T + t] - Float(r)) / max(1, abs(Float(r)))) }
        }
        print("logprobs \(arch) \(dtype): max error \(worst) (relative above 1)")
        #expect(worst < 1e-4)
    }

    /// Greedy continuations by the KV-cache sampler equal transformers' up to the first step where the top two logits
    /// are within 1e-4 (20 times the worst logit error measured above, so a closer race may legitimately go either way);
    /// at least five steps per prompt are compared.
    @Test(arguments: cases) func greedyContinuationsMatch(arch: String, dtype: String) throws {
        let model = try HuggingFaceCheckpoint.load(from: LlamaFixtures.directory(arch, dtype))
        for g in LlamaFixtures.manifest.models[arch]!.dtypes[dtype]!.greedy {
            let ours = model.sample(prompt: g.prompt, count: 1, options: .greedy(maxNewTokens: g.tokens.count, stopAtEOS: false))[0]
            let safe = g.margins.firstIndex { $0 < 1e-4 } ?? g.margins.count
            #expect(safe >= 5, "fixture \(arch) \(dtype) has a near-tie at step \(safe)")
            #expect(Array(ours.tokens.prefix(safe)) == Array(g.tokens.prefix(safe)), "\(arch) \(dtype) prompt \(g.prompt)")
        }
    }

    @Test func bfloat16AndFloat16WeightsAreTheRoundedFloat32Ones() throws {
        let f32 = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("llama", "float32"))
        for dtype in ["bfloat16", "float16"] {
            let low = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("llama", dtype))
            let a = f32.flatParameters, b = low.flatParameters
            // rounding to 8 (bf16) or 11 (f16) significant bits: relative change at most 2^-8 or 2^-11 (f16 subnormals aside)
            let bound: Float = dtype == "bfloat16" ? 1.0 / 256 : 1.0 / 2048
            let worst = zip(a, b).map { abs($0 - $1) / max(abs($0), 1e-3) }.max()!
            #expect(worst <= bound)
            #expect(zip(a, b).contains { $0 != $1 })
        }
    }
}

@Suite struct LlamaConfigTests {
    func config(_ patch: [String: Any?], base: String = "llama") throws -> HuggingFaceConfig {
        let url = LlamaFixtures.directory(base, "float32").appendingPathComponent("config.json")
        var dict = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        for (k, v) in patch { dict[k] = v ?? NSNull() }
        return try HuggingFaceConfig.parse(try JSONSerialization.data(withJSONObject: dict))
    }

    func refusal(_ patch: [String: Any?], base: String = "llama") -> LlamaConfigError? {
        do { _ = try config(patch, base: base); return nil } catch let e as LlamaConfigError { return e } catch { return nil }
    }

    @Test func readsEveryFixtureConfig() throws {
        guard case .llama(let l) = try config([:]) else { Issue.record("llama fixture not read as llama"); return }
        #expect(l.heads == 4 && l.kvHeads == 2 && l.headDim == 16 && l.tiedEmbeddings && !l.qkvBias && l.channels == 64)
        #expect(l.ropeScaling == Llama3RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 16))
        #expect(l.rmsNormEps == 1e-5 && l.bosToken == 1 && l.eosToken == 2)
        guard case .llama(let q) = try config([:], base: "qwen2") else { Issue.record("qwen2 fixture not read"); return }
        #expect(q.modelType == "qwen2" && q.qkvBias && !q.tiedEmbeddings && q.ropeTheta == 1_000_000 && q.ropeScaling == nil)
        guard case .gpt2(let g) = try config([:], base: "gpt2") else { Issue.record("gpt2 fixture not read"); return }
        #expect(g == GPTConfig(vocabSize: 512, contextLength: 64, layers: 2, heads: 4, channels: 64))
        // transformers 4's layout: rope_theta and rope_scaling at the top level
        guard case .llama(let old) = try config(["rope_parameters": nil, "rope_theta": 500000.0,
                                                  "rope_scaling": ["rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192]])
        else { Issue.record("v4 config not read"); return }
        #expect(old.ropeTheta == 500000 && old.ropeScaling?.factor == 32)
        // Llama 3 lists several eos ids: the first ends a completion
        guard case .llama(let multi) = try config(["eos_token_id": [2, 7]]) else { return }
        #expect(multi.eosToken == 2)
    }

    @Test func refusalsNameTheField() {
        #expect(refusal(["rope_parameters": ["rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0]])?.field == "rope_parameters.rope_type")
        #expect(refusal(["rope_parameters": nil, "rope_scaling": ["type": "linear", "factor": 2.0]])?.field == "rope_scaling.rope_type")
        #expect(refusal(["rope_parameters": ["rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0]])?.field
                == "rope_parameters.low_freq_factor")
        #expect(refusal(["use_sliding_window": true], base: "qwen2")?.field == "use_sliding_window")
        #expect(refusal(["layer_types": ["full_attention", "sliding_attention"]], base: "qwen2")?.field == "layer_types")
        #expect(refusal(["num_experts": 8], base: "qwen2")?.field == "num_experts")
        #expect(refusal(["num_local_experts": 8])?.field == "num_local_experts")
        #expect(refusal(["hidden_act": "gelu"])?.field == "hidden_act")
        #expect(refusal(["mlp_bias": true])?.field == "mlp_bias")
        #expect(refusal(["num_key_value_heads": 3])?.field == "num_key_value_heads")
        #expect(refusal(["hidden_size": nil])?.field == "hidden_size")
        #expect(refusal(["model_type": "mistral"])?.field == "model_type")
        #expect(refusal(["activation_function": "relu"], base: "gpt2")?.field == "activation_function")
        #expect(refusal(["n_head": 5], base: "gpt2")?.field == "channels")
        #expect(refusal(["use_sliding_window": false], base: "qwen2") == nil)
    }

    /// Llama 3 scaling keeps high frequencies, divides low ones by the factor and blends in between.
    @Test func llama3RopeScaling() {
        let s = Llama3RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 16)
        let plain = ropeInverseFrequencies(tinyLlamaConfig())
        let scaled = ropeInverseFrequencies(tinyLlamaConfig(scaling: s))
        for (p, q) in zip(plain, scaled) {
            let wavelen = 2 * Double.pi / Double(p)
            if wavelen < 4 { #expect(q == p) } else if wavelen > 16 { #expect(abs(q - p / 8) <= 1e-7 * p) } else { #expect(q < p && q > p / 8) }
        }
        #expect(plain[0] == 1 && abs(plain[1] - 1 / Float(pow(10000.0, 0.25))) < 1e-7)
    }
}

// KV-cache decoding against the full forward pass: different code paths, so a stated tolerance.
@Suite struct LlamaDecodingTests {
    static let tolerance: Float = 1e-4

    @Test(arguments: [false, true]) func kvCacheMatchesFullForward(bias: Bool) {
        let config = tinyLlamaConfig(bias: bias, tied: !bias)
        let model = noisyLlama(config, seed: 11)
        let V = config.vocabSize
        let seqs = [randomTokens(14, seed: 1, below: V), randomTokens(20, seed: 2, below: V), randomTokens(17, seed: 3, below: V),
                    randomTokens(24, seed: 4, below: V)]
        let promptLengths = [3, 3, 9, 9]  // group 0: samples 0, 1 share 3 tokens; group 1: samples 2, 3 share 9
        let shared = [seqs[0], Array(seqs[0].prefix(3)) + seqs[1].dropFirst(3), seqs[2], Array(seqs[2].prefix(9)) + seqs[3].dropFirst(9)]
        let full = shared.map { model.logits(tokens: $0) }
        let state = LlamaDecodeState(model: model, prompts: [Array(shared[0].prefix(3)), Array(shared[2].prefix(9))], perGroup: 2, maxSteps: 15)
        var worst: Float = 0
        func compare(row: Int, sample: Int, position: Int) {
            let ours = Array(UnsafeBufferPointer(start: state.currentLogits + row * V, count: V))
            worst = max(worst, relativeAndAbsoluteError(ours, Array(full[sample][(position * V)..<((position + 1) * V)]), floor: 1).relative)
        }
        for s in 0..<4 { compare(row: s, sample: s, position: promptLengths[s] - 1) }
        for j in 0..<15 {
            // samples stop at different times (the end of their sequence); rows then hold the remaining ones
            let samples = [0, 1, 2, 3].filter { promptLengths[$0] + j < shared[$0].count }
            guard !samples.isEmpty else { break }
            state.advance(tokens: samples.map { shared[$0][promptLengths[$0] + j] }, samples: samples)
            for (row, s) in samples.enumerated() { compare(row: row, sample: s, position: promptLengths[s] + j) }
        }
        print("kv cache vs full forward (bias \(bias)): max error \(worst) (relative above 1)")
        #expect(worst < Self.tolerance)
    }

    /// The same seed gives the same samples (same code path twice: exact; beside another prompt: to rounding); the sampled
    /// log-probs are the model's own (cached vs full forward: tolerance).
    @Test func seededSamplingIsReproducibleAndLogprobsMatch() {
        let config = tinyLlamaConfig(tied: true)
        let model = noisyLlama(config, seed: 5)
        let options = SamplingOptions(temperature: 1, maxNewTokens: 8, seed: 42, stopAtEOS: false)
        let prompt = randomTokens(5, seed: 9, below: config.vocabSize)
        let a = model.sample(prompt: prompt, count: 4, options: options)
        #expect(model.sample(prompt: prompt, count: 4, options: options) == a)
        // beside another prompt the batch has another shape, so other kernels: equal up to a near-tie, to rounding
        let b = model.sample(prompts: [prompt, [3, 4]], count: 4, options: options)[0]
        expectAgreement(compareDecodes([a], [b], prompts: [prompt], options: options, model: model))
        #expect(Set(a.map(\.tokens)).count > 1)
        for s in a {
            let seq = prompt + s.tokens
            let lp = model.forward(tokens: Array(seq.dropLast()), targets: Array(seq.dropFirst()), batch: 1, time: seq.count - 1).logprobs
            let ours = Array(lp.suffix(s.tokens.count))
            #expect(maxRelativeError(ours, s.logprobs, floor: 1) < 1e-4)
        }
    }

    /// An empty prompt starts from the config's bos; stopAtEOS stops at the config's eos.
    @Test func usesTheConfigsSpecialTokens() {
        var config = tinyLlamaConfig(tied: true)
        config.bosToken = 7
        let model = noisyLlama(config, seed: 3)
        let fromEmpty = model.sample(prompt: [], count: 1, options: .greedy(maxNewTokens: 4, stopAtEOS: false))[0]
        let fromBos = model.sample(prompt: [7], count: 1, options: .greedy(maxNewTokens: 4, stopAtEOS: false))[0]
        #expect(fromEmpty == fromBos)
        // same weights with eos set to the first greedy token: the completion ends there
        var eosConfig = config
        eosConfig.eosToken = fromBos.tokens[0]
        let eosModel = noisyLlama(eosConfig, seed: 3)
        let stopped = eosModel.sample(prompt: [7], count: 1, options: .greedy(maxNewTokens: 4, stopAtEOS: true))[0]
        #expect(stopped.tokens == [fromBos.tokens[0]] && stopped.finishedWithEOS)
    }
}
