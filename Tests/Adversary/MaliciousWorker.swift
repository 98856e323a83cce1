import Foundation
import Logging
import Checkpoints
import Messaging
import RL
import Runtime
import Signing
import Store
import TestSupport
import Wire

/// A rollout worker that lies, for the adversary suite and `tributary-bench adversary`. It joins the run as any worker
/// can (registers a key, reads tasks), then publishes every forgery of the trust model's list while honest workers run.
/// Each attack is recorded with what the trusted side must do about it; `judge` checks that it did.
public final class MaliciousWorker: @unchecked Sendable {
    public struct Attack: Sendable {
        public var name: String
        public var messageIDs: [String]
        public var expected: Expected
    }

    public enum Expected: Sendable {
        /// Dead-lettered by the scorer with a reason containing this text.
        case deadLettered(String)
        /// Accepted as a message but never trained on (its forgery changed nothing: scored against the ledger).
        case neverTrained
        /// Trained at most once, whatever number of copies arrived.
        case taskTrainedAtMostOnce(String)
    }

    public struct Outcome: Sendable {
        public var name: String
        public var refused: Bool
        public var detail: String
    }

    public let names: Names
    let amqpEndpoint: AMQPEndpoint
    let amqp: AMQPClient
    let redis: RedisClient
    let me: WorkerIdentity
    /// A second key of the attacker's, which the operator bans.
    public let banned: WorkerIdentity
    public private(set) var attacks: [Attack] = []

    init(names: Names, amqpEndpoint: AMQPEndpoint, amqp: AMQPClient, redis: RedisClient, me: WorkerIdentity, banned: WorkerIdentity) {
        self.names = names
        self.amqpEndpoint = amqpEndpoint
        self.amqp = amqp
        self.redis = redis
        self.me = me
        self.banned = banned
    }

    /// Connects and registers two keys, saying it loaded version 0 only.
    public static func join(names: Names, amqp: AMQPEndpoint, redis: RedisEndpoint) async throws -> MaliciousWorker {
        let client = AMQPClient(endpoint: amqp, name: "adversary")
        try await client.connect()
        let store = RedisClient(endpoint: redis)
        try await store.connect()
        let registry = WorkerRegistry(names: names, redis: store)
        let me = WorkerIdentity(key: try SigningKey.generate(), file: "(adversary)")
        let banned = WorkerIdentity(key: try SigningKey.generate(), file: "(adversary, banned)")
        for identity in [me, banned] {
            try await registry.register(identity.publicKey, instance: "adversary")
            try await registry.recordLoad(identity.publicKey, version: 0, sha256: "forged")
        }
        return MaliciousWorker(names: names, amqpEndpoint: amqp, amqp: client, redis: store, me: me, banned: banned)
    }

    public func close() async {
        await amqp.close()
        redis.close()
    }

    /// A task the run issued and has not filled: taken from the task queue and handed straight back (a worker can read
    /// tasks; it cannot read their answers). Its own connection, closed after, so nothing stays unacknowledged.
    func peekTask() async throws -> RolloutTask {
        let peeker = AMQPClient(endpoint: amqpEndpoint, name: "adversary-peek")
        try await peeker.connect()
        defer { Task { await peeker.close() } }
        for try await delivery in peeker.consume(queue: names.tasksQueue, prefetch: 1) {
            let task = try RolloutTask.decode(delivery.body, deliveredID: delivery.messageID)
            try await delivery.nack(requeue: true)
            return task
        }
        throw RedisError.server(message: "the task queue closed", command: "peek")
    }

    /// Every message attack of the trust model, published while the run trains. `ban` asks the operator's CLI path
    /// (the learner's control command) to ban a key.
    public func attackMessages(ban: (String) async throws -> Void) async throws {
        let latest = try await CheckpointStore(names: names, redis: redis).latest()
        // version 0 is the only one this worker recorded loading: its honest-looking groups claim it
        let task = try await peekTask()
        let prompt = PromptFormat.bytes.promptTokens(task.prompt)
        func group(_ task: RolloutTask, texts: [String], version: UInt64 = 0) -> RolloutGroup {
            var group = RolloutGroup()
            group.envelope = Envelope(runID: names.run, role: "rollout", instance: "adversary")
            group.task = task
            group.policyVersion = version
            group.promptTokens = prompt
            group.workerID = "adversary"
            group.completions = texts.map { text in
                let tokens = PromptFormat.bytes.completionTokens(text)
                return Completion.with { $0.tokens = tokens; $0.logprobs = tokens.map { _ in -0.5 } }
            }
            return group
        }
        let size = Int(task.groupSize)
        let wrong = Array(repeating: "x", count: size)

        // forged answer: the group says its own output is the answer (the scorer reads the ledger's answer)
        var forgedAnswer = group(task, texts: wrong)
        forgedAnswer.task.answer = "x"
        forgedAnswer.task.metadata = ["tests": "", "answer": "x"]
        try await publish("forged answer", forgedAnswer, .neverTrained)

        var swapped = group(task, texts: wrong)
        swapped.task.prompt = "1+1="
        swapped.promptTokens = PromptFormat.bytes.promptTokens("1+1=")
        try await publish("swapped prompt", swapped, .deadLettered("differs from the issued task"))

        var hotter = group(task, texts: wrong)
        hotter.task.sampling.temperature *= 3  // a flatter distribution than issued: its log-probs would skew the ratios
        try await publish("other sampling settings", hotter, .deadLettered("differs from the issued task"))

        // far past any version the run reaches while the attacks run (it keeps stepping meanwhile)
        try await publish("future policy version", group(task, texts: wrong, version: (latest ?? 0) + 1_000_000), .deadLettered("is from the future"))
        if let latest, latest > 0 {
            try await publish("unloaded policy version", group(task, texts: wrong, version: latest), .deadLettered("recorded loading"))
        }
        try await publish("u64 max policy version", group(task, texts: wrong, version: .max), .deadLettered("is from the future"))

        var neverIssued = group(task, texts: wrong)
        neverIssued.task.taskID = "\(names.run)-999999999"
        try await publish("task never issued", neverIssued, .deadLettered("is not a task this run issued"))

        // the same task twice under two ids, and one of them replayed as is: trained at most once
        let first = try signed(group(task, texts: wrong))
        let second = try signed(group(task, texts: wrong))
        for copy in [first, second, first] {
            try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: names.run, body: try copy.encoded(), messageID: copy.messageID)
        }
        attacks.append(Attack(name: "task filled twice", messageIDs: [first.messageID, second.messageID], expected: .taskTrainedAtMostOnce(task.taskID)))
        attacks.append(Attack(name: "replayed group", messageIDs: [first.messageID], expected: .taskTrainedAtMostOnce(task.taskID)))

