import Foundation
import Testing
@testable import Model

// Hugging Face directories in and out: round trips are the same code path twice, so they are compared bit for bit.
@Suite struct HFCheckpointTests {
    func temporaryDirectory(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("hf-\(name)-\(UUID().uuidString)")
    }

    /// Every tensor's raw bytes in a directory (all shards), by name.
    func tensorBytes(_ dir: URL) throws -> [String: (dtype: String, shape: [Int], bytes: [UInt8])] {
        let (shards, location) = try HuggingFaceCheckpoint.readShards(dir)
        var out: [String: (String, [Int], [UInt8])] = [:]
        for (name, i) in location {
            let s = shards[i], t = s.file.tensors[name]!
            out[name] = (t.dtype, t.shape, Array(s.bytes[(s.file.dataStart + t.begin)..<(s.file.dataStart + t.end)]))
        }
        return out
    }

    /// Loading transformers' files and saving them in the same dtype gives every tensor's bytes back, under the same
    /// names; loading that again gives the same float32 weights.
    @Test(arguments: LlamaReferenceTests.cases) func saveInTheSameDTypeGivesTheSameTensors(arch: String, dtype: String) throws {
        let source = LlamaFixtures.directory(arch, dtype)
        let model = try HuggingFaceCheckpoint.load(from: source)
        let dir = temporaryDirectory("roundtrip")
        defer { try? FileManager.default.removeItem(at: dir) }
        try model.saveHuggingFace(to: dir, dtype: SafetensorsDType(torchName: dtype)!)
        let theirs = try tensorBytes(source), ours = try tensorBytes(dir)
        #expect(Set(theirs.keys) == Set(ours.keys))
        for (name, t) in theirs {
            guard let o = ours[name] else { continue }
            #expect(o.dtype == t.dtype && o.shape == t.shape, "\(name)")
            #expect(o.bytes == t.bytes, "\(name) bytes differ")
        }
        let again = try HuggingFaceCheckpoint.load(from: dir)
        #expect(again.safetensorsBytes() == model.safetensorsBytes())
        guard case let .llama(a)? = try? HuggingFaceCheckpoint.readConfig(dir), case let .llama(b)? = try? HuggingFaceCheckpoint.readConfig(source) else {
            #expect(arch == "gpt2")
            return
        }
        #expect(a == b)
    }

