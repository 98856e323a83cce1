import Foundation
import Messaging
import Synchronization
import TestSupport
import Testing

/// Restarts a RabbitMQ of its own (other ports, other state folder), so tests using the shared broker are undisturbed.
/// Its ports are free ones picked per run (a fixed number would clash with another checkout testing at the same time),
/// recorded in this checkout's state folder so that a broker left by a crashed earlier run is found and stopped first.
@Suite("Confirmed messages survive a broker restart")
struct BrokerRestartTests {
    static let state = repositoryRoot.appendingPathComponent(".state/restart-test")

    static func environment(amqp: String, epmd: String, dist: String) -> [String: String] {
        ["TRIBUTARY_AMQP_PORT": amqp, "TRIBUTARY_EPMD_PORT": epmd, "TRIBUTARY_AMQP_DIST_PORT": dist,
         "TRIBUTARY_AMQP_NODENAME": "tributary-restart@localhost", "TRIBUTARY_STATE_DIR": state.path]
    }

    @Test(.timeLimit(.minutes(5)))
    func everyConfirmedMessageIsStillThereAfterTheBrokerIsStoppedAndStarted() async throws {
        // brokers.sh stop also kills whatever holds the ports: only while the node it recorded is alive.
        if let old = RecordedPorts.read(in: Self.state), let amqp = old["AMQP_PORT"], let epmd = old["EPMD_PORT"], let dist = old["DIST_PORT"],
           runningProcess(pidFile: Self.state.appendingPathComponent("rabbitmq/rabbitmq.pid")) != nil {
            try await brokersScript(["stop", "rabbitmq"], environment: Self.environment(amqp: amqp, epmd: epmd, dist: dist))
        }
        try? FileManager.default.removeItem(at: Self.state)
        let ports = try freeLoopbackPorts(3)
        try RecordedPorts.write(["AMQP_PORT": String(ports[0]), "EPMD_PORT": String(ports[1]), "DIST_PORT": String(ports[2])], in: Self.state)
        let environment = Self.environment(amqp: String(ports[0]), epmd: String(ports[1]), dist: String(ports[2]))
        try await brokersScript(["start", "rabbitmq"], environment: environment)
        defer {
            try? brokersScriptBlocking(["stop", "rabbitmq"], environment: environment)
            try? FileManager.default.removeItem(at: Self.state)
        }
        let queue = "restart.q"
        let topology = Topology(exchanges: [ExchangeSpec("restart.x", kind: .direct)], queues: [QueueSpec(queue, type: .classic)],
                                bindings: [BindingSpec(queue: queue, exchange: "restart.x", routingKey: "k")])
        let client = AMQPClient(endpoint: AMQPEndpoint(port: ports[0]), topology: topology, name: "restart")
        try await client.connect()

        let total = 400
        let confirmed = Locked<Set<String>>([])
        let failed = Locked<[String: String]>([:])
        let publishing = Task {
            // Eight publishers at a time, a steady stream across the restart.
            await withTaskGroup(of: Void.self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        for index in stride(from: lane, to: total, by: 8) {
                            let id = "msg-\(index)"
                            do {
                                try await client.publish(exchange: "restart.x", routingKey: "k", body: Array(id.utf8), messageID: id)
                                confirmed.withLock { _ = $0.insert(id) }
                            } catch {
                                failed.withLock { $0[id] = "\(error)" }
                            }
                            try? await Task.sleep(for: .milliseconds(10))
                        }
                    }
                }
            }
        }
        try await waitUntil("some confirmed publishes") { confirmed.withLock { $0.count } >= 60 }
        try await brokersScript(["stop", "rabbitmq"], environment: environment)
        try await brokersScript(["start", "rabbitmq"], environment: environment)
        await publishing.value

        let confirmedIDs = confirmed.value
        #expect(failed.value.isEmpty, "publishes that failed: \(failed.value)")
        #expect(confirmedIDs.count == total)

        // Drain the queue; a message whose confirm was lost in the restart may be there twice (at least once),
        // and consumers deduplicate by message id.
        let collector = Collector(client.consume(queue: queue, prefetch: 100), autoAck: true)
        try await waitUntil("every confirmed message", within: 60) {
            Set(collector.all.compactMap(\.messageID)).isSuperset(of: confirmedIDs)
        }
        let received = collector.all.compactMap(\.messageID)
        let distinct = Set(received)
        #expect(distinct.isSuperset(of: confirmedIDs))
        #expect(distinct.count == total, "deduplicated by id, each message is there once")
        for delivery in collector.all { #expect(delivery.body == Array((delivery.messageID ?? "").utf8)) }
        collector.stop()
        await client.close()
    }
}
