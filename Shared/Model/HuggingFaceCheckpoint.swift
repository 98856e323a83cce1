import Foundation

/// A Hugging Face model directory: config.json plus model.safetensors, or shards listed by model.safetensors.index.json.
/// Tensors keep Hugging Face's names and shapes, so transformers' `AutoModelForCausalLM.from_pretrained` opens what is
/// saved here and this opens what transformers saves. Any float dtype is read (widened to float32); the caller picks the
/// dtype written.
public enum HuggingFaceCheckpoint {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    /// The model in `directory`, whichever architecture its config.json names (gpt2, llama, qwen2).
    public static func load(from directory: URL) throws -> any Policy {
        switch try readConfig(directory) {
        case .gpt2(let c):
            let model = GPT(config: c, seed: 0)
            try readWeights(directory, entries: model.layout.entries, into: model.params, tiedHead: true)
            return model
        case .llama(let c):
            let model = Llama(config: c, seed: 0)
            try readWeights(directory, entries: model.layout.entries, into: model.params, tiedHead: c.tiedEmbeddings)
            return model
        }
    }

    /// A Llama-family model from `directory`; refuses a gpt2 directory.
    public static func loadLlama(from directory: URL) throws -> Llama {
        guard let model = try load(from: directory) as? Llama else {
            throw LlamaConfigError(field: "model_type", reason: "gpt2 where a Llama-family model was expected")
        }
        return model
    }

    /// Writes config.json and the weights in `dtype`; with `maxShardBytes`, several shards plus the index file.
    public static func save(_ model: Llama, to directory: URL, dtype: SafetensorsDType = .float32, maxShardBytes: Int? = nil) throws {
        try writeWeights(model.layout.entries, params: model.params, to: directory, dtype: dtype, maxShardBytes: maxShardBytes)
        try configJSON(model, dtype: dtype).write(to: directory.appendingPathComponent(configFile), options: .atomic)
    }

    /// config.json of a Llama-family model saved in `dtype`.
    public static func configJSON(_ model: Llama, dtype: SafetensorsDType) throws -> Data {
        try HuggingFaceConfig.json(model.config, dtype: dtype)
    }

    /// GPT-2 as GPT2LMHeadModel saves it ("transformer." names, Conv1D (in,out) matrices, tied head).
    public static func save(_ model: GPT, to directory: URL, dtype: SafetensorsDType = .float32, maxShardBytes: Int? = nil) throws {
        try writeWeights(model.layout.entries, params: model.params, to: directory, dtype: dtype, maxShardBytes: maxShardBytes)
        try configJSON(model, dtype: dtype).write(to: directory.appendingPathComponent(configFile), options: .atomic)
    }

