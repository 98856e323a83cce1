import ArgumentParser
import Foundation
import Logging
import Messaging
import Checkpoints
import Config
import Runtime
import Store
import Wire

/// Where the brokers are and which run a command is about; the same names as the services' settings.
struct ControlOptions: ParsableArguments {
    // The services' setting names (--run.id, --amqp.url, ...); the short forms are kept as aliases and shown in --help.
    @Option(name: [.customLong("run.id"), .customLong("run")],
            help: ArgumentHelp("Run id (default: TRIBUTARY_RUN_ID, else \"default\").", valueName: "id"))
    var run: String?

    @Option(name: [.customLong("amqp.url"), .customLong("amqp-url")],
            help: ArgumentHelp("RabbitMQ URL, or a cluster's URLs separated by commas (default: TRIBUTARY_AMQP_URL, else \(AMQPEndpoint.defaultURL)).", valueName: "url"))
    var amqpURL: String?

    @Option(name: [.customLong("redis.url"), .customLong("redis-url")],
            help: ArgumentHelp("Redis URL (default: TRIBUTARY_REDIS_URL, else \(RedisEndpoint.defaultURL)).", valueName: "url"))
    var redisURL: String?

    @Option(name: [.customLong("checkpoints.redis_url"), .customLong("checkpoints-redis-url")],
            help: ArgumentHelp("Redis holding the run's checkpoints, when not the run's Redis (default: TRIBUTARY_CHECKPOINTS_REDIS_URL, else --redis.url).",
                               valueName: "url"))
    var checkpointsRedisURL: String?

    @Option(name: [.customLong("queue.type"), .customLong("queue-type")],
            help: ArgumentHelp("Queue type the run's learner declares: classic or quorum (default: TRIBUTARY_QUEUE_TYPE, else classic); the CLI declares nothing.",
                               valueName: "type"))
    var queueType: String?

    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    var runID: String { run ?? Self.environment["TRIBUTARY_RUN_ID"] ?? "default" }
    var resolvedAMQPURL: String { amqpURL ?? Self.environment[AMQPEndpoint.environmentVariable] ?? AMQPEndpoint.defaultURL }
    var resolvedRedisURL: String { redisURL ?? Self.environment[RedisEndpoint.environmentVariable] ?? RedisEndpoint.defaultURL }
    /// nil: checkpoints are in the run's Redis.
    var resolvedCheckpointsRedisURL: String? { (checkpointsRedisURL ?? Self.environment["TRIBUTARY_CHECKPOINTS_REDIS_URL"]).flatMap { $0.isEmpty ? nil : $0 } }

    func resolvedQueueType() throws -> QueueType {
        let text = queueType ?? Self.environment["TRIBUTARY_QUEUE_TYPE"] ?? "classic"
        guard let type = QueueType(rawValue: text) else { throw ValidationError("--queue.type '\(text)' must be classic or quorum") }
        return type
    }

    func validate() throws {
        _ = try resolvedQueueType()
        guard !runID.isEmpty, runID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw ValidationError("run id '\(runID)' must be letters, digits, - or _")
        }
    }
}

/// What went wrong, in one sentence an operator can act on.
struct ControlError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// The CLI's connections for one run. AMQP is opened only by commands that need it.
final class ControlSession: Sendable {
    let names: Names
    let redis: RedisClient
    /// Where the run's checkpoints are: `redis` unless --checkpoints.redis_url names another.
    let checkpointRedis: RedisClient
    let amqp: AMQPClient?
    let instance: String

    private init(names: Names, redis: RedisClient, checkpointRedis: RedisClient, amqp: AMQPClient?, instance: String) {
        self.names = names
        self.redis = redis
        self.checkpointRedis = checkpointRedis
        self.amqp = amqp
        self.instance = instance
    }

    /// Connects to Redis, and to RabbitMQ when `amqp` is true. It declares nothing: only the run's learner does (the
    /// control user may not), so before a learner ran the run's queues are absent and commands say so.
    static func open(_ options: ControlOptions, run: String? = nil, amqp useAMQP: Bool) async throws -> ControlSession {
        let names = Names(run: run ?? options.runID)
        let instance = "control-\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let redisEndpoint: RedisEndpoint
        do { redisEndpoint = try RedisEndpoint(url: options.resolvedRedisURL) } catch { throw ControlError("\(error)") }
        var redisOptions = RedisConnection.Options()
        redisOptions.connectTimeout = .seconds(5)
        redisOptions.reconnectAttempts = 2
        let redis = RedisClient(endpoint: redisEndpoint, options: redisOptions)
        do { try await redis.connect() } catch {
            throw ControlError("cannot reach Redis at \(redisEndpoint): \(error)")
        }
        var checkpointRedis = redis
        if let url = options.resolvedCheckpointsRedisURL {
            let endpoint: RedisEndpoint
            do { endpoint = try RedisEndpoint(url: url) } catch { throw ControlError("--checkpoints.redis_url: \(error)") }
            checkpointRedis = RedisClient(endpoint: endpoint, options: redisOptions)
            do { try await checkpointRedis.connect() } catch {
                throw ControlError("cannot reach the checkpoint Redis at \(endpoint): \(error)")
            }
        }
        var client: AMQPClient?
        if useAMQP {
            let endpoints: [AMQPEndpoint]
            do { endpoints = try AMQPEndpoint.list(options.resolvedAMQPURL) } catch { throw ControlError("\(error)") }
            let amqp = AMQPClient(endpoints: endpoints, name: instance, logger: quietLogger())
            do { try await amqp.connect() } catch {
                throw ControlError("cannot reach RabbitMQ at \(AMQPEndpoint.describe(endpoints)): \(error)")
            }
            client = amqp
        }
        return ControlSession(names: names, redis: redis, checkpointRedis: checkpointRedis, amqp: client, instance: instance)
    }

