import Foundation
import Store
import Synchronization

/// One learner per run: a lease in Redis (`tributary:RUN:learner:lease`, "TOKEN INSTANCE" with a TTL) and a fencing token
/// (`…:learner:fence`, incremented on every acquisition). The learner that holds the lease trains; another waits as a
/// hot standby and takes over when the lease lapses. Every write of the learner's state goes through `exec`, one Lua
/// script that runs the writes only while the lease still carries the writer's token, so a learner that was paused
/// (SIGSTOP, a VM freeze) past its lease and then resumed cannot write over its successor.
public final class LearnerLease: Sendable {
    public let key: String
    public let fenceKey: String
    public let instance: String
    public let ttlMs: Int
    private let redis: RedisClient
    private let held = Mutex<Int64?>(nil)

    public init(names: Names, instance: String, redis: RedisClient, ttl: Duration) {
        key = names.learnerLeaseKey
        fenceKey = names.learnerFenceKey
        self.instance = instance
        self.redis = redis
        ttlMs = max(1, Int(ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000))
    }

    /// The token this learner holds, nil before it acquired the lease.
    public var token: Int64? { held.withLock { $0 } }

    /// Takes the lease when nobody holds it; the new fencing token, or nil while another learner holds it.
    public func tryAcquire() async throws -> Int64? {
        let reply = try await redis.eval(Self.acquireScript, keys: [key, fenceKey], args: [instance, String(ttlMs)])
        guard let token = reply.int else { return nil }
        held.withLock { $0 = token }
        return token
    }

    /// Keeps the lease. False when it was lost: another learner took it (or took it and let it lapse), so this one must
    /// stop without writing anything more. A lease that lapsed while nobody else acquired it is taken back with the
    /// same token: no write of anyone else can have happened in between.
    public func renew() async throws -> Bool {
        guard let token else { return false }
        let reply = try await redis.eval(Self.renewScript, keys: [key, fenceKey], args: [String(token), instance, String(ttlMs)])
        return reply.int == 1
    }

    /// Lets the lease go at once (a clean exit), so a standby takes over without waiting for the TTL.
    public func release() async {
        guard let token else { return }
        _ = try? await redis.eval(Self.releaseScript, keys: [key], args: [String(token)])
        held.withLock { $0 = nil }
    }

    /// Who holds the lease now: token and instance.
    public static func holder(names: Names, redis: RedisClient) async throws -> (token: Int64, instance: String)? {
        guard let value = try await redis.get(names.learnerLeaseKey) else { return nil }
        let parts = String(decoding: value, as: UTF8.self).split(separator: " ", maxSplits: 1)
        guard let first = parts.first, let token = Int64(first) else { return nil }
        return (token, parts.count > 1 ? String(parts[1]) : "")
    }

    /// Runs `commands` atomically, only while this learner holds the lease. Throws `LeaseLost` when it does not (nothing
    /// was written).
    @discardableResult
    public func exec(_ commands: [[any RedisArgument]]) async throws -> Int {
        guard !commands.isEmpty else { return 0 }
        guard let token else { throw LeaseLost(key: key, detail: "this learner never acquired the lease") }
        var args: [any RedisArgument] = [String(token)]
        for command in commands {
            args.append(String(command.count))
            args += command
        }
        let reply: RedisReply
        do {
            reply = try await redis.eval(Self.execScript, keys: [key], args: args)
        } catch {
            if case let .server(message, _) = error, message.contains("FENCED") { throw LeaseLost(key: key, detail: message) }
            throw error
        }
        return Int(reply.int ?? 0)
    }

    static let acquireScript = RedisScript("""
        if redis.call('EXISTS', KEYS[1]) == 1 then return false end
        local token = redis.call('INCR', KEYS[2])
        redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
        return token
        """)

    static let renewScript = RedisScript("""
        local held = redis.call('GET', KEYS[1])
        if held then
            if string.match(held, '^%d+') ~= ARGV[1] then return 0 end
            redis.call('PEXPIRE', KEYS[1], ARGV[3])
            return 1
        end
        if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
        return 1
        """)

    static let releaseScript = RedisScript("""
        local held = redis.call('GET', KEYS[1])
        if held and string.match(held, '^%d+') == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return 0
        """)

    /// ARGV: the token, then each command as its argument count followed by its arguments.
    static let execScript = RedisScript("""
        local held = redis.call('GET', KEYS[1])
        if not held then return redis.error_reply('FENCED: the lease lapsed') end
        if string.match(held, '^%d+') ~= ARGV[1] then return redis.error_reply('FENCED: the lease is held by ' .. held) end
        local i = 2
        local n = 0
        while i <= #ARGV do
            local count = tonumber(ARGV[i])
            redis.call(unpack(ARGV, i + 1, i + count))
            i = i + count + 1
            n = n + 1
        end
        return n
        """)
}

/// This learner no longer holds the run's lease: another learner took over, and nothing more may be written.
public struct LeaseLost: Error, CustomStringConvertible {
    public var key: String
    public var detail: String
    public var description: String { "lost the learner lease \(key): \(detail)" }
    public init(key: String, detail: String) { (self.key, self.detail) = (key, detail) }
}
