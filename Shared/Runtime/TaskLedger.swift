import Checkpoints
import Store
import Wire

/// The learner's record of every task it issued, whole (answer, tests, metadata), in `tributary:RUN:ledger`. A task on
/// the wire carries only what a rollout worker needs (prompt, sampling, group size); the reward scorer and the learner
/// take everything else from here, so nothing a worker echoes back can change what it is scored or trained on.
/// Rollout workers cannot read it (compose/redis/users.acl).
public struct TaskLedger: Sendable {
    public let key: String
    public let redis: RedisClient

    public init(names: Names, redis: RedisClient) {
        key = names.ledgerKey
        self.redis = redis
    }

    /// Records tasks before they are published.
    public func record(_ tasks: [RolloutTask]) async throws {
        guard !tasks.isEmpty else { return }
        var command: [any RedisArgument] = ["HSET", key]
        for task in tasks { command += [task.taskID, try task.encoded()] }
        _ = try await redis.command(command)
    }

    public enum Entry: Sendable, Equatable {
        /// Issued and not yet filled: the task as issued.
        case open(RolloutTask)
        /// Filled (trained on) or dropped and replaced: a late group for it (a redelivery after a crash) feeds nothing.
        /// The fingerprint of what a worker got stays, so a late group with another prompt, group size or sampling is
        /// still told from a copy.
        case closed(fingerprint: String?)
        /// Never issued by this run.
        case unknown
    }

    /// The task as issued, or whether it was closed or never issued.
    public func lookup(_ taskID: String) async throws -> Entry {
        guard let bytes = try await redis.hget(key, field: taskID) else { return .unknown }
        if bytes.isEmpty { return .closed(fingerprint: nil) }
        if bytes.starts(with: Self.closedPrefix) { return .closed(fingerprint: String(decoding: bytes.dropFirst(Self.closedPrefix.count), as: UTF8.self)) }
        // the learner wrote it (only the learner may): parsed as is, not checked as a message from the wire
        return .open(try RolloutTask.fromStored(bytes))
    }

    /// Tasks that can no longer be trained on (applied, or dropped and replaced) keep only a mark with their fingerprint,
    /// so a late copy is told from a forged id or a changed task.
    public func close(_ tasks: [RolloutTask]) async throws {
        guard !tasks.isEmpty else { return }
        var command: [any RedisArgument] = ["HSET", key]
        for task in tasks { command += [task.taskID, Self.closedPrefix + Array(try Self.fingerprint(task).utf8)] }
        _ = try await redis.command(command)
    }

    static let closedPrefix = Array("closed:".utf8)

    /// SHA-256 over what a worker must echo unchanged: prompt, group size and sampling settings.
    public static func fingerprint(_ task: RolloutTask) throws -> String { sha256Hex(try task.echoedBytes()) }

    /// What a rollout worker gets of a task: no answer, no verifier metadata.
    public static func forWorkers(_ task: RolloutTask) -> RolloutTask {
        var wire = task
        wire.answer = ""
        wire.metadata = [:]
        return wire
    }
}
