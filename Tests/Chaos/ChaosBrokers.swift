import Foundation
import Messaging
import Store
import TestSupport

/// The chaos harness's own RabbitMQ and Redis (scripts/brokers.sh on free ports, state under `state`): the faults kill
/// them with -9, so they must never be the brokers other tests or engineers use. Besides 127.0.0.1 they listen on the
/// host end of the worker jail's veth, and RabbitMQ checks consumer timeouts every second (its default tick is a
/// minute, which would hide a short timeout behind the tick).
public final class ChaosBrokers: Sendable {
    public let state: URL
    public let amqpPort: Int, redisPort: Int, epmdPort: Int, distPort: Int
    public let nodeName: String
    /// The jail's host address, where a jailed worker reaches both brokers; nil without a jail.
    public let jailHost: String?
    /// A user that may log in from the jail (guest may only log in from loopback).
    public static let jailUser = "chaos"

    init(state: URL, ports: [Int], nodeName: String, jailHost: String?) {
        self.state = state
        (amqpPort, redisPort, epmdPort, distPort) = (ports[0], ports[1], ports[2], ports[3])
        self.nodeName = nodeName
        self.jailHost = jailHost
    }

    public var amqpURL: String { "amqp://guest:guest@127.0.0.1:\(amqpPort)/" }
    public var redisURL: String { "redis://127.0.0.1:\(redisPort)" }
    public var amqpEndpoint: AMQPEndpoint { get throws { try AMQPEndpoint(url: amqpURL) } }
    public var redisEndpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: redisPort) }
    /// What every service of the harness gets: these brokers.
    public var serviceEnvironment: [String: String] { ["TRIBUTARY_AMQP_URL": amqpURL, "TRIBUTARY_REDIS_URL": redisURL] }
    /// The same brokers as seen from inside the jail.
    public var jailedEnvironment: [String: String] {
        guard let host = jailHost else { return serviceEnvironment }
        return ["TRIBUTARY_AMQP_URL": "amqp://\(Self.jailUser):\(Self.jailUser)@\(host):\(amqpPort)/", "TRIBUTARY_REDIS_URL": "redis://\(host):\(redisPort)"]
    }

    var scriptEnvironment: [String: String] {
        var environment = ["TRIBUTARY_STATE_DIR": state.path, "TRIBUTARY_AMQP_PORT": String(amqpPort), "TRIBUTARY_REDIS_PORT": String(redisPort),
                           "TRIBUTARY_EPMD_PORT": String(epmdPort), "TRIBUTARY_AMQP_DIST_PORT": String(distPort),
                           "TRIBUTARY_AMQP_NODENAME": nodeName,
                           "TRIBUTARY_AMQP_ADVANCED_CONFIG": "[{rabbit, [{channel_tick_interval, 1000}]}]."]
        if let jailHost {
            environment["TRIBUTARY_AMQP_CONF_EXTRA"] = "listeners.tcp.jail = \(jailHost):\(amqpPort)"
            environment["TRIBUTARY_REDIS_BIND"] = "127.0.0.1 \(jailHost)"
        }
        return environment
    }

    var controlEnvironment: [String: String] {
        // as scripts/brokers.sh runs the node: its cookie lives in the state folder, epmd on a private port
        ["HOME": state.appendingPathComponent("rabbitmq").path, "RABBITMQ_NODENAME": nodeName, "ERL_EPMD_PORT": String(epmdPort)]
    }

    /// Stops what an interrupted harness of the same `state` left (by the ports it recorded), then starts both brokers.
    public static func start(state: URL, jailHost: String?) throws -> ChaosBrokers {
        if let old = RecordedPorts.read(in: state) {
            let ports = ["AMQP_PORT", "REDIS_PORT", "EPMD_PORT", "DIST_PORT"].compactMap { old[$0].flatMap(Int.init) }
            if ports.count == 4 { ChaosBrokers(state: state, ports: ports, nodeName: old["NODE"] ?? "", jailHost: nil).stop() }
        }
        try? FileManager.default.removeItem(at: state)
        let brokers = ChaosBrokers(state: state, ports: try freeLoopbackPorts(4), nodeName: "tributary-chaos-\(getpid())@localhost", jailHost: jailHost)
        try RecordedPorts.write(["AMQP_PORT": String(brokers.amqpPort), "REDIS_PORT": String(brokers.redisPort), "EPMD_PORT": String(brokers.epmdPort),
                                 "DIST_PORT": String(brokers.distPort), "NODE": brokers.nodeName], in: state)
        try brokers.script("start")
        try brokers.afterRabbitMQStart()
        try brokers.afterRedisStart()
        return brokers
    }

    private func script(_ arguments: String...) throws {
        let (status, output) = try runCommand([repositoryRoot.appendingPathComponent("scripts/brokers.sh").path] + arguments, environment: scriptEnvironment)
        guard status == 0 else { throw ChaosError("scripts/brokers.sh \(arguments.joined(separator: " ")) exited \(status):\n\(output)") }
    }

    func rabbitmqctl(_ arguments: [String]) throws -> String {
        let (status, output) = try runCommand(["/usr/lib/rabbitmq/bin/rabbitmqctl"] + arguments, environment: controlEnvironment)
        guard status == 0 else { throw ChaosError("rabbitmqctl \(arguments.joined(separator: " ")) exited \(status):\n\(output)") }
        return output
    }

    /// The jail's user; kept in the node's database, so once is enough, but it costs nothing to check after a restart.
    private func afterRabbitMQStart() throws {
        guard jailHost != nil else { return }
        if !(try rabbitmqctl(["-q", "list_users"])).contains(Self.jailUser) {
            _ = try rabbitmqctl(["-q", "add_user", Self.jailUser, Self.jailUser])
            _ = try rabbitmqctl(["-q", "set_permissions", "-p", "/", Self.jailUser, ".*", ".*", ".*"])
        }
    }

    /// Redis 7 refuses clients from outside loopback while the default user has no password (protected mode); the
    /// jail is a private link of this machine, so the harness's Redis lets it in (again after every restart).
    private func afterRedisStart() throws {
        guard jailHost != nil else { return }
        let (status, output) = try runCommand(["redis-cli", "-p", String(redisPort), "config", "set", "protected-mode", "no"])
        guard status == 0 else { throw ChaosError("redis-cli config set protected-mode no: \(output)") }
    }

    var rabbitPIDFile: URL { state.appendingPathComponent("rabbitmq/rabbitmq.pid") }
    var redisPIDFile: URL { state.appendingPathComponent("redis/redis.pid") }

    /// kill -9 of the broker's Erlang VM, as a crash or the OOM killer would; returns once it is gone.
    public func killRabbitMQ() throws {
        guard let pid = runningProcess(pidFile: rabbitPIDFile) else { throw ChaosError("RabbitMQ is not running (no live pid in \(rabbitPIDFile.path))") }
        try killAndAwait(pid, "RabbitMQ")
    }

    public func killRedis() throws {
        guard let pid = runningProcess(pidFile: redisPIDFile) else { throw ChaosError("Redis is not running (no live pid in \(redisPIDFile.path))") }
        try killAndAwait(pid, "Redis")
    }

    private func killAndAwait(_ pid: pid_t, _ what: String) throws {
        kill(pid, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(30)
        // not our child: gone once kill(pid, 0) fails (init reaps it)
        while kill(pid, 0) == 0 {
            guard ContinuousClock.now < deadline else { throw ChaosError("\(what) (pid \(pid)) outlived SIGKILL for 30 s") }
            usleep(20_000)
        }
    }

    /// Starts RabbitMQ again on the same state (its durable queues and persistent messages come back).
    public func restartRabbitMQ() throws {
        try script("start", "rabbitmq")
        try afterRabbitMQStart()
    }

    /// Starts Redis again on the same state (it replays its append-only file).
    public func restartRedis() throws {
        try script("start", "redis")
        try afterRedisStart()
    }

    /// RabbitMQ's consumer (delivery acknowledgement) timeout for channels opened from now on. 3.10 reads it from the
    /// application environment (rabbitmq.conf `consumer_timeout`); per-queue `x-consumer-timeout` only came in 3.12.
    public func setConsumerTimeout(milliseconds: Int) throws {
        _ = try rabbitmqctl(["-q", "eval", "application:set_env(rabbit, consumer_timeout, \(milliseconds))."])
    }

    /// RabbitMQ's default: 30 minutes.
    public func resetConsumerTimeout() throws { try setConsumerTimeout(milliseconds: 1_800_000) }

    /// Stops both (RabbitMQ only through its own node: a recorded port of a dead node may be someone else's by now).
    public func stop() {
        if runningProcess(pidFile: rabbitPIDFile) != nil {
            _ = try? runCommand([repositoryRoot.appendingPathComponent("scripts/brokers.sh").path, "stop", "rabbitmq"], environment: scriptEnvironment)
        }
        if let pid = runningProcess(pidFile: redisPIDFile) {
            kill(pid, SIGKILL)
        }
    }
}

/// The harness could not set up or inject a fault (not a finding about the system under test).
public struct ChaosError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
