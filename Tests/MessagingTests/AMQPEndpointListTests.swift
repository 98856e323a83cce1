import Foundation
import Messaging
import TestSupport
import Testing

/// `amqp.url` as a comma-separated list of a cluster's nodes: parsing, its errors, and a client trying the list in turn.
@Suite("AMQP URL lists")
struct AMQPEndpointListTests {
    @Test func oneURLIsAListOfOne() throws {
        #expect(try AMQPEndpoint.list("amqp://u:p@h:5999/runs") == [AMQPEndpoint(host: "h", port: 5999, user: "u", password: "p", vhost: "runs")])
    }

    @Test func severalURLsInOrderWithBlanksAroundCommasIgnored() throws {
        let endpoints = try AMQPEndpoint.list("amqp://u:p@10.0.0.1:5701/, amqp://u:p@10.0.0.2:5702/ ,amqp://u:p@node-3/")
        #expect(endpoints.map(\.host) == ["10.0.0.1", "10.0.0.2", "node-3"])
        #expect(endpoints.map(\.port) == [5701, 5702, 5672])
        #expect(endpoints.allSatisfy { $0.user == "u" && $0.password == "p" && $0.vhost == "/" })
        #expect(AMQPEndpoint.describe(endpoints) == "amqp://u@10.0.0.1:5701/,amqp://u@10.0.0.2:5702/,amqp://u@node-3:5672/")
    }

    @Test func aStrayCommaNamesTheEmptyEntry() {
        #expect(throws: AMQPError.invalidURLList(entry: 2, of: 2, url: "", reason: "empty (a stray comma?)")) {
            try AMQPEndpoint.list("amqp://h:1/,")
        }
        #expect(throws: AMQPError.invalidURLList(entry: 1, of: 1, url: "", reason: "empty (a stray comma?)")) { try AMQPEndpoint.list(" ") }
    }

    @Test func aBadURLIsNamedByItsPlaceInTheList() {
        #expect(throws: AMQPError.invalidURLList(entry: 3, of: 3, url: "http://c:3/", reason: "scheme must be amqp, found http")) {
            try AMQPEndpoint.list("amqp://a:1/,amqp://b:2/,http://c:3/")
        }
        #expect(throws: AMQPError.invalidURLList(entry: 2, of: 2, url: "amqp://", reason: "missing host")) { try AMQPEndpoint.list("amqp://a:1/,amqp://") }
    }

    @Test func everyEntryMustTakeTheSameUserAndVhost() {
        #expect(throws: AMQPError.invalidURLList(entry: 2, of: 2, url: "amqp://v:p@b:2/", reason:
            "logs in as 'v' on vhost '/', entry 1 as 'u' on '/': every broker of a list must take the same user and vhost")) {
            try AMQPEndpoint.list("amqp://u:p@a:1/,amqp://v:p@b:2/")
        }
        #expect(throws: AMQPError.invalidURLList(entry: 2, of: 2, url: "amqp://u:p@b:2/other", reason:
            "logs in as 'u' on vhost 'other', entry 1 as 'u' on '/': every broker of a list must take the same user and vhost")) {
            try AMQPEndpoint.list("amqp://u:p@a:1/,amqp://u:p@b:2/other")
        }
    }

    @Test func aRepeatedBrokerIsRefused() {
        #expect(throws: AMQPError.invalidURLList(entry: 3, of: 3, url: "amqp://a:1", reason: "repeats entry 1 (a:1)")) {
            try AMQPEndpoint.list("amqp://a:1/,amqp://b:1/,amqp://a:1")
        }
    }

    @Test func aSingleURLRefusesAList() throws {
        let text = "amqp://a:1/,amqp://b:2/"
        #expect(throws: AMQPError.invalidURL(text, reason: "a comma separates the URLs of a list, and one URL is expected here (write a comma in a password as %2C)")) {
            try AMQPEndpoint(url: text)
        }
        #expect(try AMQPEndpoint.list("amqp://u:a%2Cb@h/")[0].password == "a,b")
    }

    @Test func theErrorSaysWhichEntryAndWhy() {
        let error = AMQPError.invalidURLList(entry: 2, of: 3, url: "http://b/", reason: "scheme must be amqp, found http")
        #expect(error.description == "invalid AMQP URL list, entry 2 of 3 'http://b/': scheme must be amqp, found http")
    }
}