    func close() async {
        await amqp?.close()
        redis.close()
        if checkpointRedis !== redis { checkpointRedis.close() }
    }

    /// Publishes a control command with mandatory routing: throws when no service is bound to `routingKey`.
    /// `runID` empty addresses every run's services.
    func send(_ command: ControlCommand.OneOf_Command, routingKey: String, runID: String? = nil) async throws -> ControlCommand {
        guard let amqp else { throw ControlError("internal: AMQP not opened") }
        var message = ControlCommand()
        message.envelope = Envelope(runID: runID ?? names.run, role: "control", instance: instance)
        message.command = command
        try await amqp.publish(exchange: Names.controlExchange, routingKey: routingKey, body: try message.encoded(), messageID: message.messageID,
                               headers: ["run": .string(message.envelope.runID), "sender": .string(instance)], mandatory: true)
        return message
    }

    // MARK: Reading Redis

    func state() async throws -> [String: String] {
        try await redis.hgetall(names.stateKey).mapValues { String(decoding: $0, as: UTF8.self) }
    }

    func counters() async throws -> [String: String] {
        try await redis.hgetall(names.countersKey).mapValues { String(decoding: $0, as: UTF8.self) }
    }

    /// Live instances of the run, from their heartbeat keys (they expire 10 s after the last beat).
    func heartbeats() async throws -> [StatusBoard.Snapshot] {
        let keys = try await redis.scanKeys(matching: names.heartbeatPattern).sorted()
        guard !keys.isEmpty else { return [] }
        let replies = try await redis.pipeline(keys.map { ["GET", $0] })
        let decoder = JSONDecoder()
        return replies.compactMap { reply in reply.bytes.flatMap { try? decoder.decode(StatusBoard.Snapshot.self, from: Data($0)) } }
            .sorted { ($0.role, $0.instance) < ($1.role, $1.instance) }
    }

    /// The run's settings as the learner stored them (nil before the first StartRun).
    func runConfig() async throws -> (settings: Settings, config: RunConfig)? {
        guard let toml = try await state()["config"], !toml.isEmpty else { return nil }
        let settings = try Settings.fromTOML(toml, specs: RunConfig.settings, source: "\(names.stateKey) config")
        return (settings, try RunConfig(settings))
    }
}

/// The CLI reports errors itself; the AMQP client's reconnect chatter would only add noise.
func quietLogger() -> Logger {
    var logger = Logger(label: "tributary.control")
    logger.logLevel = .error
    return logger
}

/// Runs `body` with a session and closes it whatever happens.
func withSession<T>(_ options: ControlOptions, run: String? = nil, amqp: Bool, _ body: (ControlSession) async throws -> T) async throws -> T {
    let session = try await ControlSession.open(options, run: run, amqp: amqp)
    do {
        let result = try await body(session)
        await session.close()
        return result
    } catch {
        await session.close()
        throw error
    }
}

/// Process-wide helpers for output.
enum Output {
    static var isTerminal: Bool { isatty(STDOUT_FILENO) != 0 }

    static func json(_ object: Any) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    static func warn(_ text: String) {
        FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
    }

    static func table(_ header: [String], _ rows: [[String]], indent: String = "  ") -> String {
        let widths = header.indices.map { column in ([header] + rows).map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return ([header] + rows).map { row in
            indent + row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func seconds(_ value: Double) -> String {
        value < 60 ? String(format: "%.1fs", value) : value < 3600 ? String(format: "%.0fm%02.0fs", (value / 60).rounded(.down), value.truncatingRemainder(dividingBy: 60))
            : String(format: "%.1fh", value / 3600)
    }

    static func bytes(_ count: UInt64) -> String {
        let value = Double(count)
        if value >= 1_073_741_824 { return String(format: "%.2f GiB", value / 1_073_741_824) }
        if value >= 1_048_576 { return String(format: "%.2f MiB", value / 1_048_576) }
        if value >= 1024 { return String(format: "%.1f KiB", value / 1024) }
        return "\(count) B"
    }

    static var nowMs: Int64 { WallClock.nowMs() }
}
