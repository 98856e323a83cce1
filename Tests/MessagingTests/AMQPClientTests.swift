import Foundation
import Messaging
import TestSupport
import Testing

/// Against the private RabbitMQ of scripts/brokers.sh (TRIBUTARY_AMQP_URL overrides).
@Suite("AMQP client against a real RabbitMQ")
struct AMQPClientTests {
    let endpoint: AMQPEndpoint

    init() throws { endpoint = try AMQPEndpoint.fromEnvironment() }

    /// A direct exchange, a work queue dead-lettering to its own dead-letter queue.
    func workTopology(_ prefix: String) -> (Topology, exchange: String, queue: String, dead: String) {
        let exchange = uniqueName("\(prefix).x")
        let deadExchange = uniqueName("\(prefix).dead")
        let queue = uniqueName("\(prefix).q")
        let dead = queue + ".dead"
        let topology = Topology(
            exchanges: [ExchangeSpec(exchange, kind: .direct), ExchangeSpec(deadExchange, kind: .direct)],
            queues: [QueueSpec(queue, deadLetterExchange: deadExchange, deadLetterRoutingKey: "dead"), QueueSpec(dead)],
            bindings: [BindingSpec(queue: queue, exchange: exchange, routingKey: "work"),
                       BindingSpec(queue: dead, exchange: deadExchange, routingKey: "dead")])
        return (topology, exchange, queue, dead)
    }

    @Test func publishConfirmConsumeAckRoundTrip() async throws {
        let (topology, exchange, queue, _) = workTopology("roundtrip")
        let client = AMQPClient(endpoint: endpoint, topology: topology, name: "roundtrip")
        try await client.connect()
        let body: [UInt8] = [0, 1, 2, 255, 0, 42]
        try await client.publish(exchange: exchange, routingKey: "work", body: body, messageID: "m-1", headers: ["run": .string("r1"), "step": .int(7)])
        let collector = Collector(client.consume(queue: queue, prefetch: 4))
        try await waitUntil("the delivery") { collector.count == 1 }
        let delivery = try #require(collector.all.first)
        #expect(delivery.body == body)
        #expect(delivery.messageID == "m-1")
        #expect(delivery.headers["run"] == "r1")
        #expect(delivery.headers["step"] == "7")
        #expect(!delivery.redelivered)
        try await delivery.ack()
        try await waitUntil("the queue to drain") { try await client.inspect(queue: queue).messages == 0 }
        collector.stop()
        try await client.delete(queue: queue)
        await client.close()
    }