/// A client given a list, against the private RabbitMQ of scripts/brokers.sh: the same broker listed under two names
/// stands for two nodes, a closed port for a dead one.
@Suite("AMQP client with a list of brokers")
struct AMQPClientListTests {
    let broker: AMQPEndpoint

    init() throws { broker = try AMQPEndpoint.fromEnvironment() }

    /// The broker under a second name, so that a list may hold it twice.
    var alias: AMQPEndpoint {
        var alias = broker
        alias.host = broker.host == "localhost" ? "127.0.0.1" : "localhost"
        return alias
    }

    @Test func aDeadFirstBrokerIsPassedOver() async throws {
        var dead = broker
        dead.port = 1
        let client = AMQPClient(endpoints: [dead, broker], name: "list-dead-first")
        try await client.connect()
        #expect(client.isConnected)
        #expect(client.endpoint == broker)
        await client.close()
    }

    @Test func noBrokerAnsweringNamesEachOne() async throws {
        let first = AMQPEndpoint(host: "127.0.0.1", port: 1), second = AMQPEndpoint(host: "127.0.0.1", port: 2)
        let client = AMQPClient(endpoints: [first, second], name: "list-none")
        await #expect(throws: AMQPError.noBrokerAnswered([
            "127.0.0.1:1: \(AMQPError.connectionRefused(host: "127.0.0.1", port: 1))",
            "127.0.0.1:2: \(AMQPError.connectionRefused(host: "127.0.0.1", port: 2))",
        ])) { try await client.connect() }
    }

    @Test func aBrokerThatAnswersWithARefusalIsTheErrorReported() async throws {
        var wrong = broker
        wrong.password = "not-the-password"
        let client = AMQPClient(endpoints: [AMQPEndpoint(host: "127.0.0.1", port: 1, user: wrong.user), wrong], name: "list-refused")
        await #expect {
            try await client.connect()
        } throws: { error in
            if case .authenticationRefused(let user, _, _) = error as? AMQPError { return user == wrong.user }
            return false
        }
    }

    /// After a lost connection the next broker of the list is tried first, and consuming and publishing carry on there.
    @Test func aLostConnectionMovesToTheNextBroker() async throws {
        let exchange = uniqueName("list.x"), queue = uniqueName("list.q")
        let topology = Topology(exchanges: [ExchangeSpec(exchange, kind: .direct)], queues: [QueueSpec(queue)],
                                bindings: [BindingSpec(queue: queue, exchange: exchange, routingKey: "k")])
        let client = AMQPClient(endpoints: [broker, alias], topology: topology, name: "list-failover", failoverPause: .milliseconds(300))
        try await client.connect()
        #expect(client.endpoint == broker)
        let collector = Collector(client.consume(queue: queue, prefetch: 4))
        try await client.publish(exchange: exchange, routingKey: "k", body: [1])
        try await waitUntil("the first delivery") { collector.count == 1 }
        let lost = ContinuousClock.now
        client.simulateConnectionLoss()
        try await waitUntil("the client to reconnect to the list's second broker") { client.isConnected && client.endpoint == alias }
        #expect(ContinuousClock.now - lost >= .milliseconds(300), "reconnected to another node before its failover pause")
        try await client.publish(exchange: exchange, routingKey: "k", body: [2])
        try await waitUntil("the delivery after the reconnect") { collector.all.contains { $0.body == [2] } }
        try? await client.delete(queue: queue)
        await client.close()
    }
}
