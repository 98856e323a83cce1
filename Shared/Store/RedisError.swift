/// What went wrong talking to Redis, and where.
public enum RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Nothing listens on host:port.
    case connectionRefused(host: String, port: Int)
    /// Connecting failed for another reason (unknown host, unreachable network, connect timeout).
    case connectFailed(host: String, port: Int, message: String)
    /// AUTH was refused; `user` is nil for password-only AUTH.
    case authenticationFailed(user: String?, message: String)
    /// No reply within the read/write timeout. The connection is dropped and reopened on next use.
    case timeout(host: String, port: Int, command: String)
    /// The socket failed or the server closed it mid-command; the command may or may not have run.
    case io(host: String, port: Int, command: String, message: String)
    /// Redis answered `command` with an error reply.
    case server(message: String, command: String)
    /// The bytes from Redis did not parse as RESP.
    case protocolError(host: String, port: Int, message: String)
    /// A well-formed reply of the wrong shape for `command` (e.g. an integer where bytes were expected).
    case unexpectedReply(command: String, reply: RedisReply)
    /// A `redis://` URL that does not parse; `part` names the piece that is wrong.
    case invalidURL(url: String, part: String, reason: String)
    /// The `RedisClient` was closed before or while the command was queued.
    case closed(host: String, port: Int)

    public var description: String {
        switch self {
        case .connectionRefused(let host, let port):
            "redis: connection refused by \(host):\(port) (is Redis running? scripts/brokers.sh start)"
        case .connectFailed(let host, let port, let message):
            "redis: cannot connect to \(host):\(port): \(message)"
        case .authenticationFailed(let user, let message):
            "redis: authentication failed for user \(user ?? "default"): \(message)"
        case .timeout(let host, let port, let command):
            "redis: \(command) to \(host):\(port) timed out"
        case .io(let host, let port, let command, let message):
            "redis: I/O error on \(command) to \(host):\(port): \(message)"
        case .server(let message, let command):
            "redis: \(command) failed: \(message)"
        case .protocolError(let host, let port, let message):
            "redis: protocol error from \(host):\(port): \(message)"
        case .unexpectedReply(let command, let reply):
            "redis: unexpected reply to \(command): \(reply)"
        case .invalidURL(let url, let part, let reason):
            "redis: bad URL \(url): \(part): \(reason)"
        case .closed(let host, let port):
            "redis: client for \(host):\(port) is closed"
        }
    }

    /// True when the connection itself broke (reconnecting may help), not when Redis refused the command.
    public var isConnectionLoss: Bool {
        switch self {
        case .io, .timeout, .connectionRefused, .connectFailed, .protocolError: true
        default: false
        }
    }
}