    @Test func manyPublishesInFlightAreAllConfirmed() async throws {
        let (topology, exchange, queue, _) = workTopology("inflight")
        let client = AMQPClient(endpoint: endpoint, topology: topology, name: "inflight")
        try await client.connect()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<500 {
                group.addTask { try await client.publish(exchange: exchange, routingKey: "work", body: Array("msg \(index)".utf8)) }
            }
            try await group.waitForAll()
        }
        #expect(try await client.inspect(queue: queue).messages == 500)
        try await client.delete(queue: queue)
        await client.close()
    }

    @Test func unacknowledgedDeliveryComesBackRedeliveredWhenItsConnectionDies() async throws {
        let (topology, exchange, queue, _) = workTopology("redeliver")
        let publisher = AMQPClient(endpoint: endpoint, topology: topology, name: "publisher")
        try await publisher.connect()
        try await publisher.publish(exchange: exchange, routingKey: "work", body: Array("task".utf8), messageID: "task-1")

        let doomed = AMQPClient(endpoint: endpoint, topology: topology, name: "doomed")
        try await doomed.connect()
        let first = Collector(doomed.consume(queue: queue, prefetch: 1))
        try await waitUntil("the first delivery") { first.count == 1 }
        #expect(first.all.first?.redelivered == false)
        // Kill the consumer's connection without acknowledging, as a crashed worker would.
        await doomed.close()

        let survivor = AMQPClient(endpoint: endpoint, topology: topology, name: "survivor")
        try await survivor.connect()
        let second = Collector(survivor.consume(queue: queue, prefetch: 1))
        try await waitUntil("the redelivery") { second.count == 1 }
        let again = try #require(second.all.first)
        #expect(again.messageID == "task-1")
        #expect(again.redelivered)
        try await again.ack()
        second.stop()
        try await publisher.delete(queue: queue)
        await survivor.close()
        await publisher.close()
    }

    @Test func droppedConnectionReconnectsAndRedelivers() async throws {
        let (topology, exchange, queue, _) = workTopology("drop")
        let client = AMQPClient(endpoint: endpoint, topology: topology, name: "drop")
        try await client.connect()
        try await client.publish(exchange: exchange, routingKey: "work", body: [1], messageID: "d-1")
        let collector = Collector(client.consume(queue: queue, prefetch: 1))
        try await waitUntil("the first delivery") { collector.count == 1 }
        client.simulateConnectionLoss()
        // The consumer resumes on the new connection and gets the message again, flagged redelivered.
        try await waitUntil("the redelivery after reconnect") { collector.count == 2 }
        let redelivered = collector.all[1]
        #expect(redelivered.messageID == "d-1")
        #expect(redelivered.redelivered)
        // Acknowledging the stale first delivery settles nothing, and says so; the fresh one settles the message.
        do {
            try await collector.all[0].ack()
            Issue.record("an ack on a replaced connection reported success")
        } catch AMQPError.deliveryVoid {}
        try await redelivered.ack()
        try await waitUntil("the queue to drain") { try await client.inspect(queue: queue) == (0, 1) }
        collector.stop()
        try await client.delete(queue: queue)
        await client.close()
    }

    @Test func rejectedWithoutRequeueLandsInTheDeadLetterQueue() async throws {
        let (topology, exchange, queue, dead) = workTopology("dlq")
        let client = AMQPClient(endpoint: endpoint, topology: topology, name: "dlq")
        try await client.connect()
        try await client.publish(exchange: exchange, routingKey: "work", body: Array("poison".utf8), messageID: "poison-1",
                                 headers: ["reason": .string("none yet")])
        let work = Collector(client.consume(queue: queue, prefetch: 1))
        try await waitUntil("the delivery") { work.count == 1 }
        try await work.all[0].reject()
        let deadLetters = Collector(client.consume(queue: dead, prefetch: 1))
        try await waitUntil("the dead letter") { deadLetters.count == 1 }
        let deadLetter = try #require(deadLetters.all.first)
        #expect(deadLetter.messageID == "poison-1")
        #expect(deadLetter.body == Array("poison".utf8))
        #expect(try await client.inspect(queue: queue).messages == 0)
        try await deadLetter.ack()
        work.stop()
        deadLetters.stop()
        try await client.delete(queue: queue)
        try await client.delete(queue: dead)
        await client.close()
    }

    @Test func unroutableMandatoryPublishIsReturned() async throws {
        let exchange = uniqueName("unroutable")
        let client = AMQPClient(endpoint: endpoint, topology: Topology(exchanges: [ExchangeSpec(exchange, kind: .direct)]), name: "unroutable")
        try await client.connect()
        await #expect(throws: AMQPError.publishReturned(exchange: exchange, routingKey: "nowhere", code: 312, text: "NO_ROUTE")) {
            try await client.publish(exchange: exchange, routingKey: "nowhere", body: [1])
        }
        await client.close()
    }

    @Test func publishingToAMissingExchangeGivesTheBrokersChannelError() async throws {
        let client = AMQPClient(endpoint: endpoint, name: "missing")
        try await client.connect()
        let error = await #expect(throws: AMQPError.self) {
            try await client.publish(exchange: uniqueName("absent"), routingKey: "k", body: [1])
        }
        guard case let .channelClosed(code, text) = error else {
            Issue.record("expected channelClosed, got \(String(describing: error))")
            return
        }
        #expect(code == 404)
        #expect(text.contains("NOT_FOUND"))
        // The client recovers: the next publish to a real exchange is confirmed.
        try await client.declare(Topology(exchanges: [ExchangeSpec("test.recover", kind: .fanout, durable: false)],
                                          queues: [QueueSpec("test.recover.q", durable: false, autoDelete: true)],
                                          bindings: [BindingSpec(queue: "test.recover.q", exchange: "test.recover")]))
        try await client.publish(exchange: "test.recover", routingKey: "", body: [2])
        await client.close()
    }

    /// A connection's topology goes out in one batch while it opens; a refusal in the middle of the batch still names
    /// the declaration refused, and the ones before it took effect.
    @Test func aRefusedDeclarationInTheOpeningBatchIsNamed() async throws {
        let (topology, _, queue, dead) = workTopology("batch")
        let setup = AMQPClient(endpoint: endpoint, topology: topology, name: "batch-setup")
        try await setup.connect()
        // passive checks: the second of three is missing
        let missing = uniqueName("batch.absent")
        let checks = Topology(queues: [QueueSpec(queue), QueueSpec(missing), QueueSpec(dead)]).passive
        let checker = AMQPClient(endpoint: endpoint, topology: checks, name: "batch-check")
        let notFound = await #expect(throws: AMQPError.self) { try await checker.connect() }
        guard case let .declarationFailed(what, code, _) = notFound else {
            Issue.record("expected declarationFailed, got \(String(describing: notFound))")
            return
        }
        #expect(code == 404)
        #expect(what.contains(missing))
        // a conflict (the same queue without its dead-letter arguments) after an exchange and a fresh queue
        let exchange = uniqueName("batch.fresh.x"), fresh = uniqueName("batch.fresh.q")
        let conflicting = Topology(exchanges: [ExchangeSpec(exchange, kind: .direct, durable: false)],
                                   queues: [QueueSpec(fresh, durable: false, autoDelete: true), QueueSpec(queue)])
        let conflicted = AMQPClient(endpoint: endpoint, topology: conflicting, name: "batch-conflict")
        let conflict = await #expect(throws: AMQPError.self) { try await conflicted.connect() }
        guard case let .declarationFailed(conflictWhat, conflictCode, _) = conflict else {
            Issue.record("expected declarationFailed, got \(String(describing: conflict))")
            return
        }
        #expect(conflictCode == 406)
        #expect(conflictWhat == "queue '\(queue)'")
        // what came before the refusal was declared
        #expect(try await setup.inspect(queue: fresh).messages == 0)
        try await setup.delete(queue: fresh)
        try await setup.delete(queue: queue)
        try await setup.delete(queue: dead)
        await setup.close()
    }

    /// A consumer starts in two pipelined round trips (declare and binds, then prefetch and consume) while deliveries
    /// to another consumer pour in on the same connection and more publishes are in flight (their confirms may arrive
    /// meanwhile too): what arrives meanwhile is kept, so every message comes once, never redelivered (a reconnect would
    /// redeliver the unacknowledged ones), every publish is confirmed, and each new consumer gets what its bindings route.
    @Test func consumersStartWhileDeliveriesAndConfirmsArriveAndNothingIsLost() async throws {
        let (topology, exchange, queue, _) = workTopology("busy")
        let fanout = uniqueName("busy.routes")
        let client = AMQPClient(endpoint: endpoint, topology: topology + Topology(exchanges: [ExchangeSpec(fanout, kind: .direct)]), name: "busy")
        try await client.connect()
        func publish(_ range: Range<Int>) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in range {
                    group.addTask { try await client.publish(exchange: exchange, routingKey: "work", body: [UInt8(index % 256)], messageID: "m-\(index)") }
                }
                try await group.waitForAll()
            }
        }
        try await publish(0..<400)
        let work = Collector(client.consume(queue: queue, prefetch: 1000))
        let publishing = Task { try await publish(400..<600) }
        // five consumers of their own queues, three bindings each, started while the 400 arrive and 200 more are published
        let names = (0..<5).map { _ in uniqueName("busy.own") }
        let own = names.map { name in
            Collector(client.consume(queue: name, prefetch: 10, declare: QueueSpec(name, durable: false, exclusive: true, autoDelete: true),
                                     bindings: (0..<3).map { BindingSpec(queue: name, exchange: fanout, routingKey: "\(name).\($0)") }))
        }
        // and a server-named one, whose bindings name it by the empty name (the queue last declared on the channel)
        let anonymous = Collector(client.consume(queue: "", prefetch: 10, declare: .exclusiveTemporary,
                                                 bindings: ["a", "b"].map { BindingSpec(queue: "", exchange: fanout, routingKey: "\(fanout).\($0)") }))
        try await publishing.value
        try await waitUntil("600 deliveries to the work consumer") { work.count >= 600 }
        // routed nowhere until it consumes (mandatory: returned, which throws), so publish until both arrive
        try await waitUntil("2 deliveries on the server-named queue") {
            for key in ["a", "b"] { try? await client.publish(exchange: fanout, routingKey: "\(fanout).\(key)", body: [2], messageID: key) }
            return Set(anonymous.all.compactMap(\.messageID)) == ["a", "b"]
        }
        #expect(anonymous.failure.withLock { $0 } == nil)
        for name in names {
            try await waitUntil("a consumer on \(name)") { try await client.inspect(queue: name).consumers == 1 }
            for key in 0..<3 { try await client.publish(exchange: fanout, routingKey: "\(name).\(key)", body: [1]) }
        }
        for (name, collector) in zip(names, own) {
            try await waitUntil("3 deliveries on \(name)") { collector.count >= 3 }
            #expect(collector.count == 3 && collector.failure.withLock { $0 } == nil)
        }
        let delivered = work.all
        #expect(delivered.count == 600 && Set(delivered.compactMap(\.messageID)).count == 600, "\(delivered.count) deliveries")
        #expect(delivered.allSatisfy { !$0.redelivered }, "redelivered: the connection was lost")
        #expect(work.failure.withLock { $0 } == nil)
        for delivery in delivered { try await delivery.ack() }
        work.stop()
        own.forEach { $0.stop() }
        anonymous.stop()
        try await client.delete(queue: queue)
        await client.close()
    }

    @Test func oversizedMessageIsRefusedBeforeSending() async throws {
        let client = AMQPClient(endpoint: endpoint, name: "large", maxMessageSize: 1024)
        try await client.connect()
        await #expect(throws: AMQPError.messageTooLarge(size: 2048, limit: 1024)) {
            try await client.publish(exchange: "amq.direct", routingKey: "x", body: [UInt8](repeating: 7, count: 2048))
        }
        await client.close()
    }

    @Test func wrongCredentialsAreRefusedByName() async throws {
        var wrong = endpoint
        wrong.password = "definitely-not-the-password"
        let client = AMQPClient(endpoint: wrong, name: "wrong")
        let error = await #expect(throws: AMQPError.self) { try await client.connect() }
        guard case let .authenticationRefused(user, vhost, _) = error else {
            Issue.record("expected authenticationRefused, got \(String(describing: error))")
            return
        }
        #expect(user == wrong.user)
        #expect(vhost == wrong.vhost)
    }

    @Test func closedPortIsConnectionRefusedNamingHostAndPort() async throws {
        let closed = AMQPEndpoint(host: "127.0.0.1", port: 1)
        let client = AMQPClient(endpoint: closed, name: "closed")
        await #expect(throws: AMQPError.connectionRefused(host: "127.0.0.1", port: 1)) { try await client.connect() }
    }

    @Test func urlParsingAndItsErrors() throws {
        let parsed = try AMQPEndpoint(url: "amqp://worker:s%40cret@broker.example:5999/runs")
        #expect(parsed == AMQPEndpoint(host: "broker.example", port: 5999, user: "worker", password: "s@cret", vhost: "runs"))
        #expect(try AMQPEndpoint(url: "amqp://h").vhost == "/")
        #expect(throws: AMQPError.invalidURL("http://h", reason: "scheme must be amqp, found http")) { try AMQPEndpoint(url: "http://h") }
    }
}

