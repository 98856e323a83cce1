/// Lua scripts: EVALSHA first, EVAL when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
extension RedisConnection {
    @discardableResult
    public func eval(_ script: RedisScript, keys: [any RedisArgument] = [], args: [any RedisArgument] = []) throws(RedisError) -> RedisReply {
        do {
            return try command(["EVALSHA", script.sha1, keys.count] + keys + args)
        } catch {
            guard case .server(let message, _) = error, message.hasPrefix("NOSCRIPT") else { throw error }
            // EVAL also caches the script, so the next EVALSHA finds it.
            return try command(["EVAL", script.source, keys.count] + keys + args)
        }
    }

    /// Loads `script` into the script cache ahead of use; returns its SHA-1 as Redis computed it.
    @discardableResult
    public func load(_ script: RedisScript) throws(RedisError) -> String {
        let reply = try command(["SCRIPT", "LOAD", script.source])
        guard let sha = reply.string else { throw .unexpectedReply(command: "SCRIPT LOAD", reply: reply) }
        return sha
    }
}
