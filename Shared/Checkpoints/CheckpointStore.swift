import Compression
import Foundation
import Signing
import Store
import Synchronization
import Wire

public enum CheckpointStoreError: Error, Sendable, CustomStringConvertible {
    case missing(key: String)
    case shardHashMismatch(version: UInt64, shard: Int, expected: String, found: String)
    case fileHashMismatch(version: UInt64, expected: String, found: String)
    case sizeMismatch(version: UInt64, shard: Int, expected: UInt64, found: Int)
    case badManifest(key: String, reason: String)
    case unsigned(version: UInt64)
    case badSignature(version: UInt64)
    case undecodableShard(version: UInt64, shard: Int, reason: String)

    public var description: String {
        switch self {
        case let .missing(key): "checkpoint key \(key) is missing"
        case let .shardHashMismatch(version, shard, expected, found): "version \(version) shard \(shard): SHA-256 \(found) does not match the manifest's \(expected)"
        case let .fileHashMismatch(version, expected, found): "version \(version): file SHA-256 \(found) does not match the manifest's \(expected)"
        case let .sizeMismatch(version, shard, expected, found): "version \(version) shard \(shard): \(found) bytes, manifest says \(expected)"
        case let .badManifest(key, reason): "manifest \(key) is unreadable: \(reason)"
        case let .unsigned(version): "version \(version): the manifest carries no signature, and this reader requires one"
        case let .badSignature(version): "version \(version): the manifest's signature does not verify with the configured public key"
        case let .undecodableShard(version, shard, reason): "version \(version) shard \(shard) does not decompress within the manifest's size: \(reason)"
        }
    }
}

/// Checkpoints in Redis: a protobuf manifest plus zstd-compressed shards, each with the SHA-256 of its raw bytes.
/// Compressing, decompressing and hashing a whole checkpoint runs on the store's codec queue, off the cooperative pool.
public struct CheckpointStore: Sendable {
    public let keys: CheckpointKeys
    public let redis: RedisClient
    let codec = CheckpointCodec()
    /// The broadcaster's key: manifests it writes are signed.
    public let signer: SigningKey?
    /// A reader's trust anchor: with it, a manifest that is unsigned or badly signed is refused.
    public let verifier: VerifyingKey?
    /// A checkpoint (or a staged policy) is never larger than this when decompressed.
    public static let maxCheckpointBytes = 2 << 30

    public init(keys: CheckpointKeys, redis: RedisClient, signer: SigningKey? = nil, verifier: VerifyingKey? = nil) {
        self.keys = keys
        self.redis = redis
        self.signer = signer
        self.verifier = verifier
    }

    /// Learner side: the policy's safetensors bytes, compressed, under the staging key; returns (key, sha256).
    public func stage(version: UInt64, safetensors: [UInt8]) async throws -> (key: String, sha256: String) {
        let (compressed, sha256) = try await codec.run { (try Zstd.compress(safetensors, level: 1), sha256Hex(safetensors)) }
        return try await stage(version: version, compressed: compressed, sha256: sha256)
    }

    /// The same, for bytes already compressed (zstd) whose raw SHA-256 is known.
    public func stage(version: UInt64, compressed: [UInt8], sha256: String) async throws -> (key: String, sha256: String) {
        let key = keys.staging(version: version)
        _ = try await redis.command(["SET", key, compressed])
        return (key, sha256)
    }

    public func readStaged(key: String, expectedSHA256: String, version: UInt64) async throws -> [UInt8] {
        guard let compressed = try await redis.get(key) else { throw CheckpointStoreError.missing(key: key) }
        return try await codec.run {
            let bytes = try Zstd.decompress(compressed, maxOutputSize: Self.maxCheckpointBytes)
            let found = sha256Hex(bytes)
            guard found == expectedSHA256 else { throw CheckpointStoreError.fileHashMismatch(version: version, expected: expectedSHA256, found: found) }
            return bytes
        }
    }

