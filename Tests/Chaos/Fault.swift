/// The faults of issue 13's fault table, numbered as the issue numbers them (3 has two rows: at the crash point
/// between the learner's save and its acks, and at a random point), and issue 14's kill of a RabbitMQ cluster node (14),
/// which needs a harness whose RabbitMQ is a cluster.
public enum Fault: String, Sendable, CaseIterable, Codable {
    case rolloutKill = "1"
    case scorerKill = "2"
    case learnerKillAfterSave = "3a"
    case learnerKillRandom = "3b"
    case broadcasterKillMidWrite = "4"
    case rabbitMQRestart = "5"
    case redisRestart = "6"
    case learnerPausePastConsumerTimeout = "7"
    case scorerPause = "8"
    case rolloutPartition = "9"
    case secondLearner = "10"
    case runIDReused = "11"
    case nonFiniteSettings = "12"
    case allTasksInvalid = "13"
    case clusterNodeKill = "14"

    public var number: String { rawValue }

    public var title: String {
        switch self {
        case .rolloutKill: "kill -9 a rollout worker holding a task"
        case .scorerKill: "kill -9 a reward scorer holding a group"
        case .learnerKillAfterSave: "kill -9 the learner between its save and its acks"
        case .learnerKillRandom: "kill -9 the learner at a random point"
        case .broadcasterKillMidWrite: "kill -9 the broadcaster mid-write"
        case .rabbitMQRestart: "RabbitMQ kill -9, then restart"
        case .redisRestart: "Redis kill -9, then restart"
        case .learnerPausePastConsumerTimeout: "SIGSTOP the learner past the consumer timeout"
        case .scorerPause: "SIGSTOP a reward scorer"
        case .rolloutPartition: "a rollout worker cut off from both brokers"
        case .secondLearner: "a second learner on the same run, then kill -9 the first"
        case .runIDReused: "run interrupted mid-run, started again (run start --fresh)"
        case .nonFiniteSettings: "set NaN, inf and negative values"
        case .allTasksInvalid: "every task not yet served purged mid-run"
        case .clusterNodeKill: "kill -9 the RabbitMQ cluster node the learner is connected to"
        }
    }

    /// What the fault needs from the services that main may not have yet (the row says so when it fails).
    public var needs: String? {
        switch self {
        case .learnerKillAfterSave: "the learner's crash point learner.after-save (TRIBUTARY_CRASH_AT)"
        case .broadcasterKillMidWrite: "the broadcaster's crash point broadcaster.mid-write (TRIBUTARY_CRASH_AT)"
        case .secondLearner: "the learner's Redis lease (a second learner waits as standby)"
        case .runIDReused: "run epochs (`tributary run start --fresh`)"
        case .allTasksInvalid: "task deadlines (learner.task_deadline_seconds: unfilled tasks reissued)"
        case .nonFiniteSettings: "settings ranges (non-finite and negative values refused)"
        case .clusterNodeKill: "a RabbitMQ cluster of three nodes (ChaosHarness.start(clusterNodes: 3)) and amqp.url lists"
        default: nil
        }
    }

    /// Parses "3a", "7", or a comma-separated list; "all" for issue 13's table (every fault but 14, which needs a cluster).
    public static func parse(_ text: String) -> [Fault]? {
        if text == "all" { return allCases.filter { $0 != .clusterNodeKill } }
        var faults: [Fault] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if let fault = Fault(rawValue: item) {
                faults.append(fault)
            } else if item == "3" {
                faults += [.learnerKillAfterSave, .learnerKillRandom]
            } else {
                return nil
            }
        }
        return faults
    }
}