@Suite("AMQP client recovers from refused consumers")
struct AMQPRefusedConsumerTests {
    @Test func consumingAMissingQueueEndsThatStreamWithTheBrokersErrorAndTheClientGoesOn() async throws {
        let exchange = uniqueName("refused.x")
        let queue = uniqueName("refused.q")
        let client = AMQPClient(endpoint: try AMQPEndpoint.fromEnvironment(),
                                topology: Topology(exchanges: [ExchangeSpec(exchange, kind: .direct)], queues: [QueueSpec(queue)],
                                                   bindings: [BindingSpec(queue: queue, exchange: exchange, routingKey: "k")]),
                                name: "refused")
        try await client.connect()
        let missing = Collector(client.consume(queue: uniqueName("absent"), prefetch: 1))
        try await waitUntil("the refused consumer to end") { missing.failure.withLock { $0 } != nil }
        #expect(missing.failure.withLock { $0 }?.contains("404") == true)
        // Publishing and consuming still work after the reconnect.
        try await client.publish(exchange: exchange, routingKey: "k", body: [7], messageID: "after-refusal")
        let working = Collector(client.consume(queue: queue, prefetch: 1))
        do {
            try await waitUntil("the delivery after the refusal") { working.count == 1 }
        } catch {
            Issue.record("\(error); consumer ended with: \(working.failure.withLock { $0 } ?? "nothing"); queue: \(try await client.inspect(queue: queue))")
            throw error
        }
        #expect(working.all.first?.messageID == "after-refusal")
        try await working.all[0].ack()
        working.stop()
        try await client.delete(queue: queue)
        await client.close()
    }
}
