import Foundation
import Signing
import Store
import Wire

/// A rollout worker's Ed25519 key pair: made on first start, kept in its state folder, signing every group it publishes.
/// A worker is its key: registration, counters and bans attach to the public key, never to a self-declared name.
public struct WorkerIdentity: Sendable {
    public let key: SigningKey
    public let file: String

    public var publicKey: VerifyingKey { key.publicKey }

    public init(key: SigningKey, file: String) {
        self.key = key
        self.file = file
    }

    /// Reads `directory/worker.key`, or makes a key there (mode 0600) when there is none. Two processes starting at once
    /// in the same folder end up with the same key: the file is linked into place, never overwritten.
    public static func loadOrCreate(directory: String) throws -> WorkerIdentity {
        let file = (directory as NSString).appendingPathComponent("worker.key")
        if FileManager.default.fileExists(atPath: file) { return WorkerIdentity(key: try SigningKey(contentsOf: file), file: file) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw SigningError("cannot create the worker's state folder \(directory): \(error.localizedDescription)")
        }
        let fresh = try SigningKey.generate()
        // created 0600 and exclusively (never readable by others, not even for a moment); a unique name, since pids
        // repeat across containers sharing a volume
        let temporary = file + ".\(getpid()).\(UInt64.random(in: 0...UInt64.max)).tmp"
        let descriptor = open(temporary, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard descriptor >= 0 else { throw SigningError("cannot create the worker key \(temporary): \(String(cString: strerror(errno)))") }
        defer { unlink(temporary) }
        let text = Array((fresh.hex + "\n").utf8)
        let written = text.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == text.count, synced == 0 else { throw SigningError("cannot write the worker key \(temporary)") }
        // link fails when another process made the key first: then that key is the one
        if link(temporary, file) != 0, errno != EEXIST {
            throw SigningError("cannot store the worker key at \(file): \(String(cString: strerror(errno)))")
        }
        return WorkerIdentity(key: try SigningKey(contentsOf: file), file: file)
    }

    /// The folder a worker keeps its key in when `rollout.state_dir` is empty: $XDG_STATE_HOME/tributary, else ~/.local/state/tributary.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let state = environment["XDG_STATE_HOME"], !state.isEmpty { return (state as NSString).appendingPathComponent("tributary") }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".local/state/tributary")
    }

    /// Puts the worker's key into the group and signs it (the last change before publishing).
    public func sign(_ group: inout RolloutGroup) throws {
        group.workerKey = Data(publicKey.bytes)
        group.signature = Data()
        group.signature = Data(key.sign(try group.signingPayload()))
    }
}

extension RolloutGroup {
    /// The key that signed this group, or why it cannot be believed. Says nothing about whether the key is known or banned.
    public func verifiedSigner() throws -> VerifyingKey {
        let bad = { (field: String, reason: String) in
            WireError.invalidField(type: "RolloutGroup", messageID: messageID, field: field, reason: reason)
        }
        guard let key = try? VerifyingKey(bytes: Array(workerKey)) else { throw bad("worker_key", "is \(workerKey.count) bytes, not an Ed25519 public key") }
        guard !signature.isEmpty else { throw bad("signature", "is missing: every group is signed by its worker") }
        guard key.isValid(signature: Array(signature), of: try signingPayload()) else {
            throw bad("signature", "does not verify under worker key \(key.hex.prefix(16))…")
        }
        return key
    }
}

/// The run's known workers in Redis: who registered, what each loaded, how their groups fared, who is banned.
/// Workers may only add a registration or a load (their ACL allows HSETNX there and nothing else); counters and bans
/// are written by the trusted side.
public struct WorkerRegistry: Sendable {
    public let names: Names
    public let redis: RedisClient

    public init(names: Names, redis: RedisClient) {
        self.names = names
        self.redis = redis
    }

    public struct Registration: Codable, Sendable, Equatable {
        public var instance: String
        public var host: String
        public var registeredAtMs: Int64
    }

    /// Registers a key (first registration wins; a later one under the same key changes nothing).
    public func register(_ key: VerifyingKey, instance: String) async throws {
        let registration = Registration(instance: instance, host: ProcessInfo.processInfo.hostName, registeredAtMs: WallClock.nowMs())
        _ = try await redis.command(["HSETNX", names.workersKey, key.hex, Array(try JSONEncoder().encode(registration))])
    }

    /// Whether a key registered (HEXISTS: a registration's value, which its worker wrote, is never read on this path).
    public func isRegistered(_ keyHex: String) async throws -> Bool {
        try await redis.command(["HEXISTS", names.workersKey, keyHex]).int == 1
    }

    public func registration(of keyHex: String) async throws -> Registration? {
        guard let bytes = try await redis.hget(names.workersKey, field: keyHex) else { return nil }
        return try? JSONDecoder().decode(Registration.self, from: Data(bytes))
    }

    /// A worker's own record that it loaded and verified a version (the version it then claims in its groups).
    public func recordLoad(_ key: VerifyingKey, version: UInt64, sha256: String) async throws {
        _ = try await redis.command(loadRecordCommand(key, version: version, sha256: sha256))
    }

