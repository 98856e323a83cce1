import Checkpoints
import Config
import Foundation
import Messaging
import Metrics
import Runtime
import Signing
import Store
import Wire

/// Takes each PolicySaved, writes the version's manifest and shards, waits for the relays, moves `latest`,
/// announces the version and deletes versions no step may use any more.
struct CheckpointBroadcaster: Role {
    let context: ServiceContext
    /// The checkpoint writes and the `WAIT` for the relays go on a Redis connection of their own: `WAIT` acknowledges the
    /// writes of its own connection, and blocks it for up to `broadcaster.replica_timeout_ms`, which on the heartbeat's
    /// connection would let the heartbeat (10 s TTL) expire.
    let checkpointRedis: RedisClient
    let store: CheckpointStore
    /// Where the learner stages each policy: the run's Redis (checkpoints may live in another, `checkpoints.redis_url`).
    let staging: CheckpointStore
    let shardBytes: Int
    let replicas: Int
    let replicaTimeoutMs: Int
    let keepVersions: Int
    let broadcast: Counter
    let relayShortfall: Counter
    let broadcastTime: Metrics.Timer
    let versionGauge: Gauge

    init(context: ServiceContext) throws {
        self.context = context
        let settings = context.settings
        let keyFile = try settings.string("broadcaster.signing_key_file")
        let signer = keyFile.isEmpty ? nil : try SigningKey(contentsOf: keyFile)
        if let signer {
            context.logger.notice("signing manifests; workers verify with broadcaster public key \(signer.publicKey.hex)")
        } else {
            context.logger.warning("manifests are unsigned (no broadcaster.signing_key_file): a relay could serve forged checkpoints")
        }
        // a connection of its own for WAIT, to the Redis the relays replicate
        checkpointRedis = RedisClient(endpoint: context.fabric.checkpointRedis.endpoint)
        store = CheckpointStore(names: context.fabric.names, redis: checkpointRedis, signer: signer)
        staging = CheckpointStore(names: context.fabric.names, redis: context.fabric.redis)
        shardBytes = try settings.int("broadcaster.shard_bytes")
        replicas = try settings.int("broadcaster.replicas")
        replicaTimeoutMs = try settings.int("broadcaster.replica_timeout_ms")
        keepVersions = try settings.int("broadcaster.keep_versions")
        broadcast = Counter(label: "tributary_checkpoints_broadcast_total", dimensions: context.dimensions)
        relayShortfall = Counter(label: "tributary_relay_shortfall_total", dimensions: context.dimensions)
        broadcastTime = Metrics.Timer(label: "tributary_checkpoint_broadcast_seconds", dimensions: context.dimensions, preferredDisplayUnit: .seconds)
        versionGauge = Gauge(label: "tributary_checkpoint_version", dimensions: context.dimensions)
    }

    func run() async throws {
        try await checkpointRedis.connect()
        defer { checkpointRedis.close() }
        context.status.set(state: "waiting for policies")
        try await context.consume(queue: context.fabric.names.policiesQueue, prefetch: 1) { delivery in
            try await handle(delivery)
        }
    }

    func handle(_ delivery: Delivery) async throws {
        let fabric = context.fabric
        let saved: PolicySaved
        do {
            saved = try PolicySaved.decode(delivery.body, deliveredID: delivery.messageID)
            try saved.validate(PolicySaved.Limits(run: fabric.names.run))
        } catch {
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        let started = ContinuousClock.now
        context.status.set(state: "broadcasting", detail: "version \(saved.version)")
        // Redelivered after a crash mid-way: the manifest is written last, so re-doing the version is safe.
        let bytes: [UInt8]
        do {
            bytes = try await staging.readStaged(key: saved.stagingKey, expectedSHA256: saved.sha256, version: saved.version)
        } catch let error as CheckpointStoreError {
            if case .missing = error, (try? await store.manifest(version: saved.version)) != nil {
                try await delivery.ack()  // already broadcast, staging cleaned up
                return
            }
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        // Versions are immutable: a version number already announced with other weights is never rewritten.
        if let existing = try? await store.manifest(version: saved.version), existing.sha256 != saved.sha256 {
            try await fabric.incrementCounter("version_rewrites_refused")
            await fabric.deadLetter(delivery, reason: "version \(saved.version) was already broadcast with other weights (SHA-256 \(existing.sha256.prefix(16))…, this one \(saved.sha256.prefix(16))…): versions are never rewritten")
            return
        }
        let manifest = try await store.write(version: saved.version, safetensors: bytes, shardBytes: shardBytes) { CrashPoint.hit(CrashPoint.broadcasterMidWrite) }
        if fabric.checkpointsApart { try await copyRunFormat() }
        if replicas > 0 {
            context.status.set(state: "waiting for relays", detail: "version \(saved.version)")
            let acknowledged = try await checkpointRedis.wait(numReplicas: replicas, timeoutMs: replicaTimeoutMs)
            if acknowledged < replicas {
                context.logger.warning("only \(acknowledged) of \(replicas) relays confirmed version \(saved.version); announcing anyway")
                relayShortfall.increment()
            }
        }
        let previous = try await store.latest() ?? 0
        if saved.version >= previous { try await store.setLatest(saved.version) }
        var announcement = CheckpointAnnouncement()
        announcement.envelope = fabric.envelope()
        announcement.version = saved.version
        announcement.manifestKey = fabric.names.checkpoints.manifest(version: saved.version)
        announcement.totalBytes = manifest.totalBytes
        announcement.sha256 = manifest.sha256
        announcement.savedAtUnixMs = saved.savedAtUnixMs
        announcement.announcedAtUnixMs = WallClock.nowMs()
        // Fanout with no bound queue (no worker yet) is fine: late joiners read `latest`.
        try await fabric.amqp.publish(exchange: Names.checkpointsExchange, routingKey: "", body: try announcement.encoded(),
                                      messageID: announcement.messageID, mandatory: false)
        _ = try await fabric.redis.del([saved.stagingKey])
        _ = try await fabric.redis.xadd(fabric.names.broadcastLogKey, fields: [
            "version": String(saved.version), "saved_ms": String(saved.savedAtUnixMs), "announced_ms": String(announcement.announcedAtUnixMs),
            "bytes": String(manifest.totalBytes), "shards": String(manifest.shards.count), "sha256": manifest.sha256], maxLength: 10_000)
        // Versions below latest - keep can no longer serve any step (keep >= async level + 1).
        if saved.version >= UInt64(keepVersions) {
            for old in try await store.versions() where old + UInt64(keepVersions) < saved.version {
                try await store.delete(version: old)
            }
        }
        try await delivery.ack()
        let elapsed = ContinuousClock.now - started
        broadcast.increment()
        versionGauge.record(Double(saved.version))
        broadcastTime.recordNanoseconds(Int64(elapsed.seconds * 1e9))
        context.status.update { $0.policyVersion = Int(clamping: saved.version); $0.state = "waiting for policies"; $0.detail = "" }
        context.logger.info("announced version \(saved.version): \(manifest.shards.count) shards, \(manifest.totalBytes) bytes in \(elapsed)")
    }
}

extension CheckpointBroadcaster {
    /// With checkpoints in a Redis of their own, workers reading a relay find the run's format there too: copied with
    /// each version (only when it changed), before the relays are waited for.
    func copyRunFormat() async throws {
        try await RunFormat.mirror(names: context.fabric.names, from: context.fabric.redis, to: checkpointRedis)
    }
}
