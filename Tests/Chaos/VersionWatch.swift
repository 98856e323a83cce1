import Checkpoints
import Foundation
import Messaging
import Runtime
import Store
import Synchronization
import Wire

/// Every SHA-256 each policy version was given, from three places that do not depend on each other: the learner's
/// PolicySaved messages (a queue of the harness's own on the control exchange), the broadcaster's announcements (one on
/// the checkpoints fanout), and the manifests in Redis (polled). A version seen with two SHA-256s was rewritten: workers
/// may hold either set of weights under one number. The broadcast log has no SHA-256, hence the taps.
public final class VersionWatch: Sendable {
    private let seen = Mutex<[UInt64: Set<String>]>([:])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let amqp: AMQPClient
    private let redis: RedisClient

    /// `endpoints`: the broker, or a cluster's nodes.
    public init(names: Names, amqp endpoints: [AMQPEndpoint], redis redisEndpoint: RedisEndpoint) {
        amqp = AMQPClient(endpoints: endpoints, name: "chaos-version-watch", logger: ChaosHarness.quietLogger)
        redis = RedisClient(endpoint: redisEndpoint)
        let amqp = self.amqp, redis = self.redis
        let saved = amqp.consume(queue: "", prefetch: 64, declare: .exclusiveTemporary,
                                 bindings: [BindingSpec(queue: "", exchange: Names.controlExchange, routingKey: names.policyRoutingKey)])
        let announced = amqp.consume(queue: "", prefetch: 64, declare: .exclusiveTemporary,
                                     bindings: [BindingSpec(queue: "", exchange: Names.checkpointsExchange)])
        tasks.withLock { tasks in
            tasks.append(Task { [weak self] in
                while !Task.isCancelled {
                    do {
                        for try await delivery in saved {
                            if let message = try? PolicySaved.decode(delivery.body), message.envelope.runID == names.run {
                                self?.note(message.version, message.sha256)
                            }
                            try? await delivery.ack()
                        }
                        return
                    } catch {
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                }
            })
            tasks.append(Task { [weak self] in
                do {
                    for try await delivery in announced {
                        if let message = try? CheckpointAnnouncement.decode(delivery.body), message.envelope.runID == names.run {
                            self?.note(message.version, message.sha256)
                        }
                        try? await delivery.ack()
                    }
                } catch {}
            })
            tasks.append(Task { [weak self] in
                let store = CheckpointStore(names: names, redis: redis)
                while !Task.isCancelled {
                    // Redis down (a fault): try again on the next round
                    if let versions = try? await store.versions() {
                        for version in versions {
                            if let manifest = try? await store.manifest(version: version) { self?.note(version, manifest.sha256) }
                        }
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                }
            })
        }
    }

    /// Connects the taps; call before the learner publishes version 0.
    public func connect() async throws {
        try await amqp.connect()
        try await redis.connect()
    }

    func note(_ version: UInt64, _ sha256: String) {
        guard !sha256.isEmpty else { return }
        seen.withLock { _ = $0[version, default: []].insert(sha256) }
    }

    /// Forgets what was seen: a new epoch of the run (`run start --fresh`) numbers its versions from 0 again.
    public func reset() { seen.withLock { $0 = [:] } }

    /// Versions seen with more than one SHA-256.
    public var rewritten: [UInt64: Set<String>] { seen.withLock { $0.filter { $0.value.count > 1 } } }

    public var versionsSeen: Int { seen.withLock { $0.count } }

    public func close() async {
        tasks.withLock { tasks in
            tasks.forEach { $0.cancel() }
            tasks = []
        }
        await amqp.close()
        redis.close()
    }
}
