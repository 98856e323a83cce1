import Foundation
import Store
import TestSupport

/// A link profile: the round trip the delay proxy adds and the rate tbf shapes the link to (nil: no cap).
public struct LinkProfile: Sendable, Codable, Equatable {
    public var name: String
    public var rttMs: Double
    public var rateMbit: Double?

    public init(name: String, rttMs: Double, rateMbit: Double? = nil) {
        self.name = name
        self.rttMs = rttMs
        self.rateMbit = rateMbit
    }

    public static let rtt50 = LinkProfile(name: "50 ms RTT", rttMs: 50)
    public static let rtt150Rate50 = LinkProfile(name: "150 ms RTT, 50 Mbit/s", rttMs: 150, rateMbit: 50)
    public static let rtt300Rate10 = LinkProfile(name: "300 ms RTT, 10 Mbit/s", rttMs: 300, rateMbit: 10)
}

/// Bytes that crossed a remote host's link, from the delay proxy's counts per forwarded port.
public struct LinkBytes: Sendable, Codable, Equatable {
    /// Replication, origin to relay.
    public var toRelay: Int64 = 0
    /// The workers' reads of the origin Redis (run state, heartbeats, and checkpoints when they fall back).
    public var redisToRemote: Int64 = 0
    public var redisFromRemote: Int64 = 0
    /// AMQP both ways (tasks in, groups out).
    public var amqpToRemote: Int64 = 0
    public var amqpFromRemote: Int64 = 0

    public static func - (a: LinkBytes, b: LinkBytes) -> LinkBytes {
        LinkBytes(toRelay: a.toRelay - b.toRelay, redisToRemote: a.redisToRemote - b.redisToRemote, redisFromRemote: a.redisFromRemote - b.redisFromRemote,
                  amqpToRemote: a.amqpToRemote - b.amqpToRemote, amqpFromRemote: a.amqpFromRemote - b.amqpFromRemote)
    }
}

public struct NetLabError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// `scripts/netlab.sh` as a child of the harness: one remote host (a network namespace) behind a link of the given
/// profile, the brokers reached through its delay proxy, and optionally a Redis relay (a replica of the origin, with
/// compose's relay configuration and ACL) on the remote host. Test equipment; needs root.
public final class NetLab: Sendable {
    public let profile: LinkProfile
    public let namespace: String
    /// The link's central end, where the proxy listens for the brokers' ports.
    public let central: String
    public let amqpPort: Int
    public let redisPort: Int
    /// The checkpoint Redis's port (`checkpoints.redis_url`), when checkpoints live apart from the run's Redis.
    public let checkpointPort: Int?
    /// The relay's rollout user's password; nil without a relay.
    let relayPassword: String?
    let relayPort: Int?
    let stats: String
    let process: LaunchedProcess

    let tag: String

    init(profile: LinkProfile, namespace: String, central: String, amqpPort: Int, redisPort: Int, checkpointPort: Int?, relayPassword: String?,
         relayPort: Int?, stats: String, process: LaunchedProcess, tag: String) {
        self.profile = profile
        self.namespace = namespace
        self.central = central
        self.amqpPort = amqpPort
        self.redisPort = redisPort
        self.checkpointPort = checkpointPort
        self.tag = tag
        self.relayPassword = relayPassword
        self.relayPort = relayPort
        self.stats = stats
        self.process = process
    }

    /// Why namespaces cannot be made here, or nil when they can (root, and `ip netns add` works).
    public static func unavailableReason() -> String? {
        guard geteuid() == 0 else { return "network namespaces need root" }
        let probe = "tnl-probe-\(getpid())"
        guard let (status, output) = try? runCommand(["ip", "netns", "add", probe]) else { return "ip (iproute2) is missing" }
        _ = try? runCommand(["ip", "netns", "delete", probe])
        guard status == 0 else { return "ip netns add failed: \(output.trimmingCharacters(in: .whitespacesAndNewlines))" }
        guard (try? runCommand(["tc", "-V"]))?.status == 0 else { return "tc (iproute2) is missing" }
        return nil
    }

