import Foundation
import SwiftProtobuf

// Domain names for the generated messages (Shared/Wire/Protos/tributary/v1).
public typealias Envelope = Tributary_V1_Envelope
public typealias Sender = Tributary_V1_Sender
public typealias RolloutTask = Tributary_V1_RolloutTask
public typealias SamplingSettings = Tributary_V1_SamplingSettings
public typealias Completion = Tributary_V1_Completion
public typealias Timings = Tributary_V1_Timings
public typealias RolloutGroup = Tributary_V1_RolloutGroup
public typealias ScoredCompletion = Tributary_V1_ScoredCompletion
public typealias ScoredGroupMessage = Tributary_V1_ScoredGroup
public typealias PolicySaved = Tributary_V1_PolicySaved
public typealias CheckpointAnnouncement = Tributary_V1_CheckpointAnnouncement
public typealias CheckpointManifest = Tributary_V1_CheckpointManifest
public typealias ShardInfo = Tributary_V1_ShardInfo
public typealias ControlCommand = Tributary_V1_ControlCommand

public enum WireSchema {
    /// Receivers refuse envelopes of another major schema version.
    public static let version: UInt32 = 1
}

/// A message that could not be accepted, named by id and what was wrong.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case undecodable(type: String, messageID: String, reason: String)
    case missingEnvelope(type: String, messageID: String)
    case unsupportedSchema(messageID: String, found: UInt32, supported: UInt32)
    case invalidField(type: String, messageID: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .undecodable(type, id, reason): "message \(id) is not a valid \(type): \(reason)"
        case let .missingEnvelope(type, id): "message \(id) (\(type)) has no envelope"
        case let .unsupportedSchema(id, found, supported): "message \(id) has schema version \(found); this build reads \(supported)"
        case let .invalidField(type, id, field, reason): "message \(id) (\(type)): field \(field) \(reason)"
        }
    }

    /// One line for the dead-letter header.
    public var reason: String { description }

    /// What kind of refusal, for counting per worker: the field without indices ("completions.logprobs"), or the failure.
    public var refusalKind: String {
        switch self {
        case .undecodable: "undecodable"
        case .missingEnvelope: "envelope"
        case .unsupportedSchema: "schema"
        case let .invalidField(_, _, field, _):
            // "completions[3].logprobs" -> "completions.logprobs"
            String(field.split(separator: "[", omittingEmptySubsequences: false).enumerated()
                .map { $0.offset == 0 ? $0.element : $0.element.drop { $0 != "]" }.dropFirst() }.joined())
        }
    }
}

/// Messages that carry an envelope.
public protocol EnvelopedMessage: SwiftProtobuf.Message {
    var envelope: Envelope { get set }
    var hasEnvelope: Bool { get }
}

extension RolloutTask: EnvelopedMessage {}
extension RolloutGroup: EnvelopedMessage {}
extension ScoredGroupMessage: EnvelopedMessage {}
extension PolicySaved: EnvelopedMessage {}
extension CheckpointAnnouncement: EnvelopedMessage {}
extension ControlCommand: EnvelopedMessage {}

extension Envelope {
    public init(runID: String, role: String, instance: String, messageID: String = UUID().uuidString, now: Date = Date()) {
        self.init()
        schemaVersion = WireSchema.version
        self.runID = runID
        self.messageID = messageID
        sender = Sender.with {
            $0.role = role
            $0.instance = instance
        }
        sentAtUnixMs = WallClock.milliseconds(now)
    }
}

extension EnvelopedMessage {
    /// Decodes and checks the envelope: present, known schema, with a message id.
    public static func decode(_ bytes: [UInt8], deliveredID: String? = nil) throws -> Self {
        let id = deliveredID ?? "?"
        let message: Self
        do {
            message = try Self(serializedBytes: bytes)
        } catch {
            throw WireError.undecodable(type: Self.protoMessageName, messageID: id, reason: "\(error)")
        }
        guard message.hasEnvelope else { throw WireError.missingEnvelope(type: Self.protoMessageName, messageID: id) }
        let envelope = message.envelope
        let messageID = envelope.messageID.isEmpty ? id : envelope.messageID
        guard envelope.schemaVersion == WireSchema.version else {
            throw WireError.unsupportedSchema(messageID: messageID, found: envelope.schemaVersion, supported: WireSchema.version)
        }
        guard !envelope.messageID.isEmpty else {
            throw WireError.invalidField(type: Self.protoMessageName, messageID: id, field: "envelope.message_id", reason: "is empty")
        }
        return message
    }

    public func encoded() throws -> [UInt8] { try serializedBytes() }

    /// Parses bytes a trusted role stored (the learner's task ledger): no envelope checks, as they never crossed the wire.
    public static func fromStored(_ bytes: [UInt8]) throws -> Self { try Self(serializedBytes: bytes) }

    /// The envelope's message id, for logs and errors.
    public var messageID: String { envelope.messageID }
}

/// Sizes a consumer refuses before decoding (RabbitMQ's frames stay far below its 16 MiB limit, with the scorer's additions).
public enum WireLimits {
    public static let maxGroupBytes = 8 << 20

    /// The largest inference proof of a completion of `tokens` tokens: 2 + 2·128 bytes per chunk of 32 tokens (Model's
    /// InferenceProof), with a small header's slack.
    public static func maxProofBytes(tokens: Int) -> Int { 16 + (max(tokens, 0) + 31) / 32 * 258 }
}

/// The milliseconds since 1970 that every timestamp Tributary writes uses.
public enum WallClock {
    public static func nowMs() -> Int64 { milliseconds(Date()) }
    public static func milliseconds(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970 * 1000) }
}
