import Checkpoints
import Store
import Wire

/// The learner's record of every task it issued, whole (answer, tests, metadata), in `tributary:RUN:ledger`. A task on
/// the wire carries only what a rollout worker needs (prompt, sampling, group size); the reward scorer and the learner
/// take everything else from here, so nothing a worker echoes back can change what it is scored or trained on.
/// Rollout workers cannot read it (compose/redis/users.acl).
///
/// Each task is open (issued, with a deadline in `…:ledger:deadlines`) until it closes exactly once: trained, dropped
/// and replaced by a new task, or expired and reissued. The learner trains only groups of open tasks, so a task is
/// trained at most once whatever copies of its group arrive. Closed marks are pruned some steps later (`prune`): the
/// ledger holds the open tasks and the marks of the last `keep` steps.
///
/// Only the learner writes it; its writes go through `…Commands` functions so that they run in the learner's fenced
/// transactions (LearnerLease).
public struct TaskLedger: Sendable {
    public let key: String
    /// Open task id → deadline (Unix ms).
    public let deadlinesKey: String
    /// Closed task id → step at which it closed (for pruning).
    public let closedKey: String
    public let redis: RedisClient

    public init(names: Names, redis: RedisClient) {
        key = names.ledgerKey
        deadlinesKey = names.ledgerKey + ":deadlines"
        closedKey = names.ledgerKey + ":closed"
        self.redis = redis
    }

    /// Why a task closed.
    public enum Closing: String, Sendable, CaseIterable {
        /// Its group fed a step.
        case trained
        /// Its group was dropped (stale, no signal, banned worker) and a new task took its place.
        case replaced
        /// Not filled before its deadline (or dead-lettered, lost with a worker): reissued with a new seed.
        case expired
        /// Still open when the run ended: no step needed it any more.
        case unused
    }

    public enum Entry: Sendable, Equatable {
        /// Issued and not yet filled: the task as issued.
        case open(RolloutTask)
        /// Trained on, replaced or expired: a late group for it feeds nothing. The fingerprint of what a worker got stays,
        /// so a late group with another prompt, group size or sampling is still told from a copy.
        case closed(Closing?, fingerprint: String?)
        /// Never issued by this run (or closed and pruned long ago).
        case unknown
    }

    // MARK: Writes (commands for the learner's fenced transaction)

    /// Records tasks, each with its deadline, before they are published.
    public func recordCommands(_ tasks: [(task: RolloutTask, deadlineMs: Int64)]) throws -> [[any RedisArgument]] {
        guard !tasks.isEmpty else { return [] }
        var hset: [any RedisArgument] = ["HSET", key]
        var zadd: [any RedisArgument] = ["ZADD", deadlinesKey]
        for (task, deadline) in tasks {
            hset += [task.taskID, try task.encoded()]
            zadd += [String(deadline), task.taskID]
        }
        return [hset, zadd]
    }

    /// Closes tasks: only a mark with the reason and the fingerprint stays, so a late copy is told from a forged id or a
    /// changed task.
    public func closeCommands(_ tasks: [RolloutTask], _ closing: Closing, step: Int) throws -> [[any RedisArgument]] {
        guard !tasks.isEmpty else { return [] }
        var hset: [any RedisArgument] = ["HSET", key]
        var zrem: [any RedisArgument] = ["ZREM", deadlinesKey]
        var zadd: [any RedisArgument] = ["ZADD", closedKey]
        for task in tasks {
            hset += [task.taskID, Self.closedMark(closing, fingerprint: try Self.fingerprint(task))]
            zrem.append(task.taskID)
            zadd += [String(step), task.taskID]
        }
        return [hset, zrem, zadd]
    }

    /// Marks closed at steps below `step` go (a group for them is refused as unknown instead of late). Maintenance, not
    /// fenced: it only drops marks no step can need.
    public func prune(below step: Int) async throws {
        _ = try await redis.eval(Self.pruneScript, keys: [key, closedKey], args: [String(step - 1)])
    }

    static let pruneScript = RedisScript("""
        local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 5000)
        if #ids == 0 then return 0 end
        for i = 1, #ids, 500 do
            local last = math.min(i + 499, #ids)
            redis.call('HDEL', KEYS[1], unpack(ids, i, last))
            redis.call('ZREM', KEYS[2], unpack(ids, i, last))
        end
        return #ids
        """)

