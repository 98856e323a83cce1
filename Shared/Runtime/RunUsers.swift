/// The broker and Redis users of one run (`tributary users create RUN`): each role's rights of
/// compose/rabbitmq/definitions.json and compose/redis/users.acl, narrowed from every run to this one. The learner keeps
/// its shared user (it declares the topology, one per run, trusted). DeploymentTests checks these against both files.
public struct RunUser: Sendable, Equatable {
    public static let roles = ["rollout", "reward", "broadcaster", "validator", "control"]

    public var run: String
    public var role: String
    /// RabbitMQ permission patterns on the vhost.
    public var configure: String
    public var write: String
    public var read: String
    /// The routing keys it may publish to `tributary.dead` with (a topic permission): its own queue's name only.
    public var deadLetterKeys: String?
    /// The routing keys it may publish to `tributary.control` with (a topic permission); nil: no such restriction.
    public var controlKeys: String?
    /// Redis ACL rules, after `on >password`.
    public var redisRules: [String]

    /// `RUN.ROLE`, on the broker and in Redis.
    public var name: String { "\(run).\(role)" }

    /// The run's users, one per role; `run` must be a run id (letters, digits, - and _: nothing a pattern would read as syntax).
    public static func all(run: String) -> [RunUser] { roles.map { RunUser(run: run, role: $0) } }

    public init(run: String, role: String) {
        precondition(Self.isValidRun(run), "run id '\(run)' must be letters, digits, - or _")
        self.run = run
        self.role = role
        let queue = { (kind: String) in "tributary\\.\(run)\\.\(kind)" }
        let shared = ["resetkeys", "resetchannels", "-@all", "+@read", "+@write", "+@scripting", "+@transaction", "+@connection",
                      "-@dangerous", "-@admin"]
        let key = { (pattern: String) in pattern.replacingOccurrences(of: "RUN", with: run) }
        switch role {
        case "rollout":
            (configure, write, read) = ("^amq\\.gen-.*$", "^(tributary\\.(rollouts|dead)|amq\\.gen-.*)$",
                                        "^(tributary\\.(checkpoints|control)|\(queue("tasks"))|amq\\.gen-.*)$")
            deadLetterKeys = "^\(queue("tasks"))$"
            redisRules = shared + ["%R~tributary:RUN:ckpt:*", "%R~tributary:RUN:state", "%R~tributary:RUN:tokenizer", "%RW~tributary:RUN:loads",
                                   "%RW~tributary:RUN:counters", "%RW~tributary:RUN:hb:rollout:*",
                                   "(~tributary:RUN:workers ~tributary:RUN:worker-loads +hsetnx)"].map(key)
        case "reward":
            (configure, write, read) = ("^amq\\.gen-.*$", "^(tributary\\.(scored|dead)|amq\\.gen-.*)$",
                                        "^(tributary\\.control|\(queue("rollouts"))|amq\\.gen-.*)$")
            deadLetterKeys = "^\(queue("rollouts"))$"
            redisRules = shared + ["%R~tributary:RUN:state", "%R~tributary:RUN:tokenizer", "%R~tributary:RUN:ledger", "%R~tributary:RUN:ckpt:latest",
                                   "%RW~tributary:RUN:scored-log", "%RW~tributary:RUN:counters", "%RW~tributary:RUN:hb:reward:*",
                                   "%R~tributary:RUN:workers", "%R~tributary:RUN:worker-loads", "%R~tributary:RUN:worker-bans",
                                   "%RW~tributary:RUN:worker-stats"].map(key)
        case "broadcaster":
            (configure, write, read) = ("^amq\\.gen-.*$", "^(tributary\\.(checkpoints|dead)|amq\\.gen-.*)$",
                                        "^(tributary\\.control|\(queue("policies"))|amq\\.gen-.*)$")
            deadLetterKeys = "^\(queue("policies"))$"
            redisRules = shared + ["+wait"] + ["%RW~tributary:RUN:staging:*", "%RW~tributary:RUN:ckpt:*", "%RW~tributary:RUN:broadcast",
                                               "%RW~tributary:RUN:counters", "%RW~tributary:RUN:hb:broadcaster:*", "%R~tributary:RUN:state",
                                               "%R~tributary:RUN:tokenizer"].map(key)
        case "validator":
            // it sends the learner its bans (BanWorker on learner.run.RUN): a topic permission keeps it to that key
            (configure, write, read) = ("^amq\\.gen-.*$", "^(tributary\\.(validated|control|dead)|amq\\.gen-.*)$",
                                        "^(tributary\\.control|\(queue("scored"))|amq\\.gen-.*)$")
            deadLetterKeys = "^\(queue("scored"))$"
            controlKeys = "^learner\\.run\\.\(run)$"
            redisRules = shared + ["%R~tributary:RUN:state", "%R~tributary:RUN:ckpt:*", "%R~tributary:RUN:scored-log", "%R~tributary:RUN:batches",
                                   "%RW~tributary:RUN:verdicts", "%RW~tributary:RUN:events", "%RW~tributary:RUN:counters", "%RW~tributary:RUN:hb:validator:*",
                                   "%RW~tributary:RUN:worker-bans", "%RW~tributary:RUN:worker-stats"].map(key)
        case "control":
            (configure, write, read) = ("^$", "^tributary\\.(tasks|rollouts|scored|validated|control)$", "^\(queue("dead-letters"))$")
            deadLetterKeys = nil
            redisRules = ["resetkeys", "resetchannels", "-@all", "+@read", "+@connection", "-@dangerous", "-@admin", key("%R~tributary:RUN:*")]
        default:
            preconditionFailure("no per-run user for role '\(role)'")
        }
    }

    /// The run of a per-run user (`RUN.ROLE`); nil for a shared one (`rollout`, `learner`, `admin`, ...).
    public static func run(ofUser name: String) -> String? {
        guard let dot = name.lastIndex(of: "."), roles.contains(String(name[name.index(after: dot)...])) else { return nil }
        let run = String(name[..<dot])
        return isValidRun(run) ? run : nil
    }

    public static func isValidRun(_ run: String) -> Bool {
        !run.isEmpty && run.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "_" }
    }
}
