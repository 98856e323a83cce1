import Checkpoints
import Config
import Foundation
import Logging
import Synchronization
import RL
import Store
import Model
import Tokenizers

/// What every role needs to turn a run's text into tokens and back, as the learner published it in the run state: the
/// prompt format (the byte tokenizer, or the model's tokenizer.json checked against the SHA-256 the learner recorded;
/// the run's chat template and system turn; the policy's eos) and the policy's vocabulary. Only these fields are read,
/// not the whole run config, so a worker of an older build is not stopped by a run setting it does not know.
public struct RunFormat: Sendable {
    public var prompt: PromptFormat
    public var vocabSize: Int

    /// Run-state fields the learner writes before any task exists.
    public enum Field {
        public static let template = "prompt_template"
        public static let system = "prompt_system"
        public static let tokenizerSHA256 = "tokenizer_sha256"
        public static let eosToken = "eos_token"
        public static let vocabSize = "vocab_size"
        static let all = [template, system, tokenizerSHA256, eosToken, vocabSize]
    }

    /// The state fields that describe the run's format.
    public static func stateFields(config: RunConfig, tokenizerJSON: [UInt8]?, eos: Int32, vocabSize: Int) -> [String: String] {
        [Field.template: config.chatTemplateSource ?? "", Field.system: config.systemPrompt ?? "",
         Field.tokenizerSHA256: tokenizerJSON.map { sha256Hex($0) } ?? "", Field.eosToken: String(eos), Field.vocabSize: String(vocabSize)]
    }
}

extension RunFormat {
    /// Copies the run's format (its state fields, and the tokenizer they name) from the run's Redis to the checkpoint
    /// Redis, where workers reading a relay find it: the tokenizer first, so a reader that sees a new SHA-256 finds its
    /// file. Writes nothing while the learner has not published the format, or when the copy is already current.
    public static func mirror(names: Names, from source: RedisClient, to target: RedisClient) async throws {
        let published = (try await source.command(["HMGET", names.stateKey] + Field.all).array ?? []).map(\.string)
        let values = published.compactMap { $0 }
        guard values.count == Field.all.count else { return }
        let copied = (try await target.command(["HMGET", names.stateKey] + Field.all).array ?? []).map(\.string)
        guard copied != published else { return }
        var commands: [[any RedisArgument]] = []
        let sha = values[2]
        if !sha.isEmpty {
            guard let tokenizer = try await source.get(names.tokenizerKey) else { return }  // mid-update: the next version copies it
            commands.append(["SET", names.tokenizerKey, tokenizer])
        }
        commands.append(["HSET", names.stateKey] + zip(Field.all, values).flatMap { [$0 as any RedisArgument, $1] })
        _ = try await target.pipeline(commands)
    }
}

/// The run's format, re-read from Redis only when the published fields change (a reused run id may bring another model).
public final class RunFormatCache: Sendable {
    private let cached = Mutex<(key: [String], format: RunFormat)?>(nil)

    public init() {}

    /// nil while the learner has not published the run's format. Throws `RunFormatError`, naming the field, when what is
    /// published cannot be used (or is mid-update: the caller hands its message back and looks again).
    public func format(names: Names, redis: RedisClient) async throws -> RunFormat? {
        let reply = try await redis.command(["HMGET", names.stateKey] + RunFormat.Field.all)
        let values = (reply.array ?? []).map { $0.string }
        guard values.count == RunFormat.Field.all.count, let template = values[0], let system = values[1], let sha = values[2],
              let eosText = values[3], let vocabText = values[4] else { return nil }
        let key = [template, system, sha, eosText, vocabText]
        if let hit = cached.withLock({ $0 }), hit.key == key { return hit.format }
        guard let vocab = Int(vocabText), (1...Int(Int32.max)).contains(vocab) else {
            throw RunFormatError(problem: "run state \(RunFormat.Field.vocabSize) = '\(vocabText.prefix(20))' is not a vocabulary size")
        }
        guard let eos = Int32(eosText), eos >= 0, Int(eos) < vocab else {
            throw RunFormatError(problem: "run state \(RunFormat.Field.eosToken) = '\(eosText.prefix(20))' is not a token of the \(vocab)-token vocabulary")
        }
        let tokenizer: any TextTokenizer
        if sha.isEmpty {
            tokenizer = ByteTokenizer()
        } else {
            guard let bytes = try await redis.get(names.tokenizerKey) else {
                throw RunFormatError(problem: "the run state names tokenizer \(sha.prefix(16)) but \(names.tokenizerKey) is missing")
            }
            guard sha256Hex(bytes) == sha else {
                throw RunFormatError(problem: "\(names.tokenizerKey) does not match the SHA-256 in the run state (\(sha.prefix(16)))")
            }
            do { tokenizer = try HFTokenizer(json: Data(bytes)) } catch {
                throw RunFormatError(problem: "\(names.tokenizerKey): \(error)")
            }
        }
        let chatTemplate: ChatTemplate?
        do { chatTemplate = template.isEmpty ? nil : try ChatTemplate.resolve(template) } catch {
            throw RunFormatError(problem: "run state \(RunFormat.Field.template): \(error)")
        }
        let prompt = PromptFormat(tokenizer: tokenizer, template: chatTemplate, systemPrompt: system.isEmpty ? nil : system, eos: eos)
        let format = RunFormat(prompt: prompt, vocabSize: vocab)
        cached.withLock { $0 = (key, format) }
        return format
    }
}

extension RunFormatCache {
    /// `format`, for a role handling a message: nil (hand the message back, look again) both while nothing is published
    /// and while what is published cannot be used, which is logged; a run's format must never stop a role.
    public func usable(names: Names, redis: RedisClient, logger: Logger) async throws -> RunFormat? {
        do { return try await format(names: names, redis: redis) } catch let error as RunFormatError {
            logger.warning("run format unusable, message handed back: \(error)")
            return nil
        }
    }
}

/// The run's published format cannot be used.
public struct RunFormatError: Error, Sendable, CustomStringConvertible {
    public var problem: String
    public var description: String { problem }

    public init(problem: String) { self.problem = problem }
}
