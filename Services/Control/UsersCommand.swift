import ArgumentParser
import Foundation
import Messaging
import Runtime
import Store

struct UsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users", abstract: "Create or delete a run's own broker and Redis users (rollout, reward, broadcaster, control).",
        discussion: """
        The users of compose/ serve every run: a rollout worker given them can reach any run's tasks. `users create RUN` \
        makes RUN.rollout, RUN.reward, RUN.broadcaster, RUN.validator and RUN.control, with each role's rights narrowed to RUN's queues \
        (tributary.RUN.*) and keys (tributary:RUN:*), and prints their URLs with fresh random passwords (shown once; \
        running it again replaces them). The learner keeps its shared user: it declares the run's queues. Needs an \
        administrator: the broker's through its management HTTP API, Redis's through ACL SETUSER. Redis keeps ACL users \
        in memory: after a Redis restart, create them again.
        """,
        subcommands: [Create.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create (or renew) the run's users and print their URLs.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: ArgumentHelp("The run id.", valueName: "run")) var run: String
        @Flag(help: "Print JSON instead of text.") var json = false

        func validate() throws { try admin.validate(run: run) }

        func run() async throws {
            let (amqp, management, redis) = try await admin.connect()
            defer { redis.close() }
            var created: [(user: RunUser, amqpURL: String, redisURL: String)] = []
            for user in RunUser.all(run: run) {
                let password = randomPassword()
                do {
                    try await management.put(["users", user.name], ["password": password, "tags": ""])
                    try await management.put(["permissions", amqp.vhost, user.name],
                                             ["configure": user.configure, "write": user.write, "read": user.read])
                    if let keys = user.deadLetterKeys {
                        try await management.put(["topic-permissions", amqp.vhost, user.name],
                                                 ["exchange": Names.deadExchange, "write": keys, "read": ".*"])
                    }
                    if let keys = user.controlKeys {
                        try await management.put(["topic-permissions", amqp.vhost, user.name],
                                                 ["exchange": Names.controlExchange, "write": keys, "read": ".*"])
                    }
                    _ = try await redis.command((["ACL", "SETUSER", user.name, "reset", "on", ">\(password)"] + user.redisRules).map { $0 as any RedisArgument })
                } catch {
                    throw ControlError("creating \(user.name): \(error)")
                }
                created.append((user, userAMQPURL(amqp, user: user.name, password: password),
                                userRedisURL(redis.endpoint, user: user.name, password: password)))
            }
            if json {
                print(try Output.json(["run": run, "users": created.map { ["role": $0.user.role, "name": $0.user.name,
                                                                             "amqp_url": $0.amqpURL, "redis_url": $0.redisURL] }]))
                return
            }
            print("run \(run): \(created.count) users, restricted to tributary.\(run).* and tributary:\(run):* (passwords are shown once)")
            print(Output.table(["ROLE", "AMQP", "REDIS"], created.map { [$0.user.role, $0.amqpURL, $0.redisURL] }))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete the run's users; their open connections are closed.")
        @OptionGroup var admin: AdminOptions
        @Argument(help: ArgumentHelp("The run id.", valueName: "run")) var run: String

        func validate() throws { try admin.validate(run: run) }

        func run() async throws {
            let (_, management, redis) = try await admin.connect()
            defer { redis.close() }
            for user in RunUser.all(run: run) {
                do {
                    let onBroker = try await management.delete(["users", user.name])
                    let inRedis = try await redis.command(["ACL", "DELUSER", user.name]).int ?? 0
                    print("\(user.name): \(onBroker ? "deleted" : "not found") on the broker, \(inRedis > 0 ? "deleted" : "not found") in Redis")
                } catch {
                    throw ControlError("deleting \(user.name): \(error)")
                }
            }
        }
    }
}

/// An administrator's URLs: users are made through them, and the users' URLs name the same hosts.
struct AdminOptions: ParsableArguments {
    @Option(name: .customLong("admin-amqp-url"),
            help: ArgumentHelp("RabbitMQ URL of an administrator (default: TRIBUTARY_ADMIN_AMQP_URL): its credentials, its vhost, and the host and port in the printed URLs.",
                               valueName: "url"))
    var amqpURL: String?

    @Option(name: .customLong("management-url"),
            help: ArgumentHelp("RabbitMQ management API (default: TRIBUTARY_MANAGEMENT_URL, else http://AMQP-HOST:15672).", valueName: "url"))
    var managementURL: String?

    @Option(name: .customLong("admin-redis-url"),
            help: ArgumentHelp("Redis URL of an administrator (default: TRIBUTARY_ADMIN_REDIS_URL).", valueName: "url"))
    var redisURL: String?

    func validate(run: String) throws {
        guard RunUser.isValidRun(run) else { throw ValidationError("run id '\(run)' must be letters, digits, - or _") }
    }

    func connect() async throws -> (AMQPEndpoint, RabbitMQManagement, RedisClient) {
        let environment = ControlOptions.environment
        guard let amqpText = amqpURL ?? environment["TRIBUTARY_ADMIN_AMQP_URL"] else {
            throw ControlError("give the broker administrator's URL: --admin-amqp-url amqp://admin:PASSWORD@HOST:5672/tributary (or TRIBUTARY_ADMIN_AMQP_URL)")
        }
        guard let redisText = redisURL ?? environment["TRIBUTARY_ADMIN_REDIS_URL"] else {
            throw ControlError("give the Redis administrator's URL: --admin-redis-url redis://admin:PASSWORD@HOST:6379 (or TRIBUTARY_ADMIN_REDIS_URL)")
        }
        let amqp: AMQPEndpoint, redisEndpoint: RedisEndpoint
        do {
            amqp = try AMQPEndpoint(url: amqpText)
            redisEndpoint = try RedisEndpoint(url: redisText)
        } catch { throw ControlError("\(error)") }
        let managementText = managementURL ?? environment["TRIBUTARY_MANAGEMENT_URL"] ?? "http://\(amqp.host):15672"
        guard let base = URL(string: managementText), base.scheme == "http" || base.scheme == "https", base.host != nil else {
            throw ControlError("--management-url '\(managementText)' is not an http(s) URL")
        }
        let redis = RedisClient(endpoint: redisEndpoint)
        do { try await redis.connect() } catch {
            throw ControlError("cannot reach Redis at \(redisEndpoint): \(error)")
        }
        return (amqp, RabbitMQManagement(base: base, user: amqp.user, password: amqp.password), redis)
    }
}

/// 32 letters and digits from the system's secure generator (about 190 bits): safe unescaped in URLs and ACL lines.
private func randomPassword() -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    var generator = SystemRandomNumberGenerator()
    return String((0..<32).map { _ in alphabet.randomElement(using: &generator)! })
}

private func userAMQPURL(_ admin: AMQPEndpoint, user: String, password: String) -> String {
    let vhost = admin.vhost == "/" ? "" : admin.vhost.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? admin.vhost
    return "amqp://\(user):\(password)@\(admin.host):\(admin.port)/\(vhost)"
}

private func userRedisURL(_ admin: RedisEndpoint, user: String, password: String) -> String {
    "redis://\(user):\(password)@\(admin.host):\(admin.port)" + (admin.database == 0 ? "" : "/\(admin.database)")
}
