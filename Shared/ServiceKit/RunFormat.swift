import Foundation
import Synchronization
import RL
import Store

/// What every role needs to turn a run's text into tokens and back, as the learner published it in the run state:
/// the run config, its prompt format (the byte tokenizer, or the model's tokenizer.json checked against the SHA-256
/// the learner recorded) and the policy's vocabulary.
public struct RunFormat: Sendable {
    public var config: RunConfig
    public var prompt: PromptFormat
    public var vocabSize: Int

    /// Run-state fields the learner writes before any task exists.
    public enum Field {
        public static let config = "config"
        public static let tokenizerSHA256 = "tokenizer_sha256"
        public static let eosToken = "eos_token"
        public static let vocabSize = "vocab_size"
    }

    /// The state fields that describe `format` (the config is written on its own).
    public static func stateFields(tokenizerJSON: [UInt8]?, eos: Int32, vocabSize: Int) -> [String: String] {
        [Field.tokenizerSHA256: tokenizerJSON.map { sha256Hex($0) } ?? "", Field.eosToken: String(eos), Field.vocabSize: String(vocabSize)]
    }
}

/// The run's format, re-read from Redis only when the run state changes (a reused run id may bring another model).
public final class RunFormatCache: Sendable {
    private let cached = Mutex<(key: [String], format: RunFormat)?>(nil)

    public init() {}

    /// nil while the learner has not published the run yet.
    public func format(names: Names, redis: RedisClient) async throws -> RunFormat? {
        let fields = [RunFormat.Field.config, RunFormat.Field.tokenizerSHA256, RunFormat.Field.eosToken, RunFormat.Field.vocabSize]
        let reply = try await redis.command(["HMGET", names.stateKey] + fields)
        let values = (reply.array ?? []).map { $0.string }
        guard values.count == fields.count, let toml = values[0], let sha = values[1],
              let eos = values[2].flatMap({ Int32($0) }), let vocab = values[3].flatMap({ Int($0) }) else { return nil }
        let key = values.map { $0 ?? "" }
        if let hit = cached.withLock({ $0 }), hit.key == key { return hit.format }
        let config = try RunConfig(try Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"))
        var tokenizerJSON: [UInt8]? = nil
        if !sha.isEmpty {
            guard let bytes = try await redis.get(names.tokenizerKey) else {
                throw RunFormatError(problem: "the run state names tokenizer \(sha.prefix(16)) but \(names.tokenizerKey) is missing")
            }
            guard sha256Hex(bytes) == sha else {
                throw RunFormatError(problem: "\(names.tokenizerKey) does not match the SHA-256 in the run state (\(sha.prefix(16)))")
            }
            tokenizerJSON = bytes
        }
        let format = RunFormat(config: config, prompt: try config.promptFormat(tokenizerJSON: tokenizerJSON, eos: eos), vocabSize: vocab)
        cached.withLock { $0 = (key, format) }
        return format
    }
}

/// The run's published format cannot be used.
public struct RunFormatError: Error, Sendable, CustomStringConvertible {
    public var problem: String
    public var description: String { problem }
}
