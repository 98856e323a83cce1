/// Exchanges, queues and bindings, declared from one description on every (re)connect.
public struct Topology: Sendable, Equatable {
    public var exchanges: [ExchangeSpec]
    public var queues: [QueueSpec]
    public var bindings: [BindingSpec]

    public init(exchanges: [ExchangeSpec] = [], queues: [QueueSpec] = [], bindings: [BindingSpec] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    public static func + (lhs: Topology, rhs: Topology) -> Topology {
        Topology(exchanges: lhs.exchanges + rhs.exchanges, queues: lhs.queues + rhs.queues, bindings: lhs.bindings + rhs.bindings)
    }

    /// The same exchanges and queues, only checked for existence (passive declares, which need no configure
    /// permission): for a user that may use the topology but not create it. Bindings cannot be checked, so none.
    public var passive: Topology {
        Topology(exchanges: exchanges.map { var exchange = $0; exchange.passive = true; return exchange },
                 queues: queues.map { var queue = $0; queue.passive = true; return queue })
    }
}

public struct ExchangeSpec: Sendable, Equatable {
    public enum Kind: String, Sendable { case direct, fanout, topic, headers }
    public var name: String
    public var kind: Kind
    public var durable: Bool
    /// Only check that it exists (a 404 when not).
    public var passive = false

    public init(_ name: String, kind: Kind, durable: Bool = true) {
        self.name = name
        self.kind = kind
        self.durable = durable
    }
}

public enum QueueType: String, Sendable, Codable, CaseIterable {
    /// Classic durable queues keep every confirmed message across a single-node broker restart.
    case classic
    /// Quorum queues for clusters; they support a delivery limit.
    case quorum
}

public struct QueueSpec: Sendable, Equatable {
    /// Empty name asks the broker for a server-named queue (exclusive, e.g. for fanout announcements).
    public var name: String
    public var durable: Bool
    public var exclusive: Bool
    public var autoDelete: Bool
    public var type: QueueType
    public var deadLetterExchange: String?
    public var deadLetterRoutingKey: String?
    public var messageTTLMilliseconds: Int?
    /// Redeliveries before dead-lettering; only quorum queues enforce it (RabbitMQ 3.10).
    public var deliveryLimit: Int?
    public var maxLength: Int?
    /// Only check that it exists (a 404 when not); the other fields are not compared.
    public var passive = false

    public init(_ name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
                type: QueueType = .classic, deadLetterExchange: String? = nil, deadLetterRoutingKey: String? = nil,
                messageTTLMilliseconds: Int? = nil, deliveryLimit: Int? = nil, maxLength: Int? = nil) {
        self.name = name
        self.durable = durable
        self.exclusive = exclusive
        self.autoDelete = autoDelete
        self.type = type
        self.deadLetterExchange = deadLetterExchange
        self.deadLetterRoutingKey = deadLetterRoutingKey
        self.messageTTLMilliseconds = messageTTLMilliseconds
        self.deliveryLimit = deliveryLimit
        self.maxLength = maxLength
    }

    /// A private, broker-named queue that lives as long as its connection.
    public static var exclusiveTemporary: QueueSpec {
        QueueSpec("", durable: false, exclusive: true, autoDelete: true)
    }

    /// The `x-` arguments RabbitMQ takes for this queue.
    var arguments: [(String, AMQPFieldValue)] {
        var arguments: [(String, AMQPFieldValue)] = []
        if durable && !exclusive { arguments.append(("x-queue-type", .string(type.rawValue))) }
        if let deadLetterExchange { arguments.append(("x-dead-letter-exchange", .string(deadLetterExchange))) }
        if let deadLetterRoutingKey { arguments.append(("x-dead-letter-routing-key", .string(deadLetterRoutingKey))) }
        if let messageTTLMilliseconds { arguments.append(("x-message-ttl", .int(Int64(messageTTLMilliseconds)))) }
        if let deliveryLimit, type == .quorum { arguments.append(("x-delivery-limit", .int(Int64(deliveryLimit)))) }
        if let maxLength { arguments.append(("x-max-length", .int(Int64(maxLength)))) }
        return arguments
    }
}

public struct BindingSpec: Sendable, Equatable {
    public var queue: String
    public var exchange: String
    public var routingKey: String

    public init(queue: String, exchange: String, routingKey: String = "") {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// The header and argument values Tributary uses.
public enum AMQPFieldValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case bool(Bool)

    public var description: String {
        switch self {
        case let .string(value): value
        case let .int(value): String(value)
        case let .bool(value): String(value)
        }
    }
}
