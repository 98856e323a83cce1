import Foundation
import Config
import Logging
import Messaging
import Store
import Wire

/// Who a process is: its role and a unique instance name.
public struct ServiceIdentity: Sendable {
    public var role: String
    public var instance: String
}

/// A service's connections to the broker and Redis, and the run's names.
public final class Fabric: Sendable {
    public let names: Names
    public let identity: ServiceIdentity
    public let amqp: AMQPClient
    public let redis: RedisClient
    /// The Redis holding the run's checkpoints (manifests, shards, `latest`, and a copy of the run's format), which relays
    /// replicate; `redis` itself unless `checkpoints.redis_url` names another, so that a relay's link does not also carry
    /// the learner's state (weights, optimizer moments, reference) on every step.
    public let checkpointRedis: RedisClient
    public let logger: Logger
    public let queueType: QueueType

    public static let settings: [Setting] = [
        Setting("amqp.url", AMQPEndpoint.defaultURL, "RabbitMQ URL, or a cluster's nodes' URLs separated by commas (tried in turn on connect and reconnect)"),
        Setting("redis.url", RedisEndpoint.defaultURL, "Redis URL: run state, learner state, logs"),
        Setting("checkpoints.redis_url", "", "Redis holding the run's checkpoints, the one relays replicate (keeps the learner's state off their links); empty: redis.url"),
        Setting("service.instance", "", "instance name (default: ROLE-HOST-PID)"),
        Setting("service.connect_timeout", "120", "seconds to keep retrying the first connection to the brokers", range: .reals(0...86_400)),
        Setting("service.max_message_failures", "5", "a message whose handling failed this many times in this process is dead-lettered with the error",
                range: .integers(1...1000)),
        Setting("metrics.port", "0", "Prometheus /metrics port (0: any free port, shown in the heartbeat; -1: off)", range: .integers(-1...65535)),
        Setting("queue.type", "classic", "classic (single broker) or quorum (a cluster of three nodes or more)"),
        Setting("blas.threads", "1", "OpenBLAS threads for this process", range: .integers(1...256)),
        Setting("log.level", "info", "trace, debug, info, notice, warning, error"),
    ]

    /// Only the learner (or an admin, `declaresTopology`) declares the run's exchanges and queues; every other role only
    /// checks they exist, and needs no configure permission on them (compose/rabbitmq/definitions.json gives it none).
    public init(settings: Settings, role: String, runID: String, logger: Logger, declaresTopology: Bool? = nil) throws {
        var instance = try settings.string("service.instance")
        if instance.isEmpty { instance = "\(role)-\(ProcessInfo.processInfo.hostName)-\(getpid())" }
        identity = ServiceIdentity(role: role, instance: instance)
        names = Names(run: runID)
        guard let queueType = QueueType(rawValue: try settings.string("queue.type")) else {
            throw SettingsError(problem: "setting 'queue.type' = '\(try settings.string("queue.type"))' must be classic or quorum")
        }
        self.queueType = queueType
        self.logger = logger
        let topology = names.topology(queueType: queueType)
        amqp = AMQPClient(endpoints: try AMQPEndpoint.list(try settings.string("amqp.url")),
                          topology: (declaresTopology ?? (role == "learner")) ? topology : topology.passive, name: instance, logger: logger)
        redis = RedisClient(endpoint: try RedisEndpoint(url: try settings.string("redis.url")))
        let checkpointURL = try settings.string("checkpoints.redis_url")
        checkpointRedis = checkpointURL.isEmpty ? redis : RedisClient(endpoint: try RedisEndpoint(url: checkpointURL))
    }

    /// Checkpoints live in a Redis of their own (`checkpoints.redis_url`).
    public var checkpointsApart: Bool { checkpointRedis !== redis }

    /// The settings that need no broker to be found wrong (`--dry-run` checks them too): the AMQP URL or list, the
    /// Redis URLs, the queue type.
    public static func validate(_ settings: Settings) throws {
        _ = try AMQPEndpoint.list(try settings.string("amqp.url"))
        _ = try RedisEndpoint(url: try settings.string("redis.url"))
        let checkpoints = try settings.string("checkpoints.redis_url")
        if !checkpoints.isEmpty { _ = try RedisEndpoint(url: checkpoints) }
        guard QueueType(rawValue: try settings.string("queue.type")) != nil else {
            throw SettingsError(problem: "setting 'queue.type' = '\(try settings.string("queue.type"))' must be classic or quorum")
        }
    }

