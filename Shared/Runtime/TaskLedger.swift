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

    /// The task as issued; nil when this run never issued it (or it was forgotten once trained).
    public func lookup(_ taskID: String) async throws -> RolloutTask? {
        guard let bytes = try await redis.hget(key, field: taskID) else { return nil }
        // the learner wrote it (only the learner may): parsed as is, not checked as a message from the wire
        return try RolloutTask.fromStored(bytes)
    }

    /// Tasks that can no longer be trained on (applied, or dropped and replaced) leave the ledger.
    public func forget(_ taskIDs: [String]) async throws {
        guard !taskIDs.isEmpty else { return }
        _ = try await redis.command(["HDEL", key] + taskIDs.map { $0 as any RedisArgument })
    }

    /// What a rollout worker gets of a task: no answer, no verifier metadata.
    public static func forWorkers(_ task: RolloutTask) -> RolloutTask {
        var wire = task
        wire.answer = ""
        wire.metadata = [:]
        return wire
    }
}
