import Foundation

// Safetensors with Hugging Face GPT-2 tensor names and shapes; the GPTConfig rides in __metadata__.
extension GPT {
    static let configMetadataKey = "tributary.gpt_config"

    /// Safetensors bytes with Hugging Face GPT-2 names/shapes; the GPTConfig is also stored in the header's __metadata__.
    public func safetensorsBytes() -> [UInt8] {
        let configJSON = String(decoding: try! JSONEncoder.sorted.encode(config), as: UTF8.self)
        let outputs = layout.entries.map { Safetensors.Output(name: $0.name, shape: $0.shape, data: params + $0.offset) }
        return Safetensors.write(outputs, metadata: ["format": "pt", GPT.configMetadataKey: configJSON])
    }

    /// A model built from the config in the file's metadata, with the file's weights.
    public static func fromSafetensors(_ bytes: [UInt8]) throws -> GPT {
        let file = try Safetensors.parse(bytes)
        guard let json = file.metadata[configMetadataKey] else { throw CheckpointError.missingMetadata(configMetadataKey) }
        let config: GPTConfig
        do { config = try JSONDecoder().decode(GPTConfig.self, from: Data(json.utf8)) } catch {
            throw CheckpointError.badMetadata(key: configMetadataKey, value: json)
        }
        do { try config.validate() } catch { throw CheckpointError.badConfig("\(error)") }
        // every parameter is read from the file (load refuses one that lacks a tensor)
        let model = GPT(zeroedFor: config)
        try model.load(file, bytes: bytes)
        return model
    }

    /// Replaces the weights in place; refuses a file whose tensors don't fit, naming the tensor. On error nothing changes.
    public func loadWeights(safetensors bytes: [UInt8]) throws {
        try load(try Safetensors.parse(bytes), bytes: bytes)
    }

    private func load(_ file: Safetensors.File, bytes: [UInt8]) throws {
        // Hugging Face files may omit the "transformer." prefix and carry the tied lm_head or attention-mask buffers
        func lookup(_ name: String) -> String? {
            if file.tensors[name] != nil { return name }
            let short = String(name.dropFirst("transformer.".count))
            return file.tensors[short] != nil ? short : nil
        }
        var used = Set<String>()
        for e in layout.entries {
            guard let key = lookup(e.name) else { throw CheckpointError.missingTensor(e.name) }
            try Safetensors.check(key, file.tensors[key]!, expectedShape: e.shape)
            used.insert(key)
        }
        for name in file.tensors.keys.sorted() where !used.contains(name) {
            let ignorable = name == "lm_head.weight" || name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias")
            if !ignorable { throw CheckpointError.unexpectedTensor(name) }
        }
        for e in layout.entries {
            try Safetensors.read(lookup(e.name)!, from: file, bytes: bytes, expectedShape: e.shape, into: params + e.offset)
        }
    }
}

extension JSONEncoder {
    /// Sorted keys, so the same value always gives the same bytes.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
