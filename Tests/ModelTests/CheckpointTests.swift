import Foundation
import Testing
@testable import Model

@Suite struct CheckpointTests {
    @Test func safetensorsRoundTripIsBitExact() throws {
        let model = GPT(config: tinyConfig, seed: 21)
        let bytes = model.safetensorsBytes()
        let loaded = try GPT.fromSafetensors(bytes)
        #expect(loaded.config == tinyConfig)
        #expect(loaded.flatParameters.map(\.bitPattern) == model.flatParameters.map(\.bitPattern))
        #expect(loaded.safetensorsBytes() == bytes)
        // Hugging Face names and (in, out) Conv1D shapes in the header
        let header = String(decoding: bytes[8..<(8 + Int(bytes[0]) + Int(bytes[1]) << 8)], as: UTF8.self)
        #expect(header.contains("\"transformer.h.1.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[16,48]"))
        #expect(header.contains("\"transformer.wte.weight\":{\"dtype\":\"F32\",\"shape\":[259,16]"))
        let other = GPT(config: tinyConfig, seed: 22)
        try other.loadWeights(safetensors: bytes)
        #expect(other.safetensorsBytes() == bytes)
        let copy = GPT(config: tinyConfig, seed: 23)
        copy.copyWeights(from: model)
        #expect(copy.flatParameters == model.flatParameters)
    }

    @Test func checkpointDirectoryRoundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("model-ckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = GPT(config: tinyConfig, seed: 31)
        let opt = AdamW(model: model, learningRate: 1e-3, beta2: 0.95, weightDecay: 0.1, maxGradNorm: 0.5)
        _ = model.forward(tokens: randomTokens(8, seed: 1), targets: randomTokens(8, seed: 2), batch: 1, time: 8)
        model.backward(dLogprobs: [Float](repeating: -1, count: 8), mask: [Float](repeating: 1, count: 8))
        opt.update(model, learningRate: 1e-3)
        try Checkpoint.save(model: model, optimizer: opt, step: 17, to: dir)
        let (m2, o2, step) = try Checkpoint.load(from: dir)
        #expect(step == 17)
        #expect(m2.safetensorsBytes() == model.safetensorsBytes())
        let o = try #require(o2)
        #expect(o.stateBytes() == opt.stateBytes())
        #expect(o.step == 1 && o.beta2 == 0.95 && o.weightDecay == 0.1 && o.maxGradNorm == 0.5)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        #expect(config["n_embd"] as? Int == 16 && config["n_head"] as? Int == 2 && config["n_layer"] as? Int == 2)
        #expect(config["n_positions"] as? Int == 16 && config["vocab_size"] as? Int == 259)
        // without an optimizer
        try Checkpoint.save(model: model, optimizer: nil, step: 3, to: dir.appendingPathComponent("plain"))
        let plain = try Checkpoint.load(from: dir.appendingPathComponent("plain"))
        #expect(plain.optimizer == nil && plain.step == 3)
    }

    @Test func truncatedFile() throws {
        let bytes = GPT(config: tinyConfig, seed: 1).safetensorsBytes()
        #expect(throws: CheckpointError.self) { try GPT.fromSafetensors(Array(bytes.prefix(4))) }
        do {
            _ = try GPT.fromSafetensors(Array(bytes.dropLast(10)))
            Issue.record("truncated file loaded")
        } catch let CheckpointError.truncated(expected, found) {
            #expect(expected == bytes.count && found == bytes.count - 10)
        }
    }

    @Test func badJSONHeader() throws {
        var bytes = GPT(config: tinyConfig, seed: 1).safetensorsBytes()
        bytes[8] = UInt8(ascii: "[")
        #expect { try GPT.fromSafetensors(bytes) } throws: { error in
            guard case CheckpointError.badHeader = error else { return false }
            return true
        }
    }

    @Test func unknownDTypeNamesTensor() throws {
        var bytes = GPT(config: tinyConfig, seed: 1).safetensorsBytes()
        // first tensor in the file is wte; "F32" -> "I32" keeps every offset valid
        let pattern = Array("\"F32\"".utf8)
        let at = (8..<bytes.count).first { Array(bytes[$0..<($0 + 5)]) == pattern }!
        bytes[at + 1] = UInt8(ascii: "I")
        #expect(throws: CheckpointError.unknownDType(tensor: "transformer.wte.weight", dtype: "I32")) {
            try GPT.fromSafetensors(bytes)
        }
    }

    @Test func mismatchedShapesNameTheTensor() throws {
        let wider = GPT(config: GPTConfig(contextLength: 16, layers: 2, heads: 2, channels: 32), seed: 1)
        let model = GPT(config: tinyConfig, seed: 2)
        let before = model.safetensorsBytes()
        #expect(throws: CheckpointError.shapeMismatch(tensor: "transformer.wte.weight", expected: [259, 16], found: [259, 32])) {
            try model.loadWeights(safetensors: wider.safetensorsBytes())
        }
        #expect(model.safetensorsBytes() == before)  // unchanged on error
        let deeper = GPT(config: GPTConfig(contextLength: 16, layers: 3, heads: 2, channels: 16), seed: 1)
        #expect(throws: CheckpointError.unexpectedTensor("transformer.h.2.attn.c_attn.bias")) {
            try model.loadWeights(safetensors: deeper.safetensorsBytes())
        }
        let shallow = GPT(config: GPTConfig(contextLength: 16, layers: 1, heads: 2, channels: 16), seed: 1)
        #expect(throws: CheckpointError.missingTensor("transformer.h.1.ln_1.weight")) {
            try model.loadWeights(safetensors: shallow.safetensorsBytes())
        }
    }

    @Test func missingMetadataAndFiles() throws {
        let model = GPT(config: tinyConfig, seed: 1)
        let outputs = model.layout.entries.map { Safetensors.Output(name: $0.name, shape: $0.shape, data: model.params + $0.offset) }
        let noConfig = Safetensors.write(outputs, metadata: ["format": "pt"])
        #expect(throws: CheckpointError.missingMetadata(GPT.configMetadataKey)) { try GPT.fromSafetensors(noConfig) }
        try model.loadWeights(safetensors: noConfig)  // in place needs no config
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("model-missing-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: CheckpointError.missingFile(dir.appendingPathComponent("config.json").path)) { try Checkpoint.load(from: dir) }
        try Checkpoint.save(model: model, optimizer: nil, step: 0, to: dir)
        try Data("{\"n_embd\": 16}".utf8).write(to: dir.appendingPathComponent("config.json"))
        #expect(throws: CheckpointError.badConfig("config.json lacks integer vocab_size")) { try Checkpoint.load(from: dir) }
    }

    @Test func optimizerStateRefusesOtherModels() throws {
        let opt = AdamW(model: GPT(config: tinyConfig, seed: 1), learningRate: 1e-3)
        let other = AdamW(model: GPT(config: GPTConfig(contextLength: 8, layers: 1, heads: 2, channels: 16), seed: 1), learningRate: 1e-3)
        #expect(throws: CheckpointError.self) { try opt.loadState(other.stateBytes()) }
    }
}
