import CHiredis
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A synchronous Redis connection (hiredis, blocking I/O).
///
/// Not thread-safe, and deliberately not Sendable: hiredis keeps per-connection buffers and parser state
/// with no locking, so one thread at a time owns a connection. From Swift concurrency use `RedisClient`,
/// which owns a connection on a thread of its own.
///
/// Blocking commands (BLPOP, XREAD BLOCK, WAIT) hold the connection until they return: give them a
/// connection of their own and a `timeout:` longer than the block time (see `RedisConnection+Blocking`).
///
/// After an I/O error or a timeout the socket is dropped (its reply stream can no longer be trusted); the
/// next command reconnects with bounded exponential backoff, then re-runs AUTH and SELECT.
public final class RedisConnection {
    public struct Options: Sendable {
        public var connectTimeout: Duration = .seconds(5)
        /// Read and write timeout of every command unless the command gives its own; `.zero` waits forever.
        public var commandTimeout: Duration = .seconds(30)
        /// Reconnect attempts after a lost connection, waiting base, 2·base, 4·base, … (at most maxDelay) between them.
        public var reconnectAttempts: Int = 6
        public var reconnectBaseDelay: Duration = .milliseconds(50)
        public var reconnectMaxDelay: Duration = .seconds(2)
        /// Re-send a command once after its connection broke mid-flight. Only for idempotent workloads:
        /// the first attempt may have run (e.g. an INCR whose reply was lost).
        public var retryAfterConnectionLoss: Bool = false

        public init() {}
    }

    public let endpoint: RedisEndpoint
    public let options: Options
    private var context: UnsafeMutablePointer<redisContext>?
    /// The read/write timeout set on the current socket, so it is only changed when needed.
    private var appliedTimeout: Duration?
    /// Connections opened so far (1 after init); tests and logs use it to see reconnects.
    public private(set) var connectCount = 0

    /// Connects, authenticates and selects the database; one attempt, so a wrong address fails fast.
    public init(endpoint: RedisEndpoint, options: Options = Options()) throws(RedisError) {
        self.endpoint = endpoint
        self.options = options
        try open()
    }

    public convenience init(url: String, options: Options = Options()) throws(RedisError) {
        try self.init(endpoint: RedisEndpoint(url: url), options: options)
    }

    deinit { if let context { redisFree(context) } }

    /// True while a socket is open (false after an I/O error until the next command reconnects).
    public var isConnected: Bool { context != nil }

    /// Closes the socket; the next command reconnects.
    public func close() {
        if let context { redisFree(context) }
        context = nil
        appliedTimeout = nil
    }

    // MARK: Commands

    /// Sends one command and waits for its reply; an error reply throws `RedisError.server`.
    /// `timeout` overrides `options.commandTimeout` for this command (`.zero` waits forever).
    @discardableResult
    public func command(_ arguments: [any RedisArgument], timeout: Duration? = nil) throws(RedisError) -> RedisReply {
        let name = Self.describe(arguments)
        do {
            return try attempt(arguments, name: name, timeout: timeout)
        } catch let error where error.isConnectionLoss && options.retryAfterConnectionLoss && error.isRetryable {
            return try attempt(arguments, name: name, timeout: timeout)
        }
    }

    @discardableResult
    private func attempt(_ arguments: [any RedisArgument], name: String, timeout: Duration?) throws(RedisError) -> RedisReply {
        let context = try connected()
        try applyTimeout(timeout ?? options.commandTimeout)
        let raw = Self.withArgv(arguments) { argc, argv, lengths in
            redisCommandArgv(context, argc, argv, lengths)
        }
        guard let raw else { throw failure(command: name) }
        let reply = Self.convert(raw.assumingMemoryBound(to: redisReply.self))
        freeReplyObject(raw)
        if timeout != nil { try applyTimeout(options.commandTimeout) }
        return try reply.checked(command: name)
    }

    /// Sends all commands in one write, then reads all replies in order (one round trip).
    /// Error replies stay in the result as `.error` so one failing command does not hide the others.
    public func pipeline(_ commands: [[any RedisArgument]], timeout: Duration? = nil) throws(RedisError) -> [RedisReply] {
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        try pipeline(commands, timeout: timeout) { _, reply in replies.append(reply) }
        return replies
    }

