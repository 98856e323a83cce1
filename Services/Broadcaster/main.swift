import Foundation
import Messaging
import ServiceKit
import Wire

// tributary-broadcaster: turns each policy the learner saved into a sharded, compressed, checksummed
// checkpoint in Redis, waits for the relays, announces it, and deletes versions nobody may use any more.

let broadcasterSettings = [
    Setting("run.id", "default", "run to serve"),
    Setting("broadcaster.shard_bytes", "1048576", "raw bytes per shard"),
    Setting("broadcaster.replicas", "0", "Redis replicas (regional relays) that must hold a checkpoint before it is announced"),
    Setting("broadcaster.replica_timeout_ms", "5000", "how long to wait for the relays"),
    Setting("broadcaster.keep_versions", "4", "versions kept besides the newest (at least the run's async level + 1)"),
]

await ServiceRuntime.main(role: "broadcaster", abstract: "Shards, hashes and announces each saved policy version.",
                          specs: broadcasterSettings, throughputUnit: "checkpoints/s") { context in
    let fabric = context.fabric
    let store = CheckpointStore(names: fabric.names, redis: fabric.redis)
    let shardBytes = try context.settings.int("broadcaster.shard_bytes", in: 4096...(256 << 20))
    let replicas = try context.settings.int("broadcaster.replicas", in: 0...64)
    let replicaTimeout = try context.settings.int("broadcaster.replica_timeout_ms", in: 0...600_000)
    let keep = try context.settings.int("broadcaster.keep_versions", in: 1...1000)
    context.status.set(state: "waiting for policies")

    try await context.consume(queue: fabric.names.policiesQueue, prefetch: 1) { delivery in
        let saved: PolicySaved
        do {
            saved = try PolicySaved.decode(delivery.body, deliveredID: delivery.messageID)
            guard saved.envelope.runID == fabric.names.run else {
                throw WireError.invalidField(type: "PolicySaved", messageID: saved.messageID, field: "envelope.run_id", reason: "is '\(saved.envelope.runID)', not this run")
            }
        } catch {
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        let started = ContinuousClock.now
        context.status.set(state: "broadcasting", detail: "version \(saved.version)")
        // Redelivered after a crash mid-way: the manifest is written last, so re-doing the version is safe.
        let bytes: [UInt8]
        do {
            bytes = try await store.readStaged(key: saved.stagingKey, expectedSHA256: saved.sha256, version: saved.version)
        } catch let error as CheckpointStoreError {
            if case .missing = error, (try? await store.manifest(version: saved.version)) != nil {
                try await delivery.ack()  // already broadcast, staging cleaned up
                return
            }
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        let manifest = try await store.write(version: saved.version, safetensors: bytes, shardBytes: shardBytes)
        if replicas > 0 {
            let acknowledged = try await fabric.redis.wait(numReplicas: replicas, timeoutMs: replicaTimeout)
            if acknowledged < replicas {
                context.logger.warning("only \(acknowledged) of \(replicas) relays confirmed version \(saved.version); announcing anyway")
                context.metrics.increment("relay_shortfall_total")
            }
        }
        let previous = try await store.latest() ?? 0
        if saved.version >= previous { try await store.setLatest(saved.version) }
        var announcement = CheckpointAnnouncement()
        announcement.envelope = fabric.envelope()
        announcement.version = saved.version
        announcement.manifestKey = fabric.names.manifestKey(version: saved.version)
        announcement.totalBytes = manifest.totalBytes
        announcement.sha256 = manifest.sha256
        announcement.savedAtUnixMs = saved.savedAtUnixMs
        announcement.announcedAtUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        // Fanout with no bound queue (no worker yet) is fine: late joiners read `latest`.
        do {
            try await fabric.amqp.publish(exchange: Names.checkpointsExchange, routingKey: "", body: try announcement.encoded(),
                                          messageID: announcement.messageID, mandatory: false)
        }
        _ = try await fabric.redis.del([saved.stagingKey])
        _ = try await fabric.redis.command(["XADD", fabric.names.broadcastLogKey, "MAXLEN", "~", "10000", "*",
                                            "version", String(saved.version), "saved_ms", String(saved.savedAtUnixMs),
                                            "announced_ms", String(announcement.announcedAtUnixMs), "bytes", String(manifest.totalBytes),
                                            "shards", String(manifest.shards.count)])
        // Versions below latest - keep can no longer serve any step (keep >= async level + 1).
        if saved.version >= UInt64(keep) {
            for old in try await store.versions() where old + UInt64(keep) < saved.version {
                try await store.delete(version: old)
            }
        }
        try await delivery.ack()
        let elapsed = ContinuousClock.now - started
        context.metrics.increment("checkpoints_broadcast_total")
        context.metrics.set("checkpoint_version", Double(saved.version))
        context.metrics.set("checkpoint_broadcast_seconds", Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds))
        context.status.update { $0.policyVersion = Int(saved.version); $0.state = "waiting for policies"; $0.detail = "" }
        context.logger.info("announced version \(saved.version): \(manifest.shards.count) shards, \(manifest.totalBytes) bytes in \(elapsed)")
    }
}