    /// Starts the lab for brokers on 127.0.0.1 (`amqpPort`, `redisPort`, and `checkpointPort` when checkpoints live in
    /// a Redis of their own); with `relay`, adds the `replica` user to the Redis the relay replicates (`origin`: the
    /// checkpoint Redis, else the run's; ACL SETUSER, as compose/redis/users.acl has it) and a relay on the remote host.
    public static func start(profile: LinkProfile, amqpPort: Int, redisPort: Int, checkpointPort: Int? = nil, relay: Bool, logs: URL,
                             origin: RedisClient) async throws -> NetLab {
        let tag = "d\(getpid() % 100_000)"
        let state = logs.appendingPathComponent("netlab")
        try? FileManager.default.removeItem(at: state)
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        var arguments = ["--name", tag, "--hosts", "1", "--rtt", "\(Int(profile.rttMs * 1000))us", "--net", "10.231.\(getpid() % 250)",
                         "--forward", String(amqpPort), "--forward", String(redisPort), "--state", state.path]
        if let checkpointPort { arguments += ["--forward", String(checkpointPort)] }
        if let rate = profile.rateMbit { arguments += ["--rate", "\(Int(rate * 1000))kbit"] }
        var environment: [String: String] = [:]
        var relayPassword: String?
        if relay {
            let passwords = (0..<3).map { _ in String(UInt64.random(in: .min ... .max), radix: 16) }
            environment = ["REDIS_REPLICA_PASSWORD": passwords[0], "REDIS_ROLLOUT_PASSWORD": passwords[1], "REDIS_ADMIN_PASSWORD": passwords[2]]
            relayPassword = passwords[1]
            _ = try await origin.command(["ACL", "SETUSER", "replica", "reset", "on", ">\(passwords[0])", "resetkeys", "resetchannels", "-@all",
                                          "+psync", "+replconf", "+ping"])
            arguments += ["--relays", String(checkpointPort ?? redisPort)]
        }
        let process = try LaunchedProcess("netlab.sh", in: repositoryRoot.appendingPathComponent("scripts"), arguments: arguments,
                                          environment: environment, logPath: logs.appendingPathComponent("netlab.log").path, name: "netlab")
        let ready = state.appendingPathComponent("ready")
        let deadline = ContinuousClock.now + .seconds(90)
        while !FileManager.default.fileExists(atPath: ready.path) {
            if let code = process.poll() { throw NetLabError("scripts/netlab.sh exited with \(code):\n\(process.logTail())") }
            guard ContinuousClock.now < deadline else {
                process.signal(SIGTERM)
                throw NetLabError("scripts/netlab.sh was not ready within 90 s:\n\(process.logTail())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        var values: [String: String] = [:]
        for line in try String(contentsOf: ready, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        guard let namespace = values["NETLAB_NAMESPACE_1"], let central = values["NETLAB_CENTRAL_1"], let stats = values["NETLAB_STATS"] else {
            process.signal(SIGTERM)
            throw NetLabError("scripts/netlab.sh's ready file lacks the remote host: \(values)")
        }
        return NetLab(profile: profile, namespace: namespace, central: central, amqpPort: amqpPort, redisPort: redisPort, checkpointPort: checkpointPort,
                      relayPassword: relayPassword, relayPort: values["NETLAB_RELAY_PORT"].flatMap(Int.init), stats: stats, process: process, tag: tag)
    }

    /// What a process on the remote host is launched with.
    public var wrapper: [String] { ["/usr/sbin/ip", "netns", "exec", namespace] }

    public var hasRelay: Bool { relayPassword != nil }

    /// A rollout worker's arguments on the remote host: the brokers through the link, checkpoints from the relay (or,
    /// without `relay`, from the origin through the link).
    public func rolloutArguments(relay: Bool = true) -> [String] {
        var arguments = ["--amqp.url", "amqp://guest:guest@\(central):\(amqpPort)/", "--redis.url", "redis://\(central):\(redisPort)"]
        if let checkpointPort { arguments += ["--checkpoints.redis_url", "redis://\(central):\(checkpointPort)"] }
        if relay, let relayPassword { arguments += ["--rollout.checkpoint_redis_url", "redis://rollout:\(relayPassword)@127.0.0.1:6379"] }
        return arguments
    }

    /// The proxy's counts so far (it rewrites them every second).
    public func bytes() -> LinkBytes {
        guard let data = FileManager.default.contents(atPath: stats),
              let all = try? JSONSerialization.jsonObject(with: data) as? [String: [String: Int64]] else { return LinkBytes() }
        var bytes = LinkBytes()
        for (spec, counts) in all {
            let listen = spec.split(separator: "=").first.map(String.init) ?? ""
            let (to, from) = (counts["to_remote"] ?? 0, counts["from_remote"] ?? 0)
            if let relayPort, listen.hasSuffix(":\(relayPort)") {
                bytes.toRelay += to
            } else if listen.hasSuffix(":\(redisPort)") || checkpointPort.map({ listen.hasSuffix(":\($0)") }) == true {
                bytes.redisToRemote += to
                bytes.redisFromRemote += from
            } else if listen.hasSuffix(":\(amqpPort)") {
                bytes.amqpToRemote += to
                bytes.amqpFromRemote += from
            }
        }
        return bytes
    }

    /// Tears the lab down (netlab.sh removes the namespace, the link, the proxy and the relay on SIGTERM).
    public func stop() {
        process.signal(SIGTERM)
        if process.blockingWaitForExit(within: 30) == nil {
            process.signal(SIGKILL)
            _ = try? runCommand(["bash", repositoryRoot.appendingPathComponent("scripts/netlab.sh").path, "down", "--name", tag])
        }
    }
}

/// A Redis of the harness's own (scripts/brokers.sh on a free port, state under `directory`): the checkpoint Redis of a
/// run whose checkpoints live apart from its state.
public final class PrivateRedis: Sendable {
    public let port: Int
    let environment: [String: String]

    init(port: Int, environment: [String: String]) {
        self.port = port
        self.environment = environment
    }

    public var url: String { "redis://127.0.0.1:\(port)" }
    public var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: port) }

    public static func start(in directory: URL) throws -> PrivateRedis {
        let server = PrivateRedis(port: try freeLoopbackPorts(1)[0], environment: ["TRIBUTARY_STATE_DIR": directory.path])
        let (status, output) = try server.brokers("start")
        guard status == 0 else { throw NetLabError("scripts/brokers.sh start redis on port \(server.port) failed: \(output)") }
        return server
    }

    public func stop() { _ = try? brokers("stop") }

    private func brokers(_ command: String) throws -> (status: Int32, output: String) {
        try runCommand(["bash", repositoryRoot.appendingPathComponent("scripts/brokers.sh").path, command, "redis"],
                       environment: environment.merging(["TRIBUTARY_REDIS_PORT": String(port)]) { $1 })
    }
}
