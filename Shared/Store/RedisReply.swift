/// One reply from Redis, copied out of hiredis into Swift values.
public enum RedisReply: Sendable, Equatable, CustomStringConvertible {
    /// A bulk string: binary-safe bytes.
    case string([UInt8])
    /// A simple status such as "OK" or "QUEUED".
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    /// A nil bulk string or nil array (a missing key, a timed-out blocking read).
    case null
    /// An error reply, e.g. "WRONGTYPE ..." (only seen inside pipelines and arrays; `command` throws it).
    case error(String)

    /// Bytes of a bulk string, or the UTF-8 of a status.
    public var bytes: [UInt8]? {
        switch self {
        case .string(let b): b
        case .status(let s): Array(s.utf8)
        default: nil
        }
    }

    /// A bulk string or status as text (bulk strings decoded as UTF-8, repairing invalid sequences).
    public var string: String? {
        switch self {
        case .string(let b): String(decoding: b, as: UTF8.self)
        case .status(let s): s
        default: nil
        }
    }

    /// An integer reply, or a bulk string holding a decimal integer (as GET of an INCR'd key returns).
    public var int: Int64? {
        switch self {
        case .integer(let i): i
        case .string(let b): Int64(String(decoding: b, as: UTF8.self))
        default: nil
        }
    }

    public var array: [RedisReply]? {
        if case .array(let a) = self { a } else { nil }
    }

    public var isNull: Bool { self == .null }

    /// The message of an error reply.
    public var errorMessage: String? {
        if case .error(let e) = self { e } else { nil }
    }

    /// Self, or `RedisError.server` when this is an error reply to `command`.
    public func checked(command: String) throws(RedisError) -> RedisReply {
        if case .error(let message) = self { throw .server(message: message, command: command) }
        return self
    }

    public var description: String {
        switch self {
        case .string(let b):
            b.count <= 64 ? "\"\(String(decoding: b, as: UTF8.self))\"" : "<\(b.count) bytes>"
        case .status(let s): s
        case .integer(let i): "(integer) \(i)"
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .null: "(nil)"
        case .error(let e): "(error) \(e)"
        }
    }
}
