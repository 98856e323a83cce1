import Checkpoints
import Config
import Foundation
import Model
@testable import Broadcaster
import Runtime
import Store
import TestSupport
import Testing
import Wire

/// The broadcaster alone, in process, against the real Redis and a real replica of it.
@Suite("Broadcaster in process", .serialized)
struct BroadcasterRoleTests {
    /// A version staged as the learner stages it, and its PolicySaved on the control exchange.
    func save(version: UInt64, _ harness: RoleHarness) async throws {
        let model = GPT(config: GPTConfig(contextLength: 16, layers: 1, heads: 2, channels: 32), seed: 5)
        let bytes = model.safetensorsBytes()
        let (key, sha256) = try await CheckpointStore(names: harness.names, redis: harness.fabric.redis).stage(version: version, safetensors: bytes)
        var saved = PolicySaved()
        saved.envelope = harness.fabric.envelope()
        saved.version = version
        saved.stagingKey = key
        saved.bytes = UInt64(bytes.count)
        saved.sha256 = sha256
        saved.savedAtUnixMs = WallClock.nowMs()
        try await harness.fabric.publish(saved, exchange: Names.controlExchange, routingKey: harness.names.policyRoutingKey)
    }

    /// The broadcaster's heartbeat as Redis holds it (not the in-process board): what the heartbeat could write.
    func heartbeat(_ harness: RoleHarness) async throws -> StatusBoard.Snapshot? {
        let key = harness.names.heartbeatKey(role: "broadcaster", instance: harness.host.context.fabric.identity.instance)
        return try await harness.fabric.redis.get(key).flatMap { try? JSONDecoder().decode(StatusBoard.Snapshot.self, from: Data($0)) }
    }

    @Test(.timeLimit(.minutes(3)))
    func theHeartbeatGoesOnWhileItWaitsForARelayAndTheVersionIsAnnouncedOnceTheRelayHasIt() async throws {
        // A relay in sync first: WAIT counts a replica that attaches mid-wait as soon as its full sync is sent, before
        // it has loaded it, when the origin had no replica (and so no replication offsets) at the write.
        let replica = try await ReplicaServer.start(of: try RedisEndpoint.fromEnvironment())
        defer { replica.stop(removing: true) }
        let replicaClient = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: replica.port))
        defer { replicaClient.close() }
        try await waitUntil("the relay in sync") { (try? await replicaClient.command(["INFO", "replication"]))?.string?.contains("master_link_status:up") == true }
        // 120 s for the relay: only a failing test waits that long
        let harness = try await RoleHarness.start(CheckpointBroadcaster.self, name: "broadcaster", specs: SettingsCatalog.broadcaster,
                                                  run: RoleHarness.newRun("broadcaster-relay"),
                                                  arguments: ["--broadcaster.replicas", "1", "--broadcaster.replica_timeout_ms", "120000"])
        defer { Task { await harness.cleanUp() } }
        // a relay that stops confirming: the broadcaster's WAIT blocks its connection
        replica.signal(SIGSTOP)
        try await save(version: 0, harness)
        // the heartbeat, on another connection, still reports it
        try await harness.waitFor("the heartbeat to show the wait for relays") { try await heartbeat(harness)?.state == "waiting for relays" }
        let store = CheckpointStore(names: harness.names, redis: harness.fabric.redis)
        #expect(try await store.latest() == nil, "announced before a relay confirmed it")

        replica.signal(SIGCONT)
        try await harness.waitFor("version 0 announced") { try await store.latest() == 0 }
        // what the relay confirmed: the version's manifest and shards read and verify from it
        let (bytes, _) = try await CheckpointStore(names: harness.names, redis: replicaClient).read(version: 0)
        #expect(!bytes.isEmpty)
        await harness.host.drain()
        #expect(try await harness.exit() == nil)
    }
}

/// A replica (`replicaof`) of the test's Redis on a free loopback port, as a relay is: a child of the test.
enum ReplicaServer {
    static func start(of origin: RedisEndpoint) async throws -> RedisServerProcess {
        var arguments = ["--save", "", "--appendonly", "no", "--replicaof", origin.host, String(origin.port)]
        if let password = origin.password { arguments += ["--masterauth", password] }
        return try await RedisServerProcess.start(arguments, in: FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(UUID().uuidString.prefix(8))"),
                                                  name: "replica")
    }
}
