import Foundation
import Messaging
import Store
import TestSupport

/// The chaos harness's own RabbitMQ and Redis (scripts/brokers.sh on free ports, state under `state`): the faults kill
/// them with -9, so they must never be the brokers other tests or engineers use. Besides 127.0.0.1 they listen on the
/// host end of the worker jail's veth, and RabbitMQ checks consumer timeouts every second (its default tick is a
/// minute, which would hide a short timeout behind the tick).
///
/// With `clusterNodes`, RabbitMQ is a cluster of that many nodes (`scripts/brokers.sh cluster`): services get every
/// node's URL in `amqp.url`, and a fault may kill one node (`killClusterNode`).
public final class ChaosBrokers: Sendable {
    public let state: URL
    public let amqpPort: Int, redisPort: Int, epmdPort: Int, distPort: Int
    public let nodeName: String
    /// The jail's host address, where a jailed worker reaches both brokers; nil without a jail.
    public let jailHost: String?
    /// A user that may log in from the jail (guest may only log in from loopback).
    public static let jailUser = "chaos"
    /// The cluster's nodes, in `amqp.url`'s order; empty when RabbitMQ is one node.
    public let clusterNodes: [ClusterNode]

    /// `ports`: AMQP, Redis, epmd and distribution (node 1's AMQP and distribution ports for a cluster).
    init(state: URL, ports: [Int], nodeName: String, jailHost: String?, clusterNodes: [ClusterNode] = []) {
        self.state = state
        (amqpPort, redisPort, epmdPort, distPort) = (ports[0], ports[1], ports[2], ports[3])
        self.nodeName = nodeName
        self.jailHost = jailHost
        self.clusterNodes = clusterNodes
    }

