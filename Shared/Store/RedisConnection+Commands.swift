/// Typed helpers for the commands Tributary uses; anything else goes through `command`.
extension RedisConnection {
    public func ping() throws(RedisError) {
        let reply = try command(["PING"])
        guard reply == .status("PONG") else { throw .unexpectedReply(command: "PING", reply: reply) }
    }

    /// The value at `key`, or nil when the key does not exist.
    public func get(_ key: String) throws(RedisError) -> [UInt8]? {
        let reply = try command(["GET", key])
        if reply.isNull { return nil }
        guard case .string(let bytes) = reply else { throw .unexpectedReply(command: "GET \(key)", reply: reply) }
        return bytes
    }

    /// SET, optionally with a time to live, optionally only when the key is absent (NX).
    /// Returns false when `onlyIfAbsent` and the key already existed.
    @discardableResult
    public func set(_ key: String, _ value: some RedisArgument, ttl: Duration? = nil, onlyIfAbsent: Bool = false) throws(RedisError) -> Bool {
        var arguments: [any RedisArgument] = ["SET", key, value]
        if let ttl { arguments += ["PX", Self.milliseconds(ttl)] }
        if onlyIfAbsent { arguments.append("NX") }
        let reply = try command(arguments)
        if reply.isNull { return false }
        guard reply == .status("OK") else { throw .unexpectedReply(command: "SET \(key)", reply: reply) }
        return true
    }

    /// Number of keys deleted.
    @discardableResult
    public func del(_ keys: [String]) throws(RedisError) -> Int {
        guard !keys.isEmpty else { return 0 }
        return try integer(["DEL"] + keys, "DEL")
    }

    @discardableResult
    public func del(_ keys: String...) throws(RedisError) -> Int { try del(keys) }

    public func exists(_ key: String) throws(RedisError) -> Bool { try integer(["EXISTS", key], "EXISTS") == 1 }

    /// Sets a time to live (PEXPIRE); false when the key does not exist.
    @discardableResult
    public func expire(_ key: String, after ttl: Duration) throws(RedisError) -> Bool {
        try integer(["PEXPIRE", key, Self.milliseconds(ttl)], "PEXPIRE") == 1
    }

    @discardableResult
    public func incr(_ key: String, by amount: Int64 = 1) throws(RedisError) -> Int64 {
        Int64(try integer(["INCRBY", key, amount], "INCRBY"))
    }

    /// Number of fields that were new.
    @discardableResult
    public func hset(_ key: String, fields: [String: any RedisArgument]) throws(RedisError) -> Int {
        guard !fields.isEmpty else { return 0 }
        var arguments: [any RedisArgument] = ["HSET", key]
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) { arguments += [name, value] }
        return try integer(arguments, "HSET")
    }

    public func hget(_ key: String, field: String) throws(RedisError) -> [UInt8]? {
        let reply = try command(["HGET", key, field])
        if reply.isNull { return nil }
        guard case .string(let bytes) = reply else { throw .unexpectedReply(command: "HGET \(key)", reply: reply) }
        return bytes
    }

    /// All fields of a hash; empty when the key does not exist.
    public func hgetall(_ key: String) throws(RedisError) -> [String: [UInt8]] {
        let reply = try command(["HGETALL", key])
        guard let flat = reply.array, flat.count % 2 == 0 else { throw .unexpectedReply(command: "HGETALL \(key)", reply: reply) }
        var fields: [String: [UInt8]] = [:]
        for i in stride(from: 0, to: flat.count, by: 2) {
            guard let name = flat[i].string, let value = flat[i + 1].bytes else {
                throw .unexpectedReply(command: "HGETALL \(key)", reply: reply)
            }
            fields[name] = value
        }
        return fields
    }

    /// Appends an entry to a stream, trimming it to about `maxLength` entries; returns the new id.
    @discardableResult
    public func xadd(_ key: String, id: String = "*", fields: [String: any RedisArgument], maxLength: Int? = nil) throws(RedisError) -> String {
        let reply = try command(Self.xaddCommand(key, id: id, fields: fields, maxLength: maxLength))
        guard let newID = reply.string else { throw .unexpectedReply(command: "XADD \(key)", reply: reply) }
        return newID
    }

    /// The XADD command `xadd` sends, for a pipeline.
    public static func xaddCommand(_ key: String, id: String = "*", fields: [String: any RedisArgument], maxLength: Int? = nil) -> [any RedisArgument] {
        var arguments: [any RedisArgument] = ["XADD", key]
        if let maxLength { arguments += ["MAXLEN", "~", maxLength] }
        arguments.append(id)
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) { arguments += [name, value] }
        return arguments
    }

    /// Entries with ids in start...end, oldest first ("-" and "+" are the ends of the stream).
    public func xrange(_ key: String, from start: String = "-", to end: String = "+", count: Int? = nil) throws(RedisError) -> [RedisStreamEntry] {
        try entries(["XRANGE", key, start, end], count: count, "XRANGE \(key)")
    }

    /// Entries with ids in end...start, newest first.
    public func xrevrange(_ key: String, from start: String = "+", to end: String = "-", count: Int? = nil) throws(RedisError) -> [RedisStreamEntry] {
        try entries(["XREVRANGE", key, start, end], count: count, "XREVRANGE \(key)")
    }

    /// Every key matching `pattern`, by SCAN (never KEYS, which blocks the server).
    public func scanKeys(matching pattern: String, count: Int = 1000) throws(RedisError) -> [String] {
        var cursor = "0", keys: [String] = []
        repeat {
            let reply = try command(["SCAN", cursor, "MATCH", pattern, "COUNT", count])
            guard let pair = reply.array, pair.count == 2, let next = pair[0].string, let batch = pair[1].array else {
                throw .unexpectedReply(command: "SCAN \(pattern)", reply: reply)
            }
            keys += batch.compactMap(\.string)
            cursor = next
        } while cursor != "0"
        return keys
    }

    /// WAIT: blocks until earlier writes reached `numReplicas` replicas or `timeoutMs` passed; returns replicas reached.
    @discardableResult
    public func wait(numReplicas: Int, timeoutMs: Int) throws(RedisError) -> Int {
        let reply = try command(["WAIT", numReplicas, timeoutMs], timeout: Self.blockingTimeout(.milliseconds(timeoutMs), options))
        guard case .integer(let n) = reply else { throw .unexpectedReply(command: "WAIT", reply: reply) }
        return Int(n)
    }

    // MARK: Helpers

    func integer(_ arguments: [any RedisArgument], _ name: String) throws(RedisError) -> Int {
        let reply = try command(arguments)
        guard case .integer(let n) = reply else { throw .unexpectedReply(command: name, reply: reply) }
        return Int(n)
    }

    private func entries(_ arguments: [any RedisArgument], count: Int?, _ name: String) throws(RedisError) -> [RedisStreamEntry] {
        let reply = try command(arguments + (count.map { ["COUNT", $0] } ?? []))
        guard let items = reply.array else { throw .unexpectedReply(command: name, reply: reply) }
        var result: [RedisStreamEntry] = []
        for item in items { result.append(try RedisStreamEntry(reply: item, command: name)) }
        return result
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Read timeout for a command that blocks on the server for `block`: that long plus the usual margin; forever for `.zero`.
    static func blockingTimeout(_ block: Duration, _ options: Options) -> Duration {
        block == .zero || options.commandTimeout == .zero ? .zero : block + options.commandTimeout
    }
}
