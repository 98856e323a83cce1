import Checkpoints
import Signing
import Messaging
import Store

/// Exchange, queue and key names of DESIGN.md. One broker and one Redis can serve several runs:
/// queues and keys carry the run id.
public struct Names: Sendable {
    public let run: String

    public init(run: String) { self.run = run }

    // Exchanges (shared by runs; routing keys carry the run).
    public static let tasksExchange = "tributary.tasks"
    public static let rolloutsExchange = "tributary.rollouts"
    public static let scoredExchange = "tributary.scored"
    /// Scored groups a validator let through (checked and passed, or not sampled): the learner's input when the run
    /// validates (`validation.enabled`).
    public static let validatedExchange = "tributary.validated"
    public static let checkpointsExchange = "tributary.checkpoints"
    public static let controlExchange = "tributary.control"
    public static let deadExchange = "tributary.dead"

    // Work queues of this run.
    public var tasksQueue: String { "tributary.\(run).tasks" }
    public var rolloutsQueue: String { "tributary.\(run).rollouts" }
    public var scoredQueue: String { "tributary.\(run).scored" }
    public var validatedQueue: String { "tributary.\(run).validated" }
    /// What the learner consumes: the validators' output when the run validates, the scorers' otherwise.
    public func learnerInputQueue(validating: Bool) -> String { validating ? validatedQueue : scoredQueue }
    /// Policies the learner saved, waiting for the broadcaster.
    public var policiesQueue: String { "tributary.\(run).policies" }
    public var deadLettersQueue: String { "tributary.\(run).dead-letters" }
    public var policyRoutingKey: String { "policy.\(run)" }
    /// Control key for one role of one run (run commands go to `learner.run.RUN`).
    public static func runRoutingKey(role: String, run: String) -> String { "\(role).run.\(run)" }

    // Redis keys.
    public var prefix: String { "tributary:\(run)" }
    public var stateKey: String { "\(prefix):state" }
    public var metricsKey: String { "\(prefix):metrics" }
    public var countersKey: String { "\(prefix):counters" }
    public var checkpoints: CheckpointKeys { CheckpointKeys(run: run, prefix: prefix) }
    public func heartbeatKey(role: String, instance: String) -> String { "\(prefix):hb:\(role):\(instance)" }
    public var heartbeatPattern: String { "\(prefix):hb:*" }
    /// The run's tokenizer.json when its model brings one (its SHA-256 is in the run state); every role reads it.
    public var tokenizerKey: String { "\(prefix):tokenizer" }
    /// Every task the learner issued, whole (answer and tests included): the reward scorer scores against it.
    public var ledgerKey: String { "\(prefix):ledger" }
    /// The learner's own resumable state: weights, optimizer, step, applied group ids.
    public var learnerStateKey: String { "\(prefix):learner" }
    public var appliedGroupsKey: String { "\(prefix):learner:applied" }
    /// One learner per run: the lease ("TOKEN INSTANCE", with a TTL) and the fencing counter (LearnerLease).
    public var learnerLeaseKey: String { "\(prefix):learner:lease" }
    public var learnerFenceKey: String { "\(prefix):learner:fence" }
    /// Broadcaster's log of checkpoint timings, and rollout workers' verified loads.
    public var broadcastLogKey: String { "\(prefix):broadcast" }
    public var loadsLogKey: String { "\(prefix):loads" }
    /// One entry per scored group: task, worker, version, whether the task was redelivered (audits and tests).
    public var scoredLogKey: String { "\(prefix):scored-log" }
    /// Rollout workers by Ed25519 public key (hex) -> registration; workers may only add to it (HSETNX).
    public var workersKey: String { "\(prefix):workers" }
    /// Versions each worker says it loaded and verified ("KEY:VERSION" -> SHA-256); workers may only add to it.
    public var workerLoadsKey: String { "\(prefix):worker-loads" }
    /// Groups accepted, trained and refused (by reason) per worker key ("KEY.outcome" -> count); written by the trusted side.
    public var workerStatsKey: String { "\(prefix):worker-stats" }
    /// Banned worker keys -> reason; written by the learner on `tributary workers ban`.
    public var workerBansKey: String { "\(prefix):worker-bans" }
    /// One entry per learner step with the staleness of every group it used (for audits and tests).
    public var batchesLogKey: String { "\(prefix):batches" }
    /// One entry per group a validator took: its verdict (unsampled, passed, failed with the check and the error).
    public var verdictsLogKey: String { "\(prefix):verdicts" }
    /// The run's audit events: bans and unbans (by whom, why), probations, a ban of a key whose groups were trained on.
    public var eventsLogKey: String { "\(prefix):events" }

    /// Everything the run's roles declare on connect.
    public func topology(queueType: QueueType) -> Topology {
        let workQueue = { (name: String) in
            QueueSpec(name, type: queueType, deadLetterExchange: Self.deadExchange, deadLetterRoutingKey: name,
                      deliveryLimit: queueType == .quorum ? 10 : nil)
        }
        return Topology(
            exchanges: [ExchangeSpec(Self.tasksExchange, kind: .direct), ExchangeSpec(Self.rolloutsExchange, kind: .direct),
                        ExchangeSpec(Self.scoredExchange, kind: .direct), ExchangeSpec(Self.validatedExchange, kind: .direct),
                        ExchangeSpec(Self.checkpointsExchange, kind: .fanout),
                        ExchangeSpec(Self.controlExchange, kind: .topic), ExchangeSpec(Self.deadExchange, kind: .topic)],
            queues: [workQueue(tasksQueue), workQueue(rolloutsQueue), workQueue(scoredQueue), workQueue(validatedQueue), workQueue(policiesQueue),
                     QueueSpec(deadLettersQueue, type: queueType)],
            bindings: [BindingSpec(queue: tasksQueue, exchange: Self.tasksExchange, routingKey: run),
                       BindingSpec(queue: rolloutsQueue, exchange: Self.rolloutsExchange, routingKey: run),
                       BindingSpec(queue: scoredQueue, exchange: Self.scoredExchange, routingKey: run),
                       BindingSpec(queue: validatedQueue, exchange: Self.validatedExchange, routingKey: run),
                       BindingSpec(queue: policiesQueue, exchange: Self.controlExchange, routingKey: policyRoutingKey),
                       BindingSpec(queue: deadLettersQueue, exchange: Self.deadExchange, routingKey: "tributary.\(run).#")])
    }
}

extension CheckpointStore {
    public init(names: Names, redis: RedisClient, signer: SigningKey? = nil, verifier: VerifyingKey? = nil) {
        self.init(keys: names.checkpoints, redis: redis, signer: signer, verifier: verifier)
    }
}