    /// Broadcaster side: shard, compress, hash and write; the manifest goes last, so a reader never sees a partial version.
    /// `beforeManifest` runs once the shards are written (the fault table's crash point).
    public func write(version: UInt64, safetensors: [UInt8], shardBytes: Int, beforeManifest: () -> Void = {}) async throws -> CheckpointManifest {
        let keys = keys
        let (manifest, shards) = try await codec.run { try Self.encode(safetensors, version: version, shardBytes: shardBytes, keys: keys) }
        let commands: [[any RedisArgument]] = zip(manifest.shards, shards).map { info, compressed in ["SET", info.key, compressed] }
        for reply in try await redis.pipeline(commands) {
            if case let .error(message) = reply { throw RedisError.server(message: message, command: "SET shard") }
        }
        beforeManifest()
        let manifestBytes: [UInt8] = try manifest.serializedBytes()
        // the signature first: a reader that finds the manifest finds its signature
        if let signer { _ = try await redis.command(["SET", keys.manifestSignature(version: version), signer.sign(manifestBytes)]) }
        _ = try await redis.command(["SET", keys.manifest(version: version), manifestBytes])
        return manifest
    }

    /// The manifest of `safetensors` cut into shards of `shardBytes`, and each shard compressed.
    static func encode(_ safetensors: [UInt8], version: UInt64, shardBytes: Int, keys: CheckpointKeys) throws -> (CheckpointManifest, [[UInt8]]) {
        var manifest = CheckpointManifest()
        manifest.runID = keys.run
        manifest.version = version
        manifest.totalBytes = UInt64(safetensors.count)
        manifest.sha256 = sha256Hex(safetensors)
        manifest.shardBytes = UInt64(shardBytes)
        manifest.compression = "zstd"
        manifest.createdAtUnixMs = WallClock.nowMs()
        var shards: [[UInt8]] = []
        for (index, start) in stride(from: 0, to: safetensors.count, by: shardBytes).enumerated() {
            let raw = Array(safetensors[start..<min(start + shardBytes, safetensors.count)])
            let compressed = try Zstd.compress(raw, level: 1)
            manifest.shards.append(ShardInfo.with {
                $0.index = UInt32(index)
                $0.key = keys.shard(version: version, index: index)
                $0.rawBytes = UInt64(raw.count)
                $0.compressedBytes = UInt64(compressed.count)
                $0.sha256 = sha256Hex(raw)
            })
            shards.append(compressed)
        }
        return (manifest, shards)
    }

    /// The manifest, its signature checked when this store has a verifier, and its claims bounded before anything is
    /// fetched or allocated: this run, this version, at most `maxCheckpointBytes`, shards that add up.
    public func manifest(version: UInt64) async throws -> CheckpointManifest {
        let key = keys.manifest(version: version)
        let replies = try await redis.pipeline([["GET", key], ["GET", keys.manifestSignature(version: version)]])
        guard let bytes = replies.first?.bytes else { throw CheckpointStoreError.missing(key: key) }
        if let verifier {
            guard let signature = replies.last?.bytes else { throw CheckpointStoreError.unsigned(version: version) }
            guard verifier.isValid(signature: signature, of: bytes) else { throw CheckpointStoreError.badSignature(version: version) }
        }
        let manifest: CheckpointManifest
        do { manifest = try CheckpointManifest(serializedBytes: bytes) } catch {
            throw CheckpointStoreError.badManifest(key: key, reason: "\(error)")
        }
        func bad(_ reason: String) -> CheckpointStoreError { .badManifest(key: key, reason: reason) }
        guard manifest.runID == keys.run else { throw bad("it is for run '\(manifest.runID)', not '\(keys.run)'") }
        guard manifest.version == version else { throw bad("it is for version \(manifest.version)") }
        guard manifest.totalBytes <= UInt64(Self.maxCheckpointBytes) else { throw bad("total_bytes \(manifest.totalBytes) is over \(Self.maxCheckpointBytes)") }
        guard manifest.shards.count <= 1 << 16, manifest.shards.reduce(UInt64(0), { $0 &+ $1.rawBytes }) == manifest.totalBytes,
              manifest.shards.allSatisfy({ $0.rawBytes <= manifest.totalBytes }) else {
            throw bad("its \(manifest.shards.count) shards do not add up to total_bytes \(manifest.totalBytes)")
        }
        guard manifest.shards.enumerated().allSatisfy({ $1.index == UInt32($0) && $1.key == keys.shard(version: version, index: $0) }) else {
            throw bad("its shards are not this version's shards in order")
        }
        return manifest
    }

