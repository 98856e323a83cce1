import Foundation

// One safetensors blob with Hugging Face Llama/Qwen2 names and shapes; the LlamaConfig rides in __metadata__.
extension Llama {
    static let configMetadataKey = "tributary.llama_config"

    /// Float32 safetensors bytes with Hugging Face names/shapes; the LlamaConfig is also stored in __metadata__.
    public func safetensorsBytes() -> [UInt8] {
        let configJSON = String(decoding: try! JSONEncoder.sorted.encode(config), as: UTF8.self)
        let outputs = layout.entries.map { Safetensors.Output(name: $0.name, shape: $0.shape, data: params + $0.offset) }
        return Safetensors.write(outputs, metadata: ["format": "pt", Llama.configMetadataKey: configJSON])
    }

    /// A model built from the config in the file's metadata, with the file's weights.
    public static func fromSafetensors(_ bytes: [UInt8]) throws -> Llama {
        let file = try Safetensors.parse(bytes)
        guard let json = file.metadata[configMetadataKey] else { throw CheckpointError.missingMetadata(configMetadataKey) }
        let config: LlamaConfig
        do { config = try JSONDecoder().decode(LlamaConfig.self, from: Data(json.utf8)) } catch {
            throw CheckpointError.badMetadata(key: configMetadataKey, value: json)
        }
        do { try config.validate() } catch { throw CheckpointError.badConfig("\(error)") }
        // every parameter is read from the file (load refuses one that lacks a tensor)
        let model = Llama(zeroedFor: config)
        try model.load(file, bytes: bytes)
        return model
    }

    /// Replaces the weights in place; refuses a file whose tensors don't fit, naming the tensor. On error nothing changes.
    public func loadWeights(safetensors bytes: [UInt8]) throws {
        try load(try Safetensors.parse(bytes), bytes: bytes)
    }

    private func load(_ file: Safetensors.File, bytes: [UInt8]) throws {
        for e in layout.entries {
            guard let t = file.tensors[e.name] else { throw CheckpointError.missingTensor(e.name) }
            try Safetensors.check(e.name, t, expectedShape: e.shape)
        }
        let names = Set(layout.entries.map(\.name))
        for name in file.tensors.keys.sorted() where !names.contains(name) {
            if !(config.tiedEmbeddings && name == "lm_head.weight") { throw CheckpointError.unexpectedTensor(name) }
        }
        for e in layout.entries {
            try Safetensors.read(e.name, from: file, bytes: bytes, expectedShape: e.shape, into: params + e.offset)
        }
    }
}
