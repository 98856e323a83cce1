/// What went wrong talking to RabbitMQ, and where.
public enum AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidURL(String, reason: String)
    /// Entry `entry` (1-based) of a comma-separated list of `of` URLs.
    case invalidURLList(entry: Int, of: Int, url: String, reason: String)
    /// No broker of a list took the connection: each one's host:port and error.
    case noBrokerAnswered([String])
    case connectionRefused(host: String, port: Int)
    case connectionFailed(host: String, port: Int, reason: String)
    case authenticationRefused(user: String, vhost: String, reason: String)
    case channelClosed(code: Int, text: String)
    case connectionClosed(code: Int, text: String)
    case connectionLost(host: String, port: Int, reason: String)
    case publishNacked(exchange: String, routingKey: String, messageID: String)
    case publishReturned(exchange: String, routingKey: String, code: Int, text: String)
    case messageTooLarge(size: Int, limit: Int)
    case declarationFailed(what: String, code: Int, text: String)
    case protocolError(String)
    case clientClosed
    /// An ack or nack of a delivery whose connection has since been replaced: nothing was settled, the broker requeued
    /// the message when that connection went, and it will be delivered again (flagged redelivered).
    case deliveryVoid(tag: UInt64)

    public var description: String {
        switch self {
        case let .invalidURL(url, reason): "invalid AMQP URL '\(url)': \(reason)"
        case let .invalidURLList(entry, count, url, reason): "invalid AMQP URL list, entry \(entry) of \(count) '\(url)': \(reason)"
        case let .noBrokerAnswered(failures): "no broker of the list took the connection: \(failures.joined(separator: "; "))"
        case let .connectionRefused(host, port): "connection refused by \(host):\(port) (is RabbitMQ running? scripts/brokers.sh start)"
        case let .connectionFailed(host, port, reason): "could not connect to \(host):\(port): \(reason)"
        case let .authenticationRefused(user, vhost, reason): "broker refused user '\(user)' on vhost '\(vhost)': \(reason)"
        case let .channelClosed(code, text): "channel closed by the broker: \(code) \(text)"
        case let .connectionClosed(code, text): "connection closed by the broker: \(code) \(text)"
        case let .connectionLost(host, port, reason): "connection to \(host):\(port) lost: \(reason)"
        case let .publishNacked(exchange, key, id): "broker nacked message \(id) to '\(exchange)' with key '\(key)'"
        case let .publishReturned(exchange, key, code, text): "message to '\(exchange)' with key '\(key)' was returned unroutable: \(code) \(text)"
        case let .messageTooLarge(size, limit): "message of \(size) bytes is over the limit of \(limit) bytes (bulk bytes go through Redis)"
        case let .declarationFailed(what, code, text): "declaring \(what) failed: \(code) \(text)"
        case let .protocolError(text): "AMQP protocol error: \(text)"
        case .clientClosed: "the AMQP client is closed"
        case let .deliveryVoid(tag): "delivery \(tag) came on a connection that has since been replaced: not settled; the broker requeued it and will deliver it again"
        }
    }
}