    /// Pushes every open deadline later by `byMs` (the learner was not running: paused, stopped by a signal, restarted).
    public func extendDeadlines(byMs: Int64) async throws {
        guard byMs > 0 else { return }
        _ = try await redis.eval(Self.extendScript, keys: [deadlinesKey], args: [String(byMs)])
    }

    static let extendScript = RedisScript("""
        local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
        for i = 1, #entries, 2 do
            redis.call('ZADD', KEYS[1], tonumber(entries[i + 1]) + tonumber(ARGV[1]), entries[i])
        end
        return #entries / 2
        """)

    /// The same writes, unfenced: for tools and tests that stand in for a learner.
    public func record(_ tasks: [RolloutTask], deadlineMs: Int64 = .max / 2) async throws {
        for command in try recordCommands(tasks.map { ($0, deadlineMs) }) { _ = try await redis.command(command) }
    }

    public func close(_ tasks: [RolloutTask], _ closing: Closing = .trained, step: Int = 0) async throws {
        for command in try closeCommands(tasks, closing, step: step) { _ = try await redis.command(command) }
    }

    // MARK: Reads

    /// The task as issued, or how it closed, or that it was never issued.
    public func lookup(_ taskID: String) async throws -> Entry {
        guard let bytes = try await redis.hget(key, field: taskID) else { return .unknown }
        if bytes.isEmpty { return .closed(nil, fingerprint: nil) }
        if bytes.starts(with: Self.closedPrefix) { return Self.parseClosed(bytes) }
        // the learner wrote it (only the learner may): parsed as is, not checked as a message from the wire
        return .open(try RolloutTask.fromStored(bytes))
    }

    /// Every open task's id.
    public func openTaskIDs() async throws -> [String] {
        (try await redis.command(["ZRANGE", deadlinesKey, "0", "-1"]).array ?? []).compactMap(\.string)
    }

    /// Open tasks whose deadline passed, oldest first.
    public func overdue(nowMs: Int64, limit: Int = 1000) async throws -> [String] {
        let reply = try await redis.command(["ZRANGEBYSCORE", deadlinesKey, "-inf", String(nowMs), "LIMIT", "0", String(limit)])
        return (reply.array ?? []).compactMap(\.string)
    }

    /// What became of every task the ledger still holds (pruned marks are gone): the chaos table's account of lost work.
    public struct Audit: Sendable, Equatable, CustomStringConvertible {
        public var open = 0, trained = 0, replaced = 0, expired = 0, unused = 0
        /// Open past its deadline by more than the grace given to `audit`: work the learner should have reissued.
        public var overdue = 0
        public var overdueIDs: [String] = []
        public var description: String {
            "open \(open) (overdue \(overdue)), trained \(trained), replaced \(replaced), expired \(expired), unused at the end \(unused)"
        }
    }

    public func audit(nowMs: Int64, graceMs: Int64 = 0) async throws -> Audit {
        var audit = Audit()
        let entries = try await redis.hgetall(key)
        let late = Set(try await overdue(nowMs: nowMs - graceMs, limit: 1_000_000))
        for (id, bytes) in entries {
            guard bytes.starts(with: Self.closedPrefix) else {
                audit.open += 1
                if late.contains(id) { audit.overdue += 1; audit.overdueIDs.append(id) }
                continue
            }
            guard case let .closed(closing, _) = Self.parseClosed(bytes) else { continue }
            switch closing {
            case .trained: audit.trained += 1
            case .replaced: audit.replaced += 1
            case .expired, nil: audit.expired += 1
            case .unused: audit.unused += 1
            }
        }
        audit.overdueIDs.sort()
        return audit
    }

    // MARK: Format

    static let closedPrefix = Array("closed:".utf8)

    /// `closed:REASON:FINGERPRINT` (a mark from before reasons were kept is `closed:FINGERPRINT`).
    static func closedMark(_ closing: Closing, fingerprint: String) -> [UInt8] {
        closedPrefix + Array("\(closing.rawValue):\(fingerprint)".utf8)
    }

    static func parseClosed(_ bytes: [UInt8]) -> Entry {
        let rest = String(decoding: bytes.dropFirst(closedPrefix.count), as: UTF8.self)
        let parts = rest.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 2, let closing = Closing(rawValue: String(parts[0])) { return .closed(closing, fingerprint: String(parts[1])) }
        return .closed(nil, fingerprint: rest.isEmpty ? nil : rest)
    }

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
