import Foundation
import Messaging

/// `tributary-bench messaging`: AMQP confirmed publish and consume through the real broker, then Redis and zstd.
func runMessagingBench(json: Bool) throws {
    signal(SIGPIPE, SIG_IGN)
    var figures: [(key: String, value: Double)] = try blockingAwait { try await amqpFigures() }
    figures += try benchStoreAndCompression()
    printFigures(title: "messaging (AMQP: \(try AMQPEndpoint.fromEnvironment()), MB = 10^6 bytes)", figures, json: json)
}

private func amqpFigures() async throws -> [(key: String, value: Double)] {
    let queue = "bench.messaging.\(getpid())"
    let topology = Topology(exchanges: [ExchangeSpec("bench.messaging", kind: .direct, durable: true)],
                            queues: [QueueSpec(queue)],
                            bindings: [BindingSpec(queue: queue, exchange: "bench.messaging", routingKey: queue)])
    let client = AMQPClient(endpoint: try .fromEnvironment(), topology: topology, name: "bench")
    try await client.connect()
    var figures: [(key: String, value: Double)] = []

    // Small messages: many publishes in flight, each awaited until confirmed.
    let small = [UInt8](repeating: 0x5A, count: 1024)
    let smallCount = 20_000
    let smallSeconds = try await timed { try await publishMany(client, exchange: "bench.messaging", key: queue, body: small, count: smallCount, inFlight: 512) }
    figures.append(("amqp_publish_confirmed_1k_msgs_per_s", Double(smallCount) / smallSeconds))

    // Consume them back with manual acks and a bounded prefetch.
    let consumeSeconds = try await timed {
        var received = 0
        for try await delivery in client.consume(queue: queue, prefetch: 500) {
            try await delivery.ack()
            received += 1
            if received == smallCount { break }
        }
    }
    figures.append(("amqp_consume_1k_msgs_per_s", Double(smallCount) / consumeSeconds))

    // Large messages (1 MiB): bandwidth through confirmed, persistent publishes.
    let large = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    let largeCount = 200
    let largeSeconds = try await timed { try await publishMany(client, exchange: "bench.messaging", key: queue, body: large, count: largeCount, inFlight: 16) }
    figures.append(("amqp_publish_confirmed_1m_mb_per_s", Double(largeCount * large.count) / 1e6 / largeSeconds))

    try await client.delete(queue: queue)
    await client.close()
    return figures
}

private func publishMany(_ client: AMQPClient, exchange: String, key: String, body: [UInt8], count: Int, inFlight: Int) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<count {
            if index >= inFlight { try await group.next() }
            group.addTask { try await client.publish(exchange: exchange, routingKey: key, body: body) }
        }
        try await group.waitForAll()
    }
}

func timed(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

/// Runs async work from the synchronous benchmark entry points (the main thread is not the cooperative pool).
func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let result = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { result.set(.success(try await body())) } catch { result.set(.failure(error)) }
        done.signal()
    }
    done.wait()
    return try result.get()
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, Error>?
    func set(_ value: Result<T, Error>) { lock.withLock { result = value } }
    func get() throws -> T { try lock.withLock { result! }.get() }
}

/// A table of figures, and with `json` one final line holding them as a JSON object.
func printFigures(title: String, _ figures: [(key: String, value: Double)], extra: [String: String] = [:], json: Bool) {
    print(title)
    let width = figures.map(\.key.count).max() ?? 10
    for (key, value) in figures {
        print("  " + key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + String(format: value >= 100 ? "%.0f" : "%.3f", value))
    }
    if json {
        var object: [String: Any] = [:]
        for (key, value) in figures { object[key] = (value * 1000).rounded() / 1000 }
        for (key, value) in extra { object[key] = value }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