    /// The command `recordLoad` sends, for a pipeline.
    public func loadRecordCommand(_ key: VerifyingKey, version: UInt64, sha256: String) -> [any RedisArgument] {
        ["HSETNX", names.workerLoadsKey, "\(key.hex):\(version)", sha256]
    }

    public func hasLoaded(_ keyHex: String, version: UInt64) async throws -> Bool {
        try await redis.command(["HEXISTS", names.workerLoadsKey, "\(keyHex):\(version)"]).int == 1
    }

    public func banReason(of keyHex: String) async throws -> String? {
        try await redis.hget(names.workerBansKey, field: keyHex).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The key's ban reason (nil when not banned) and its failed validations so far, in one round trip.
    public func validationStanding(of keyHex: String) async throws -> (banReason: String?, failures: Int) {
        let replies = try await redis.pipeline([["HGET", names.workerBansKey, keyHex], ["HGET", names.workerStatsKey, "\(keyHex).validation_failed"]])
        for reply in replies { if case let .error(message) = reply { throw RedisError.server(message: message, command: "HGET") } }
        return (replies[0].bytes.map { String(decoding: $0, as: UTF8.self) }, replies[1].string.flatMap { Int($0) } ?? 0)
    }

    public func bans() async throws -> [String: String] {
        try await redis.hgetall(names.workerBansKey).mapValues { String(decoding: $0, as: UTF8.self) }
    }

    public func ban(_ keyHex: String, reason: String) async throws {
        _ = try await redis.hset(names.workerBansKey, fields: [keyHex: reason.isEmpty ? "banned" : reason])
    }

    public func unban(_ keyHex: String) async throws {
        _ = try await redis.command(["HDEL", names.workerBansKey, keyHex])
    }

    /// Counts one outcome for a key: "accepted" (scored), "trained", or "refused.REASON" (also counted under "refused",
    /// with the last refusal's text kept).
    public func count(_ keyHex: String, _ outcome: String, detail: String? = nil) async throws {
        var commands: [[any RedisArgument]] = [["HINCRBY", names.workerStatsKey, "\(keyHex).\(outcome)", "1"]]
        if outcome.hasPrefix("refused.") {
            commands.append(["HINCRBY", names.workerStatsKey, "\(keyHex).refused", "1"])
            if let detail { commands.append(["HSET", names.workerStatsKey, "\(keyHex).last_refusal", detail]) }
        }
        for reply in try await redis.pipeline(commands) { if case let .error(message) = reply { throw RedisError.server(message: message, command: "HINCRBY") } }
    }

    /// Counts "trained" for each key once per group (the learner, after a step is durable).
    public func countTrained(_ keyHexes: [String]) async throws {
        let perKey = Dictionary(keyHexes.map { ($0, 1) }, uniquingKeysWith: +)
        guard !perKey.isEmpty else { return }
        _ = try await redis.pipeline(perKey.map { ["HINCRBY", names.workerStatsKey, "\($0.key).trained", String($0.value)] })
    }

    /// One line of `tributary workers list`.
    public struct Summary: Sendable {
        public var key: String
        public var registration: Registration?
        public var counts: [String: Int]
        public var lastRefusal: String?
        public var banned: String?
        /// Failed validations at or above the run's `validation.probation_failures` (filled by `summaries(probationFailures:)`).
        public var onProbation = false

        public var refusals: [(reason: String, count: Int)] {
            counts.compactMap { name, value in name.hasPrefix("refused.") ? (String(name.dropFirst("refused.".count)), value) : nil }
                .sorted { $0.count > $1.count || ($0.count == $1.count && $0.reason < $1.reason) }
        }
    }

    /// Every registered, counted or banned key.
    public func summaries(probationFailures: Int = 1) async throws -> [Summary] {
        let registrations = try await redis.hgetall(names.workersKey)
        let stats = try await redis.hgetall(names.workerStatsKey)
        let bans = try await bans()
        var byKey: [String: Summary] = [:]
        func entry(_ key: String) -> Summary { byKey[key] ?? Summary(key: key, registration: nil, counts: [:], lastRefusal: nil, banned: nil) }
        for (key, bytes) in registrations {
            var summary = entry(key)
            summary.registration = try? JSONDecoder().decode(Registration.self, from: Data(bytes))
            byKey[key] = summary
        }
        for (field, bytes) in stats {
            guard let dot = field.firstIndex(of: ".") else { continue }
            let key = String(field[..<dot]), name = String(field[field.index(after: dot)...])
            var summary = entry(key)
            let text = String(decoding: bytes, as: UTF8.self)
            if name == "last_refusal" { summary.lastRefusal = text } else if let value = Int(text) { summary.counts[name] = value }
            byKey[key] = summary
        }
        for (key, reason) in bans {
            var summary = entry(key)
            summary.banned = reason
            byKey[key] = summary
        }
        for (key, summary) in byKey where (summary.counts["validation_failed"] ?? 0) >= probationFailures && summary.banned == nil {
            byKey[key]?.onProbation = true
        }
        return byKey.values.sorted { $0.key < $1.key }
    }
}