    /// Shards of at most 40 KB with an index, read back to the same weights; a float32 save of bfloat16 weights is exact.
    @Test func shardedSaveAndDTypeWidening() throws {
        let model = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("qwen2", "bfloat16"))
        let dir = temporaryDirectory("sharded")
        defer { try? FileManager.default.removeItem(at: dir) }
        try HuggingFaceCheckpoint.save(model, to: dir, dtype: .float32, maxShardBytes: 40_000)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(files.contains(HuggingFaceCheckpoint.indexFile) && !files.contains(HuggingFaceCheckpoint.weightsFile))
        #expect(files.filter { $0.hasSuffix(".safetensors") }.count > 3)
        let back = try HuggingFaceCheckpoint.loadLlama(from: dir)
        #expect(back.flatParameters == model.flatParameters)
        // saving unsharded removes the stale index and shards are ignored
        try HuggingFaceCheckpoint.save(model, to: dir, dtype: .bfloat16)
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent(HuggingFaceCheckpoint.indexFile).path))
        #expect(try HuggingFaceCheckpoint.loadLlama(from: dir).flatParameters == model.flatParameters)
    }

    /// bfloat16 and float16 rounding: nearest, ties to even, as torch does (checked against torch's rounded fixture).
    @Test func roundingMatchesTorch() throws {
        let f32 = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("llama", "float32"))
        for dtype in [SafetensorsDType.bfloat16, .float16] {
            let dir = temporaryDirectory("rounding")
            defer { try? FileManager.default.removeItem(at: dir) }
            try HuggingFaceCheckpoint.save(f32, to: dir, dtype: dtype)
            let ours = try HuggingFaceCheckpoint.loadLlama(from: dir)
            let torch = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("llama", dtype.torchName))
            #expect(ours.flatParameters == torch.flatParameters)
        }
        var specials: [Float] = [1 + 1.0 / 256, 1 + 3.0 / 256, -0.0, .infinity, 65520, 1e-8]
        var out = [UInt8](repeating: 0, count: 2 * specials.count)
        out.withUnsafeMutableBytes { SafetensorsDType.bfloat16.encode(&specials, count: specials.count, into: $0.baseAddress!) }
        var back = [Float](repeating: 0, count: specials.count)
        out.withUnsafeBytes { SafetensorsDType.bfloat16.decode($0.baseAddress!, count: specials.count, into: &back) }
        #expect(back[0] == 1 && back[1] == 1 + 4.0 / 256 && back[2].sign == .minus && back[3] == .infinity)
    }

    /// The single blob the broadcaster ships carries the config: any architecture comes back from it, bit-exact.
    @Test func wireBlobRoundTrip() throws {
        for arch in LlamaFixtures.architectures {
            let model = try HuggingFaceCheckpoint.load(from: LlamaFixtures.directory(arch, "float32"))
            let bytes = model.safetensorsBytes()
            let back = try Policies.fromSafetensors(bytes)
            #expect(back.architecture == arch)
            #expect(back.safetensorsBytes() == bytes)
            let copy = model.copy()
            #expect(copy.safetensorsBytes() == bytes)
        }
        // loadWeights refuses another shape, naming the tensor, and changes nothing
        let llama = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("llama", "float32"))
        let before = llama.safetensorsBytes()
        let other = Llama(config: tinyLlamaConfig(tied: true), seed: 1)
        #expect(throws: CheckpointError.shapeMismatch(tensor: "model.embed_tokens.weight", expected: [512, 64], found: [23, 16])) {
            try llama.loadWeights(safetensors: other.safetensorsBytes())
        }
        #expect(llama.safetensorsBytes() == before)
        let qwen = try HuggingFaceCheckpoint.loadLlama(from: LlamaFixtures.directory("qwen2", "float32"))
        #expect(throws: CheckpointError.self) { try llama.loadWeights(safetensors: qwen.safetensorsBytes()) }
    }

    /// Damaged directories: each error names the tensor, file or field at fault.
    @Test func errorsNameWhatIsWrong() throws {
        let source = LlamaFixtures.directory("llama", "float32")
        let model = try HuggingFaceCheckpoint.loadLlama(from: source)
        let dir = temporaryDirectory("errors")
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ entries: [ParameterLayout.Entry], dtype: SafetensorsDType = .float32) throws {
            let outputs = entries.map { Safetensors.Output(name: $0.name, shape: $0.shape, data: model.params + $0.offset) }
            try Data(Safetensors.write(outputs, metadata: [:], dtype: dtype)).write(to: dir.appendingPathComponent("model.safetensors"))
        }
        try model.saveHuggingFace(to: dir, dtype: .float32)
        let entries = model.layout.entries
        try write(entries.filter { $0.name != "model.layers.1.self_attn.k_proj.weight" })
        #expect(throws: CheckpointError.missingTensor("model.layers.1.self_attn.k_proj.weight")) { try HuggingFaceCheckpoint.load(from: dir) }
        var extra = entries
        extra.append(ParameterLayout.Entry(name: "model.layers.0.mlp.experts.weight", shape: [4], offset: 0))
        try write(extra)
        #expect(throws: CheckpointError.unexpectedTensor("model.layers.0.mlp.experts.weight")) { try HuggingFaceCheckpoint.load(from: dir) }
        var wrong = entries
        wrong[wrong.count - 1].shape = [32, 2]  // model.norm.weight
        try write(wrong)
        #expect(throws: CheckpointError.shapeMismatch(tensor: "model.norm.weight", expected: [64], found: [32, 2])) {
            try HuggingFaceCheckpoint.load(from: dir)
        }
        // an untied model needs lm_head.weight
        try write(entries)
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        config["tie_word_embeddings"] = false
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        #expect(throws: CheckpointError.missingTensor("lm_head.weight")) { try HuggingFaceCheckpoint.load(from: dir) }
        config["rope_parameters"] = ["rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0]
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        #expect(throws: LlamaConfigError(field: "rope_parameters.rope_type", reason: "dynamic is not implemented (default and llama3 are)")) {
            try HuggingFaceCheckpoint.load(from: dir)
        }
        // a shard named by the index but absent
        let sharded = temporaryDirectory("missing-shard")
        defer { try? FileManager.default.removeItem(at: sharded) }
        try HuggingFaceCheckpoint.save(model, to: sharded, dtype: .bfloat16, maxShardBytes: 50_000)
        let shardNames = try FileManager.default.contentsOfDirectory(atPath: sharded.path).filter { $0.hasPrefix("model-") }.sorted()
        #expect(shardNames.count > 2)
        let victim = sharded.appendingPathComponent(shardNames[1])
        try FileManager.default.removeItem(at: victim)
        #expect(throws: CheckpointError.missingFile(victim.path)) { try HuggingFaceCheckpoint.load(from: sharded) }
        let nowhere = temporaryDirectory("none")
        #expect(throws: CheckpointError.missingFile(nowhere.appendingPathComponent("config.json").path)) {
            try HuggingFaceCheckpoint.load(from: nowhere)
        }
    }

    /// Exported checkpoints, after a training step so the weights are Swift's own: Swift's logits of the reloaded export
    /// are written beside it for `llama_fixtures.py check-export DIR`, which recomputes them with transformers. The check
    /// runs when TRIBUTARY_FIXTURES_PYTHON names the fixtures venv's python (CI has no Python: then only the reload runs).
    @Test(arguments: [("llama", SafetensorsDType.bfloat16), ("qwen2", .float32), ("gpt2", .float16)])
    func exportedCheckpointOpensInTransformers(arch: String, dtype: SafetensorsDType) throws {
        let model = try HuggingFaceCheckpoint.load(from: LlamaFixtures.directory(arch, "float32"))
        let opt = AdamW(model: model, learningRate: 1e-2, weightDecay: 0)
        let seq = LlamaFixtures.manifest.models[arch]!.sequences.last!
        _ = model.forward(tokens: Array(seq.dropLast()), targets: Array(seq.dropFirst()), batch: 1, time: seq.count - 1)
        model.backward(dLogprobs: [Float](repeating: -1, count: seq.count - 1), mask: [Float](repeating: 1, count: seq.count - 1))
        opt.update(model, learningRate: 1e-2)
        let dir = ProcessInfo.processInfo.environment["TRIBUTARY_EXPORT_DIR"].map { URL(fileURLWithPath: $0).appendingPathComponent("\(arch)-\(dtype.torchName)") }
            ?? temporaryDirectory("export")
        defer { if ProcessInfo.processInfo.environment["TRIBUTARY_EXPORT_DIR"] == nil { try? FileManager.default.removeItem(at: dir) } }
        try model.saveHuggingFace(to: dir, dtype: dtype)
        let reloaded = try HuggingFaceCheckpoint.load(from: dir)
        #expect(reloaded.architecture == arch)
        let sequences = LlamaFixtures.manifest.models[arch]!.sequences
        // every sequence's logits (T,V) in one buffer, written as tensors logits.0, logits.1, ...
        let logits = sequences.flatMap { reloaded.logits(tokens: $0) }
        let bytes = logits.withUnsafeBufferPointer { buf in
            var offset = 0
            let outputs = sequences.enumerated().map { i, seq in
                defer { offset += seq.count * reloaded.vocabSize }
                return Safetensors.Output(name: "logits.\(i)", shape: [seq.count, reloaded.vocabSize], data: buf.baseAddress! + offset)
            }
            return Safetensors.write(outputs, metadata: [:])
        }
        try Data(bytes).write(to: dir.appendingPathComponent("swift_logits.safetensors"))
        try JSONEncoder().encode(sequences).write(to: dir.appendingPathComponent("swift_sequences.json"))
        guard let python = ProcessInfo.processInfo.environment["TRIBUTARY_FIXTURES_PYTHON"] else { return }
        let script = LlamaFixtures.root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/fixtures/llama_fixtures.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path, "check-export", dir.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print("export check \(arch) \(dtype.torchName): \(output)")
        #expect(process.terminationStatus == 0, "\(output)")
    }
}
