/// One entry of a Redis stream: its id ("1700000000000-0") and field/value pairs.
public struct RedisStreamEntry: Sendable, Equatable {
    public var id: String
    public var fields: [String: [UInt8]]

    public init(id: String, fields: [String: [UInt8]]) {
        self.id = id
        self.fields = fields
    }

    /// Parses `[id, [field, value, ...]]` as XRANGE and XREAD return it.
    init(reply: RedisReply, command: String) throws(RedisError) {
        guard let pair = reply.array, pair.count == 2, let id = pair[0].string, let flat = pair[1].array, flat.count % 2 == 0
        else { throw .unexpectedReply(command: command, reply: reply) }
        var fields: [String: [UInt8]] = [:]
        for i in stride(from: 0, to: flat.count, by: 2) {
            guard let name = flat[i].string, let value = flat[i + 1].bytes else { throw .unexpectedReply(command: command, reply: reply) }
            fields[name] = value
        }
        self.init(id: id, fields: fields)
    }
}
