import Checkpoints
import Compression
import Foundation
import Synchronization
import Runtime
import Store
import Wire

/// A checkpoint relay run by an attacker: it copies each version from the origin (reading what any worker may read)
/// into a Redis of its own and serves it tampered with the current `trick`. Workers reading from it must refuse every
/// tampered copy and fall back to the origin.
public final class HostileRelay: @unchecked Sendable {
    public enum Trick: String, CaseIterable, Sendable {
        case swappedShard = "swapped shard"
        case swappedManifest = "swapped manifest"
        case zstdBomb = "zstd bomb in a shard"
        case rolledBackLatest = "rolled-back latest"
    }

    let names: Names
    let origin: RedisClient
    let relay: RedisClient
    /// The trick, the versions served with the trick played on each, and the newest copied: the copier task writes
    /// them while the test reads them.
    private let state = Mutex<(trick: Trick?, served: [UInt64: Trick], newestCopied: UInt64?)>((nil, [:], nil))

    /// What it does to each new version; nil: copies honestly.
    public var trick: Trick? {
        get { state.withLock { $0.trick } }
        set { state.withLock { $0.trick = newValue } }
    }

    /// Versions served, and the trick played on each.
    public var served: [UInt64: Trick] { state.withLock { $0.served } }

    public init(names: Names, origin: RedisEndpoint, relay: RedisEndpoint) {
        self.names = names
        self.origin = RedisClient(endpoint: origin)
        self.relay = RedisClient(endpoint: relay)
    }

    public func connect() async throws {
        try await origin.connect()
        try await relay.connect()
    }

    public func close() {
        origin.close()
        relay.close()
    }

    /// Copies what is new on the origin, tampered; call it again and again while the run goes on.
    public func sync() async throws {
        let keys = names.checkpoints
        guard let text = try await origin.get(keys.latest), let latest = UInt64(String(decoding: text, as: UTF8.self)) else { return }
        let (trick, newestCopied) = state.withLock { ($0.trick, $0.newestCopied) }
        if let newestCopied, latest <= newestCopied { return }
        guard let manifestBytes = try await origin.get(keys.manifest(version: latest)) else { return }
        let manifest = try CheckpointManifest(serializedBytes: manifestBytes)
        var commands: [[any RedisArgument]] = []
        var shards: [[UInt8]] = []
        for shard in manifest.shards {
            guard let bytes = try await origin.get(shard.key) else { return }  // pruned meanwhile: the next version will do
            shards.append(bytes)
        }
        var servedManifest = manifestBytes
        switch trick {
        case .swappedShard?:
            // other weights, correctly compressed: only the hash can tell
            let raw = try Zstd.decompress(shards[0], maxOutputSize: Int(manifest.shards[0].rawBytes))
            shards[0] = try Zstd.compress(raw.map { $0 ^ 0x5A }, level: 1)
        case .swappedManifest?:
            var forged = manifest
            forged.sha256 = String(repeating: "0", count: 64)
            forged.shards[0].rawBytes += 1 << 30  // and a size that would raise the decompression cap
            servedManifest = try forged.serializedBytes()
        case .zstdBomb?:
            shards[0] = try Zstd.compress([UInt8](repeating: 0, count: 64 << 20), level: 19)
        case .rolledBackLatest?, nil:
            break
        }
        // what every worker reads besides checkpoints: the run state (its format) and tokenizer
        let runState = try await origin.hgetall(names.stateKey)
        if !runState.isEmpty { commands.append(["HSET", names.stateKey] + runState.flatMap { [$0.key as any RedisArgument, $0.value] }) }
        if let tokenizer = try await origin.get(names.tokenizerKey) { commands.append(["SET", names.tokenizerKey, tokenizer]) }
        commands.append(["SET", keys.manifest(version: latest), servedManifest])
        if let signature = try await origin.get(keys.manifestSignature(version: latest)) {
            commands.append(["SET", keys.manifestSignature(version: latest), signature])
        }
        for (info, bytes) in zip(manifest.shards, shards) { commands.append(["SET", info.key, bytes]) }
        // a rolled-back relay goes back to version 0, older than any `latest` a worker has read from it, and stays there
        // (going back by a little could stay above the last value a worker happened to look at)
        let announced: UInt64 = trick == .rolledBackLatest ? 0 : latest
        commands.append(["SET", keys.latest, String(announced)])
        for reply in try await relay.pipeline(commands) { if case let .error(message) = reply { throw RedisError.server(message: message, command: "SET") } }
        state.withLock { state in
            state.newestCopied = latest
            if let trick { state.served[latest] = trick }
        }
    }
}
