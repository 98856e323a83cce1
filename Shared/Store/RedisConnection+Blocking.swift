/// Blocking reads. They hold the connection for up to the block time, so give them a connection of
/// their own (a second `RedisConnection`, or a second `RedisClient`) rather than the one serving other work.
extension RedisConnection {
    /// BLPOP: the first element pushed to any of `keys` within `block` (`.zero` waits forever), or nil on timeout.
    public func blpop(_ keys: [String], block: Duration) throws(RedisError) -> (key: String, value: [UInt8])? {
        let reply = try command(["BLPOP"] + keys + [Self.seconds(block)], timeout: Self.blockingTimeout(block, options))
        if reply.isNull { return nil }
        guard let pair = reply.array, pair.count == 2, let key = pair[0].string, let value = pair[1].bytes else {
            throw .unexpectedReply(command: "BLPOP", reply: reply)
        }
        return (key, value)
    }

    /// XREAD [BLOCK ms]: entries after the given id of each stream ("$" means only new ones); empty on timeout.
    public func xread(_ streams: [(key: String, after: String)], count: Int? = nil, block: Duration? = nil) throws(RedisError) -> [String: [RedisStreamEntry]] {
        var arguments: [any RedisArgument] = ["XREAD"]
        if let count { arguments += ["COUNT", count] }
        if let block { arguments += ["BLOCK", Self.milliseconds(block)] }
        arguments.append("STREAMS")
        arguments += streams.map(\.key)
        arguments += streams.map(\.after)
        let reply = try command(arguments, timeout: block.map { Self.blockingTimeout($0, options) })
        if reply.isNull { return [:] }
        guard let perStream = reply.array else { throw .unexpectedReply(command: "XREAD", reply: reply) }
        var result: [String: [RedisStreamEntry]] = [:]
        for item in perStream {
            guard let pair = item.array, pair.count == 2, let key = pair[0].string, let items = pair[1].array else {
                throw .unexpectedReply(command: "XREAD", reply: reply)
            }
            var entries: [RedisStreamEntry] = []
            for entry in items { entries.append(try RedisStreamEntry(reply: entry, command: "XREAD \(key)")) }
            result[key] = entries
        }
        return result
    }

    /// Seconds with millisecond precision, as BLPOP takes them.
    private static func seconds(_ duration: Duration) -> String {
        let ms = milliseconds(duration)
        return "\(ms / 1000).\(String(ms % 1000 + 1000).dropFirst())"
    }
}