    /// Reads every shard in one pipeline and verifies each against the manifest on the codec queue as soon as its reply
    /// is in, while later shards are still on the wire; then the whole file.
    public func read(version: UInt64) async throws -> (bytes: [UInt8], manifest: CheckpointManifest) {
        let manifest = try await manifest(version: version)
        let shards = manifest.shards
        let verified = VerifiedShards(count: shards.count)
        let codec = self.codec
        try await redis.run { connection throws(RedisError) in
            try connection.pipeline(shards.map { ["GET", $0.key] }) { index, reply in
                codec.submit { verified.set(index, Result { try Self.verify(reply, shard: shards[index], version: version) }) }
            }
        }
        // the codec queue is serial: this runs after every shard's check
        let bytes = try await codec.run {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(manifest.totalBytes))
            for result in verified.all() { bytes += try result.get() }
            let whole = sha256Hex(bytes)
            guard whole == manifest.sha256 else { throw CheckpointStoreError.fileHashMismatch(version: version, expected: manifest.sha256, found: whole) }
            return bytes
        }
        return (bytes, manifest)
    }

    /// One shard's raw bytes from its reply, checked against the manifest: present, decompressing within its size,
    /// of its size and its SHA-256.
    static func verify(_ reply: RedisReply, shard: ShardInfo, version: UInt64) throws -> [UInt8] {
        guard let compressed = reply.bytes else { throw CheckpointStoreError.missing(key: shard.key) }
        let raw: [UInt8]
        do {
            raw = try Zstd.decompress(compressed, maxOutputSize: Int(shard.rawBytes))
        } catch {
            // a bomb or garbage: a refused checkpoint like any other that does not verify
            throw CheckpointStoreError.undecodableShard(version: version, shard: Int(shard.index), reason: "\(error)")
        }
        guard raw.count == Int(shard.rawBytes) else {
            throw CheckpointStoreError.sizeMismatch(version: version, shard: Int(shard.index), expected: shard.rawBytes, found: raw.count)
        }
        let found = sha256Hex(raw)
        guard found == shard.sha256 else {
            throw CheckpointStoreError.shardHashMismatch(version: version, shard: Int(shard.index), expected: shard.sha256, found: found)
        }
        return raw
    }

    public func setLatest(_ version: UInt64) async throws {
        _ = try await redis.command(["SET", keys.latest, String(version)])
    }

    public func latest() async throws -> UInt64? {
        guard let bytes = try await redis.get(keys.latest) else { return nil }
        return UInt64(String(decoding: bytes, as: UTF8.self))
    }

    /// Deletes a version's manifest (first, so nobody starts reading it) and shards.
    public func delete(version: UInt64) async throws {
        let manifest = try? await manifest(version: version)
        _ = try await redis.del([keys.manifest(version: version), keys.manifestSignature(version: version)])
        if let manifest, !manifest.shards.isEmpty { _ = try await redis.del(manifest.shards.map(\.key)) }
    }

    /// Versions that have a manifest.
    public func versions() async throws -> [UInt64] {
        try await redis.scanKeys(matching: keys.manifestPattern).compactMap { key in
            let parts = key.split(separator: ":")
            return parts.count >= 2 ? UInt64(parts[parts.count - 2]) : nil
        }.sorted()
    }
}

/// Compressing, decompressing and hashing whole checkpoints takes seconds for a large model: it runs on a queue of its
/// own, never on Swift's cooperative pool (a thread per core), where it would stall every other task of the process,
/// heartbeats included. The same shape as Runtime's ComputeQueue, which this module cannot see.
final class CheckpointCodec: Sendable {
    private let queue = DispatchQueue(label: "checkpoint.codec")

    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Queues `body` without waiting for it; a later `run` starts after it.
    func submit(_ body: @escaping @Sendable () -> Void) { queue.async(execute: body) }
}

/// Each shard's check as the codec queue finished it, by index; the first failure in shard order is the one reported.
final class VerifiedShards: Sendable {
    private let results: Mutex<[Result<[UInt8], any Error>?]>

    init(count: Int) { results = Mutex(Array(repeating: nil, count: count)) }

    func set(_ index: Int, _ result: Result<[UInt8], any Error>) { results.withLock { $0[index] = result } }

    /// Every shard's result in order; a shard whose reply never came is missing.
    func all() -> [Result<[UInt8], any Error>] {
        results.withLock { $0.map { $0 ?? .failure(CheckpointStoreError.missing(key: "a shard the pipeline did not return")) } }
    }
}
