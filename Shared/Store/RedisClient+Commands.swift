/// The async forms of `RedisConnection`'s commands; each runs on the client's thread.
extension RedisClient {
    @discardableResult
    public func command(_ arguments: [any RedisArgument], timeout: Duration? = nil) async throws(RedisError) -> RedisReply {
        try await run { connection throws(RedisError) in try connection.command(arguments, timeout: timeout) }
    }

    public func pipeline(_ commands: [[any RedisArgument]], timeout: Duration? = nil) async throws(RedisError) -> [RedisReply] {
        try await run { connection throws(RedisError) in try connection.pipeline(commands, timeout: timeout) }
    }

    @discardableResult
    public func eval(_ script: RedisScript, keys: [any RedisArgument] = [], args: [any RedisArgument] = []) async throws(RedisError) -> RedisReply {
        try await run { connection throws(RedisError) in try connection.eval(script, keys: keys, args: args) }
    }

    public func get(_ key: String) async throws(RedisError) -> [UInt8]? {
        try await run { connection throws(RedisError) in try connection.get(key) }
    }

    @discardableResult
    public func set(_ key: String, _ value: some RedisArgument, ttl: Duration? = nil, onlyIfAbsent: Bool = false) async throws(RedisError) -> Bool {
        try await run { connection throws(RedisError) in try connection.set(key, value, ttl: ttl, onlyIfAbsent: onlyIfAbsent) }
    }

    @discardableResult
    public func del(_ keys: [String]) async throws(RedisError) -> Int {
        try await run { connection throws(RedisError) in try connection.del(keys) }
    }

    public func exists(_ key: String) async throws(RedisError) -> Bool {
        try await run { connection throws(RedisError) in try connection.exists(key) }
    }

    @discardableResult
    public func expire(_ key: String, after ttl: Duration) async throws(RedisError) -> Bool {
        try await run { connection throws(RedisError) in try connection.expire(key, after: ttl) }
    }

    @discardableResult
    public func incr(_ key: String, by amount: Int64 = 1) async throws(RedisError) -> Int64 {
        try await run { connection throws(RedisError) in try connection.incr(key, by: amount) }
    }

    @discardableResult
    public func hset(_ key: String, fields: [String: any RedisArgument]) async throws(RedisError) -> Int {
        try await run { connection throws(RedisError) in try connection.hset(key, fields: fields) }
    }

    public func hget(_ key: String, field: String) async throws(RedisError) -> [UInt8]? {
        try await run { connection throws(RedisError) in try connection.hget(key, field: field) }
    }

    public func hgetall(_ key: String) async throws(RedisError) -> [String: [UInt8]] {
        try await run { connection throws(RedisError) in try connection.hgetall(key) }
    }

    @discardableResult
    public func xadd(_ key: String, id: String = "*", fields: [String: any RedisArgument], maxLength: Int? = nil) async throws(RedisError) -> String {
        try await run { connection throws(RedisError) in try connection.xadd(key, id: id, fields: fields, maxLength: maxLength) }
    }

    public func xrange(_ key: String, from start: String = "-", to end: String = "+", count: Int? = nil) async throws(RedisError) -> [RedisStreamEntry] {
        try await run { connection throws(RedisError) in try connection.xrange(key, from: start, to: end, count: count) }
    }

    public func xrevrange(_ key: String, from start: String = "+", to end: String = "-", count: Int? = nil) async throws(RedisError) -> [RedisStreamEntry] {
        try await run { connection throws(RedisError) in try connection.xrevrange(key, from: start, to: end, count: count) }
    }

    /// Blocking when `block` is set: use a client of its own for it.
    public func xread(_ streams: [(key: String, after: String)], count: Int? = nil, block: Duration? = nil) async throws(RedisError) -> [String: [RedisStreamEntry]] {
        try await run { connection throws(RedisError) in try connection.xread(streams, count: count, block: block) }
    }

    /// Blocking: use a client of its own for it.
    public func blpop(_ keys: [String], block: Duration) async throws(RedisError) -> (key: String, value: [UInt8])? {
        try await run { connection throws(RedisError) in try connection.blpop(keys, block: block) }
    }

    public func scanKeys(matching pattern: String, count: Int = 1000) async throws(RedisError) -> [String] {
        try await run { connection throws(RedisError) in try connection.scanKeys(matching: pattern, count: count) }
    }

    /// Blocks this client's thread for up to `timeoutMs`.
    @discardableResult
    public func wait(numReplicas: Int, timeoutMs: Int) async throws(RedisError) -> Int {
        try await run { connection throws(RedisError) in try connection.wait(numReplicas: numReplicas, timeoutMs: timeoutMs) }
    }
}