    /// Connects to both, retrying while the brokers come up and while the run's learner has not declared its queues yet.
    /// All at once: over a long link each connection is several round trips.
    public func connect(timeoutSeconds: Double) async throws {
        let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
        async let redisUp: Void = retrying("Redis", until: deadline) { try await self.redis.connect() }
        async let checkpointsUp: Void = retrying("the checkpoint Redis", until: deadline) {
            if self.checkpointsApart { try await self.checkpointRedis.connect() }
        }
        try await retrying("RabbitMQ", until: deadline, giveUpOn: Self.isPermanent) { try await self.amqp.connect() }
        try await redisUp
        try await checkpointsUp
    }

    /// A refused login, a refused declaration (403) or a topology conflict (406) will not fix itself; a queue or exchange
    /// the learner has not declared yet (404) will, and so will a broker that is not up yet.
    public static func isPermanent(_ error: Error) -> Bool {
        guard let error = error as? AMQPError else { return true }
        if case .authenticationRefused = error { return true }
        if case let .declarationFailed(_, code, _) = error { return code != 404 }
        return false
    }

    /// Tries again with backoff (0.2 s doubling to 3 s) until `deadline`, or until an error that will not fix itself.
    private func retrying(_ what: String, until deadline: ContinuousClock.Instant, giveUpOn: (Error) -> Bool = { _ in false },
                          _ attempt: () async throws -> Void) async throws {
        var delay = 0.2
        while true {
            do {
                try await attempt()
                return
            } catch {
                if giveUpOn(error) || ContinuousClock.now > deadline { throw error }
                if case AMQPError.declarationFailed(_, 404, _) = error {
                    logger.warning("waiting for the run's learner to declare its queues and exchanges: \(error)")
                } else {
                    logger.warning("waiting for \(what): \(error)")
                }
                try await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 3)
            }
        }
    }

    public func envelope(messageID: String = UUID().uuidString) -> Envelope {
        Envelope(runID: names.run, role: identity.role, instance: identity.instance, messageID: messageID)
    }

    /// Publishes a message and waits for the broker's confirm.
    /// Work that was cancelled (its delivery handed back by `shutdown`, so already back in its queue) publishes nothing.
    public func publish<M: EnvelopedMessage>(_ message: M, exchange: String, routingKey: String) async throws {
        try Task.checkCancellation()
        try await amqp.publish(exchange: exchange, routingKey: routingKey, body: try message.encoded(), messageID: message.messageID,
                               headers: ["run": .string(names.run), "sender": .string(identity.instance)])
    }

    /// How a dead letter's reason starts when its handling kept failing (not the message's fault: `tributary dead-letters
    /// replay` replays those without --force).
    public static let repeatedFailurePrefix = "failed "

    /// Sends a message it cannot process to the dead-letter exchange with the reason, then acknowledges it:
    /// nothing is lost, and `tributary dead-letters` can list and replay it.
    public func deadLetter(_ delivery: Delivery, reason: String) async {
        logger.error("dead-lettering message \(delivery.messageID ?? "?") from \(delivery.queue): \(reason)")
        do {
            try await amqp.publish(exchange: Names.deadExchange, routingKey: delivery.queue, body: delivery.body,
                                   messageID: delivery.messageID ?? UUID().uuidString,
                                   headers: ["x-tributary-reason": .string(reason), "x-tributary-queue": .string(delivery.queue),
                                             "x-tributary-exchange": .string(delivery.exchange),
                                             "x-tributary-routing-key": .string(delivery.routingKey),
                                             "x-tributary-by": .string(identity.instance)])
            try await delivery.ack()
            try await incrementCounter("dead_lettered")
        } catch {
            // Could not park it: hand it back rather than lose it.
            logger.error("could not dead-letter \(delivery.messageID ?? "?"): \(error); requeueing")
            try? await delivery.nack(requeue: true)
        }
    }

    public func incrementCounter(_ name: String, by amount: Int = 1) async throws {
        _ = try await redis.command(["HINCRBY", names.countersKey, name, String(amount)])
    }

    public func counters() async throws -> [String: Int] {
        try await redis.hgetall(names.countersKey).compactMapValues { Int(String(decoding: $0, as: UTF8.self)) }
    }

    public func close() async {
        await amqp.close()
        redis.close()
        if checkpointsApart { checkpointRedis.close() }
    }
}