    /// One URL, or every cluster node's, comma-separated (what `amqp.url` takes).
    public var amqpURL: String {
        let ports = clusterNodes.isEmpty ? [amqpPort] : clusterNodes.map(\.amqpPort)
        return ports.map { "amqp://guest:guest@127.0.0.1:\($0)/" }.joined(separator: ",")
    }
    public var redisURL: String { "redis://127.0.0.1:\(redisPort)" }
    /// One broker, or the cluster's nodes.
    public var amqpEndpoints: [AMQPEndpoint] { get throws { try AMQPEndpoint.list(amqpURL) } }
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
        if let first = clusterNodes.first {
            environment["TRIBUTARY_CLUSTER_AMQP_PORTS"] = clusterNodes.map { String($0.amqpPort) }.joined(separator: ",")
            environment["TRIBUTARY_CLUSTER_DIST_PORTS"] = clusterNodes.map { String($0.distPort) }.joined(separator: ",")
            environment["TRIBUTARY_CLUSTER_NODENAME"] = first.prefix
        }
        if let jailHost {
            environment["TRIBUTARY_AMQP_CONF_EXTRA"] = "listeners.tcp.jail = \(jailHost):\(amqpPort)"
            environment["TRIBUTARY_REDIS_BIND"] = "127.0.0.1 \(jailHost)"
        }
        return environment
    }

    var controlEnvironment: [String: String] {
        // as scripts/brokers.sh runs the node: its cookie lives in the state folder, epmd on a private port (a cluster: node 1)
        let home = clusterNodes.first.map { rabbitDirectory(of: $0).path } ?? state.appendingPathComponent("rabbitmq").path
        return ["HOME": home, "RABBITMQ_NODENAME": clusterNodes.first?.name ?? nodeName, "ERL_EPMD_PORT": String(epmdPort)]
    }

    /// Stops what an interrupted harness of the same `state` left (by the ports it recorded), then starts both brokers:
    /// RabbitMQ as one node, or as a cluster of `clusterNodes` nodes.
    public static func start(state: URL, jailHost: String?, clusterNodes nodeCount: Int = 0) throws -> ChaosBrokers {
        if let old = RecordedPorts.read(in: state) {
            let ports = ["AMQP_PORT", "REDIS_PORT", "EPMD_PORT", "DIST_PORT"].compactMap { old[$0].flatMap(Int.init) }
            let amqp = (old["CLUSTER_AMQP_PORTS"] ?? "").split(separator: ",").compactMap { Int($0) }
            let dist = (old["CLUSTER_DIST_PORTS"] ?? "").split(separator: ",").compactMap { Int($0) }
            let nodes = amqp.count == dist.count ? ClusterNode.nodes(prefix: old["CLUSTER_PREFIX"] ?? "", amqpPorts: amqp, distPorts: dist) : []
            if ports.count == 4 { ChaosBrokers(state: state, ports: ports, nodeName: old["NODE"] ?? "", jailHost: nil, clusterNodes: nodes).stop() }
        }
        try? FileManager.default.removeItem(at: state)
        let brokers: ChaosBrokers
        if nodeCount > 0 {
            guard jailHost == nil else { throw ChaosError("the worker jail is not wired to a RabbitMQ cluster") }
            // Redis, epmd, then every node's AMQP and distribution ports
            let ports = try freeLoopbackPorts(2 + 2 * nodeCount)
            let nodes = ClusterNode.nodes(prefix: "tributary-chaos-\(getpid())", amqpPorts: Array(ports[2..<(2 + nodeCount)]),
                                          distPorts: Array(ports[(2 + nodeCount)...]))
            brokers = ChaosBrokers(state: state, ports: [nodes[0].amqpPort, ports[0], ports[1], nodes[0].distPort], nodeName: nodes[0].name,
                                   jailHost: nil, clusterNodes: nodes)
        } else {
            brokers = ChaosBrokers(state: state, ports: try freeLoopbackPorts(4), nodeName: "tributary-chaos-\(getpid())@localhost", jailHost: jailHost)
        }
        try RecordedPorts.write(["AMQP_PORT": String(brokers.amqpPort), "REDIS_PORT": String(brokers.redisPort), "EPMD_PORT": String(brokers.epmdPort),
                                 "DIST_PORT": String(brokers.distPort), "NODE": brokers.nodeName,
                                 "CLUSTER_AMQP_PORTS": brokers.clusterNodes.map { String($0.amqpPort) }.joined(separator: ","),
                                 "CLUSTER_DIST_PORTS": brokers.clusterNodes.map { String($0.distPort) }.joined(separator: ","),
                                 "CLUSTER_PREFIX": brokers.clusterNodes.first?.prefix ?? ""], in: state)
        try brokers.script(brokers.clusterNodes.isEmpty ? ["start"] : ["cluster", "start"])
        try brokers.afterRabbitMQStart()
        try brokers.afterRedisStart()
        return brokers
    }

    private func script(_ arguments: String...) throws { try script(arguments) }

    private func script(_ arguments: [String]) throws {
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

    /// Where scripts/brokers.sh keeps a cluster node's state (its pid file, cookie, logs).
    func rabbitDirectory(of node: ClusterNode) -> URL { state.appendingPathComponent("cluster/node-\(node.index)/rabbitmq") }

    /// kill -9 of one cluster node's Erlang VM; returns once it is gone. Its pid file goes with it, so that nothing
    /// later kills whatever process is given that pid next.
    public func killClusterNode(_ node: ClusterNode) throws {
        let pidFile = rabbitDirectory(of: node).appendingPathComponent("rabbitmq.pid")
        guard let pid = runningProcess(pidFile: pidFile) else { throw ChaosError("cluster node \(node.name) is not running (no live pid in \(pidFile.path))") }
        try killAndAwait(pid, "RabbitMQ node \(node.name)")
        try? FileManager.default.removeItem(at: pidFile)
    }

    /// Starts every cluster node that is down again on its state (`scripts/brokers.sh cluster start`): it rejoins its
    /// cluster by itself. Returns the members node 1 sees running.
    public func restartClusterNodes() throws -> String {
        try script(["cluster", "start", "rabbitmq"])
        return try rabbitmqctl(["-q", "eval", "rabbit_nodes:all_running()."])
    }

    /// kill -9 of the broker's Erlang VM, as a crash or the OOM killer would; returns once it is gone.
    public func killRabbitMQ() throws {
        guard clusterNodes.isEmpty else { throw ChaosError("fault 5 restarts a single RabbitMQ; on a cluster, kill a node (fault 14)") }
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
        guard clusterNodes.isEmpty else { throw ChaosError("fault 5 restarts a single RabbitMQ, and these brokers are a cluster") }
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
        let nodePIDFiles = clusterNodes.map { rabbitDirectory(of: $0).appendingPathComponent("rabbitmq.pid") }
        if nodePIDFiles.contains(where: { runningProcess(pidFile: $0) != nil }) {
            _ = try? runCommand([repositoryRoot.appendingPathComponent("scripts/brokers.sh").path, "cluster", "stop", "rabbitmq"], environment: scriptEnvironment)
        }
        if clusterNodes.isEmpty, runningProcess(pidFile: rabbitPIDFile) != nil {
            _ = try? runCommand([repositoryRoot.appendingPathComponent("scripts/brokers.sh").path, "stop", "rabbitmq"], environment: scriptEnvironment)
        }
        if let pid = runningProcess(pidFile: redisPIDFile) {
            kill(pid, SIGKILL)
        }
    }
}

/// One node of a RabbitMQ cluster as scripts/brokers.sh runs it: node `index` (1-based) is `PREFIX-INDEX@localhost`.
public struct ClusterNode: Sendable, Equatable {
    public var index: Int
    public var prefix: String
    public var amqpPort: Int
    public var distPort: Int
    public var name: String { "\(prefix)-\(index)@localhost" }

    static func nodes(prefix: String, amqpPorts: [Int], distPorts: [Int]) -> [ClusterNode] {
        zip(amqpPorts, distPorts).enumerated().map { ClusterNode(index: $0.offset + 1, prefix: prefix, amqpPort: $0.element.0, distPort: $0.element.1) }
    }
}

/// The harness could not set up or inject a fault (not a finding about the system under test).
public struct ChaosError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
