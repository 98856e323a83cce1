import Foundation
import Messaging
import Synchronization
import Testing

/// Restarts a RabbitMQ of its own (other ports, other state folder), so tests using the shared broker are undisturbed.
@Suite("Confirmed messages survive a broker restart")
struct BrokerRestartTests {
    static let port = 5692
    static let environment: [String: String] = [
        "TRIBUTARY_AMQP_PORT": String(port),
        "TRIBUTARY_EPMD_PORT": "4391",
        "TRIBUTARY_AMQP_DIST_PORT": "25692",
        "TRIBUTARY_AMQP_NODENAME": "tributary-restart@localhost",
        "TRIBUTARY_STATE_DIR": FileManager.default.temporaryDirectory.appendingPathComponent("tributary-restart-test").path,
    ]

    @Test(.timeLimit(.minutes(5)))
    func everyConfirmedMessageIsStillThereAfterTheBrokerIsStoppedAndStarted() async throws {
        // A fixed state folder, so a broker left by a crashed earlier run is found and stopped first.
        try brokersScript(["stop", "rabbitmq"], environment: Self.environment)
        try? FileManager.default.removeItem(atPath: Self.environment["TRIBUTARY_STATE_DIR"]!)
        try brokersScript(["start", "rabbitmq"], environment: Self.environment)
        defer {
            try? brokersScript(["stop", "rabbitmq"], environment: Self.environment)
            try? FileManager.default.removeItem(atPath: Self.environment["TRIBUTARY_STATE_DIR"]!)
        }
        let queue = "restart.q"
        let topology = Topology(exchanges: [ExchangeSpec("restart.x", kind: .direct)], queues: [QueueSpec(queue, type: .classic)],
                                bindings: [BindingSpec(queue: queue, exchange: "restart.x", routingKey: "k")])
        let client = AMQPClient(endpoint: AMQPEndpoint(port: Self.port), topology: topology, name: "restart")
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
        try brokersScript(["stop", "rabbitmq"], environment: Self.environment)
        try brokersScript(["start", "rabbitmq"], environment: Self.environment)
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