    /// config.json of GPT-2 saved in `dtype`.
    public static func configJSON(_ model: GPT, dtype: SafetensorsDType) throws -> Data {
        var dict = try JSONSerialization.jsonObject(with: try Checkpoint.huggingFaceConfig(model.config)) as! [String: Any]
        dict["torch_dtype"] = dtype.torchName
        return try JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys, .prettyPrinted])
    }

    static func readConfig(_ directory: URL) throws -> HuggingFaceConfig {
        let url = directory.appendingPathComponent(configFile)
        guard let data = try? Data(contentsOf: url) else { throw CheckpointError.missingFile(url.path) }
        return try HuggingFaceConfig.parse(data)
    }

    // MARK: weights

    /// One parsed safetensors file of the directory.
    struct Shard {
        var path: String
        var file: Safetensors.File
        var bytes: [UInt8]
    }

    /// Every shard of the directory and which one holds each tensor.
    static func readShards(_ directory: URL) throws -> (shards: [Shard], where: [String: Int]) {
        let indexURL = directory.appendingPathComponent(indexFile)
        var names: [String]
        if let data = try? Data(contentsOf: indexURL) {
            guard let dict = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let map = dict["weight_map"] as? [String: String]
            else { throw CheckpointError.badConfig("\(indexFile) lacks a weight_map of tensor name to file") }
            names = Array(Set(map.values)).sorted()
        } else {
            names = [weightsFile]
        }
        var shards: [Shard] = [], location: [String: Int] = [:]
        for name in names {
            let url = directory.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: url, options: .alwaysMapped) else { throw CheckpointError.missingFile(url.path) }
            let bytes = [UInt8](data)
            let file = try Safetensors.parse(bytes)
            for tensor in file.tensors.keys {
                if let other = location[tensor] {
                    throw CheckpointError.badHeader("tensor \(tensor) is in both \(shards[other].path) and \(name)")
                }
                location[tensor] = shards.count
            }
            shards.append(Shard(path: name, file: file, bytes: bytes))
        }
        return (shards, location)
    }

    /// Fills `params` from the directory's tensors by name; checks everything before copying anything. Names may lack
    /// GPT-2's "transformer." prefix; a tied head's lm_head.weight and non-parameter buffers are ignored.
    static func readWeights(_ directory: URL, entries: [ParameterLayout.Entry], into params: UnsafeMutablePointer<Float>,
                            tiedHead: Bool) throws {
        let (shards, location) = try readShards(directory)
        func lookup(_ name: String) -> String? {
            if location[name] != nil { return name }
            if name.hasPrefix("transformer.") {
                let short = String(name.dropFirst("transformer.".count))
                if location[short] != nil { return short }
            }
            return nil
        }
        var used = Set<String>()
        for e in entries {
            guard let key = lookup(e.name) else { throw CheckpointError.missingTensor(e.name) }
            try Safetensors.check(key, shards[location[key]!].file.tensors[key]!, expectedShape: e.shape)
            used.insert(key)
        }
        for name in location.keys.sorted() where !used.contains(name) {
            let ignorable = (tiedHead && name == "lm_head.weight") || name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias")
                || name.hasSuffix("rotary_emb.inv_freq")
            if !ignorable { throw CheckpointError.unexpectedTensor(name) }
        }
        for e in entries {
            let key = lookup(e.name)!, s = shards[location[key]!]
            try Safetensors.read(key, from: s.file, bytes: s.bytes, expectedShape: e.shape, into: params + e.offset)
        }
    }

    /// Writes the tensors in layout order, in one file or in shards of at most `maxShardBytes` (a tensor is never split).
    static func writeWeights(_ entries: [ParameterLayout.Entry], params: UnsafePointer<Float>, to directory: URL,
                             dtype: SafetensorsDType, maxShardBytes: Int?) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var groups: [[ParameterLayout.Entry]] = [[]]
        var size = 0
        for e in entries {
            let bytes = e.count * dtype.byteCount
            if let limit = maxShardBytes, size > 0, size + bytes > limit { groups.append([]); size = 0 }
            groups[groups.count - 1].append(e)
            size += bytes
        }
        let metadata = ["format": "pt"]
        func outputs(_ g: [ParameterLayout.Entry]) -> [Safetensors.Output] {
            g.map { Safetensors.Output(name: $0.name, shape: $0.shape, data: params + $0.offset) }
        }
        let index = directory.appendingPathComponent(indexFile)
        if groups.count == 1 {
            try? FileManager.default.removeItem(at: index)
            try Data(Safetensors.write(outputs(groups[0]), metadata: metadata, dtype: dtype))
                .write(to: directory.appendingPathComponent(weightsFile), options: .atomic)
            return
        }
        try? FileManager.default.removeItem(at: directory.appendingPathComponent(weightsFile))
        var weightMap: [String: String] = [:]
        for (i, g) in groups.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, groups.count)
            try Data(Safetensors.write(outputs(g), metadata: metadata, dtype: dtype))
                .write(to: directory.appendingPathComponent(name), options: .atomic)
            for e in g { weightMap[e.name] = name }
        }
        let total = entries.reduce(0) { $0 + $1.count * dtype.byteCount }
        let json: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
        try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted]).write(to: index, options: .atomic)
    }
}
