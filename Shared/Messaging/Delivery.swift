import Synchronization

/// One message handed to a consumer. Acknowledge it by hand: `ack()` once its effect is durable,
/// `nack(requeue:)` to hand it back, `reject()` to dead-letter it.
public struct Delivery: Sendable {
    public let body: [UInt8]
    public let headers: [String: String]
    public let messageID: String?
    /// Who published it (the user_id property; RabbitMQ refuses a publish whose user_id is not the login user).
    public let userID: String?
    public let redelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let queue: String
    let deliveryTag: UInt64
    /// Delivery tags are only valid on the connection that delivered them; this counts connections.
    let generation: Int
    let client: AMQPClient
    /// Shared by every copy: a delivery is settled once (a second ack or nack on one tag would close the channel).
    let settlement = SettledFlag()

    /// How often the broker has delivered this message before (quorum queues count it).
    public var deliveryCount: Int? { headers["x-delivery-count"].flatMap { Int($0) } }

    public func ack() async throws {
        guard settlement.claim() else { return }
        try await client.settle(.ack, tag: deliveryTag, generation: generation)
    }

    public func nack(requeue: Bool) async throws {
        guard settlement.claim() else { return }
        try await client.settle(requeue ? .nackRequeue : .nackDrop, tag: deliveryTag, generation: generation)
    }

    /// Without requeue, the message goes to the queue's dead-letter exchange.
    public func reject(requeue: Bool = false) async throws {
        guard settlement.claim() else { return }
        try await client.settle(requeue ? .rejectRequeue : .rejectDrop, tag: deliveryTag, generation: generation)
    }
}

final class SettledFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    /// True for the first caller only.
    func claim() -> Bool { flag.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged }
}

enum Settlement: Sendable {
    case ack, nackRequeue, nackDrop, rejectRequeue, rejectDrop
}
