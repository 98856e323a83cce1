import Foundation
import Store

/// Where a run is. The learner writes every status but `lost`, which readers derive: an active status whose learner
/// heartbeat has lapsed (a learner killed with -9 can write nothing).
public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case starting, running, paused, finished, stopped, failed
    case lost

    /// The learner is (or should be) working on it.
    public var isActive: Bool { self == .starting || self == .running || self == .paused }
    /// The run will not move again without a new start.
    public var isFinal: Bool { self == .finished || self == .stopped || self == .failed }
}

/// The run-state hash `tributary:RUN:state`, typed. Reading fills what is there; writing sets only the non-nil fields.
public struct RunState: Sendable, Equatable {
    public var status: RunStatus?
    public var step: Int?
    public var version: UInt64?
    /// The run file (TOML) the learner is running.
    public var config: String?
    /// Why the run failed (with `failed`).
    public var reason: String?
    public var startedAtMs: Int64?
    public var finishedAtMs: Int64?
    public var accuracyBefore: Double?
    public var accuracyAfter: Double?
    public var rewardMean: Double?
    /// Fields written with the run's format (RunFormat.Field) and any others.
    public var other: [String: String]

    public init(status: RunStatus? = nil, step: Int? = nil, version: UInt64? = nil, config: String? = nil, reason: String? = nil,
                startedAtMs: Int64? = nil, finishedAtMs: Int64? = nil, accuracyBefore: Double? = nil, accuracyAfter: Double? = nil,
                rewardMean: Double? = nil, other: [String: String] = [:]) {
        (self.status, self.step, self.version, self.config, self.reason) = (status, step, version, config, reason)
        (self.startedAtMs, self.finishedAtMs, self.accuracyBefore, self.accuracyAfter, self.rewardMean) = (startedAtMs, finishedAtMs, accuracyBefore, accuracyAfter, rewardMean)
        self.other = other
    }

    enum Field {
        static let status = "status", step = "step", version = "version", config = "config", reason = "reason"
        static let startedAt = "started_at_ms", finishedAt = "finished_at_ms", accuracyBefore = "accuracy_before"
        static let accuracyAfter = "accuracy_after", rewardMean = "reward_mean"
        static let all: Set<String> = [status, step, version, config, reason, startedAt, finishedAt, accuracyBefore, accuracyAfter, rewardMean]
    }

    public init(hash: [String: String]) {
        status = hash[Field.status].flatMap(RunStatus.init(rawValue:))
        step = hash[Field.step].flatMap { Int($0) }
        version = hash[Field.version].flatMap { UInt64($0) }
        config = hash[Field.config]
        reason = hash[Field.reason]
        startedAtMs = hash[Field.startedAt].flatMap { Int64($0) }
        finishedAtMs = hash[Field.finishedAt].flatMap { Int64($0) }
        accuracyBefore = hash[Field.accuracyBefore].flatMap { Double($0) }
        accuracyAfter = hash[Field.accuracyAfter].flatMap { Double($0) }
        rewardMean = hash[Field.rewardMean].flatMap { Double($0) }
        other = hash.filter { !Field.all.contains($0.key) }
    }

    /// The non-nil fields, as the hash stores them.
    public var hash: [String: String] {
        var fields = other
        fields[Field.status] = status?.rawValue
        fields[Field.step] = step.map { String($0) }
        fields[Field.version] = version.map { String($0) }
        fields[Field.config] = config
        fields[Field.reason] = reason
        fields[Field.startedAt] = startedAtMs.map { String($0) }
        fields[Field.finishedAt] = finishedAtMs.map { String($0) }
        fields[Field.accuracyBefore] = accuracyBefore.map { String($0) }
        fields[Field.accuracyAfter] = accuracyAfter.map { String($0) }
        fields[Field.rewardMean] = rewardMean.map { String(format: "%.4f", $0) }
        return fields
    }

    public static func read(_ redis: RedisClient, names: Names) async throws -> RunState {
        RunState(hash: try await redis.hgetall(names.stateKey).mapValues { String(decoding: $0, as: UTF8.self) })
    }

    /// The HSET of the non-nil fields, for a transaction; nil when all are nil.
    public func writeCommand(names: Names) -> [any RedisArgument]? {
        let fields = hash
        guard !fields.isEmpty else { return nil }
        return ["HSET", names.stateKey] + fields.sorted { $0.key < $1.key }.flatMap { [$0.key as any RedisArgument, $0.value] }
    }

    /// Sets the non-nil fields (HSET: the others keep their values).
    public func write(to redis: RedisClient, names: Names) async throws {
        let fields = hash
        guard !fields.isEmpty else { return }
        _ = try await redis.hset(names.stateKey, fields: fields.mapValues { $0 as any RedisArgument })
    }
}