        // another worker's id: its own group, signed by itself, carrying someone else's key
        var impersonated = try signed(group(task, texts: wrong))
        impersonated.workerKey = Data(banned.publicKey.bytes)
        try await publishRaw("another worker's id", impersonated, .deadLettered("does not verify"))

        var tampered = try signed(group(task, texts: wrong))
        tampered.completions[0].logprobs[0] = -0.01  // inflate a ratio after signing
        try await publishRaw("bad signature", tampered, .deadLettered("does not verify"))

        var unsigned = group(task, texts: wrong)
        unsigned.workerKey = Data(me.publicKey.bytes)
        try await publishRaw("unsigned group", unsigned, .deadLettered("signature is missing"))

        try await ban(banned.publicKey.hex)
        var fromBanned = group(task, texts: wrong)
        try banned.sign(&fromBanned)
        // the ban reaches the learner first, then Redis: published once the key is in the ban list
        let registry = WorkerRegistry(names: names, redis: redis)
        try await waitUntil("the ban of \(banned.publicKey.hex.prefix(16))… recorded") { try await registry.banReason(of: banned.publicKey.hex) != nil }
        try await publishRaw("banned key", fromBanned, .deadLettered("is banned"))

        // oversize: a group past 8 MiB is refused before it is decoded
        let oversizeID = UUID().uuidString
        try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: names.run, body: [UInt8](repeating: 0x0A, count: WireLimits.maxGroupBytes + 1),
                               messageID: oversizeID)
        attacks.append(Attack(name: "oversize group", messageIDs: [oversizeID], expected: .deadLettered("bytes, over the")))

        let malformedID = UUID().uuidString
        try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: names.run, body: Array("\u{08}\u{96}\u{01}not protobuf".utf8), messageID: malformedID)
        attacks.append(Attack(name: "malformed group", messageIDs: [malformedID], expected: .deadLettered("is not a valid tributary.v1.RolloutGroup")))

        var nan = group(task, texts: wrong)
        nan.completions[0].logprobs[0] = .nan
        try await publish("NaN log-probs", nan, .deadLettered("not a finite log-probability"))
    }

    func signed(_ group: RolloutGroup) throws -> RolloutGroup {
        var group = group
        try me.sign(&group)
        return group
    }

    func publish(_ name: String, _ group: RolloutGroup, _ expected: Expected) async throws {
        try await publishRaw(name, try signed(group), expected)
    }

    func publishRaw(_ name: String, _ group: RolloutGroup, _ expected: Expected) async throws {
        try await amqp.publish(exchange: Names.rolloutsExchange, routingKey: names.run, body: try group.encoded(), messageID: group.messageID)
        attacks.append(Attack(name: name, messageIDs: [group.messageID], expected: expected))
    }

    /// Dead letters expected by the attacks so far (the suite waits for this many).
    public var expectedDeadLetters: Int {
        attacks.filter { if case .deadLettered = $0.expected { true } else { false } }.count
    }

    /// Each attack refused as it must be, from the run's dead letters (message id -> reason) and the learner's batch log.
    public func judge(deadLetters: [String: String], batches: [[String: String]]) -> [Outcome] {
        let trainedGroups = Set(batches.flatMap { ($0["groups"] ?? "").split(separator: ",").map(String.init) })
        let trainedTasks = batches.flatMap { ($0["tasks"] ?? "").split(separator: ",").map(String.init) }
        return attacks.map { attack in
            switch attack.expected {
            case let .deadLettered(text):
                let reason = attack.messageIDs.first.flatMap { deadLetters[$0] }
                let refused = reason?.contains(text) == true && attack.messageIDs.allSatisfy { !trainedGroups.contains($0) }
                return Outcome(name: attack.name, refused: refused, detail: reason.map { "dead-lettered: \($0)" } ?? "not dead-lettered")
            case .neverTrained:
                let trained = attack.messageIDs.contains { trainedGroups.contains($0) }
                return Outcome(name: attack.name, refused: !trained, detail: trained ? "trained on" : "never trained on")
            case let .taskTrainedAtMostOnce(taskID):
                let times = trainedTasks.filter { $0 == taskID }.count
                return Outcome(name: attack.name, refused: times <= 1, detail: "task trained \(times) time(s)")
            }
        }
    }
}