    /// Sends every command at once, then hands each reply to `each` (with its command's index) as it arrives, so the
    /// caller can work on one while the next is still on the wire.
    public func pipeline(_ commands: [[any RedisArgument]], timeout: Duration? = nil, each: (Int, RedisReply) -> Void) throws(RedisError) {
        guard !commands.isEmpty else { return }
        let context = try connected()
        try applyTimeout(timeout ?? options.commandTimeout)
        for arguments in commands {
            let status = Self.withArgv(arguments) { argc, argv, lengths in
                redisAppendCommandArgv(context, argc, argv, lengths)
            }
            if status != REDIS_OK { throw failure(command: "pipeline " + Self.describe(arguments)) }
        }
        for (index, arguments) in commands.enumerated() {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
                throw failure(command: "pipeline " + Self.describe(arguments))
            }
            let reply = Self.convert(raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            each(index, reply)
        }
        if timeout != nil { try applyTimeout(options.commandTimeout) }
    }

    // MARK: Connecting

    /// The open context, reconnecting first (with backoff) if the last one broke.
    private func connected() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        if let context { return context }
        try reconnect()
        return context!
    }

    /// Opens a new socket, retrying connection losses with bounded exponential backoff.
    /// Authentication and SELECT errors are not retried: they will not get better by waiting.
    public func reconnect() throws(RedisError) {
        close()
        var delay = options.reconnectBaseDelay
        var attempt = 1
        while true {
            do {
                try open()
                return
            } catch let error where error.isConnectionLoss && attempt < max(options.reconnectAttempts, 1) {
                Self.sleep(delay)
                delay = min(delay * 2, options.reconnectMaxDelay)
                attempt += 1
            }
        }
    }

    private func open() throws(RedisError) {
        let host = endpoint.host, port = endpoint.port
        guard let context = redisConnectWithTimeout(host, Int32(port), Self.timeval(options.connectTimeout)) else {
            throw .connectFailed(host: host, port: port, message: "hiredis could not allocate a context")
        }
        if context.pointee.err != 0 {
            let savedErrno = errno
            let message = Self.errorString(context)
            redisFree(context)
            if savedErrno == ECONNREFUSED || message.contains("refused") { throw .connectionRefused(host: host, port: port) }
            throw .connectFailed(host: host, port: port, message: message)
        }
        // A 4 MiB reply should not be re-grown and freed on every read: keep the reader buffer.
        context.pointee.reader.pointee.maxbuf = 0
        self.context = context
        appliedTimeout = nil
        connectCount += 1
        do throws(RedisError) {
            try applyTimeout(options.commandTimeout)
            if let password = endpoint.password {
                do throws(RedisError) {
                    if let user = endpoint.user {
                        try attempt(["AUTH", user, password], name: "AUTH", timeout: nil)
                    } else {
                        try attempt(["AUTH", password], name: "AUTH", timeout: nil)
                    }
                } catch {
                    guard case .server(let message, _) = error else { throw error }
                    throw RedisError.authenticationFailed(user: endpoint.user, message: message)
                }
            }
            if endpoint.database != 0 { try attempt(["SELECT", endpoint.database], name: "SELECT", timeout: nil) }
        } catch {
            close()
            throw error
        }
    }

    private func applyTimeout(_ timeout: Duration) throws(RedisError) {
        guard appliedTimeout != timeout, let context else { return }
        if redisSetTimeout(context, Self.timeval(timeout)) != REDIS_OK {
            throw failure(command: "set timeout")
        }
        appliedTimeout = timeout
    }

    /// Classifies hiredis's error on the current context, then drops the context (its stream is unusable).
    private func failure(command describe: @autoclosure () -> String) -> RedisError {
        let savedErrno = errno  // before anything else can touch it
        let command = describe()
        let host = endpoint.host, port = endpoint.port
        guard let context else { return .io(host: host, port: port, command: command, message: "not connected") }
        let code = context.pointee.err
        let message = Self.errorString(context)
        close()
        switch code {
        case REDIS_ERR_IO where savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || message.contains("temporarily unavailable"):
            return .timeout(host: host, port: port, command: command)
        case REDIS_ERR_EOF:
            return .io(host: host, port: port, command: command, message: "server closed the connection")
        case REDIS_ERR_PROTOCOL:
            return .protocolError(host: host, port: port, message: message)
        default:
            return .io(host: host, port: port, command: command, message: message.isEmpty ? "error \(code)" : message)
        }
    }
}

extension RedisError {
    /// Timeouts are not retried: the command probably ran and is just slow, or is blocking on purpose.
    var isRetryable: Bool {
        if case .timeout = self { return false }
        return true
    }
}
