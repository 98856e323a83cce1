import Foundation

/// Redis for Swift concurrency: a `RedisConnection` owned by a dedicated thread, running submitted work
/// serially, so blocking socket I/O never runs on the cooperative pool.
///
/// Commands from many tasks are queued and run one after another on that thread, in submission order.
/// Blocking reads (BLPOP, XREAD BLOCK, WAIT) hold the thread until they return: use a second client for them.
/// A task cancelled while its command is queued or running still waits for it; hiredis cannot be interrupted.
/// The connection is opened on first use (or by `connect()`), and reopened after a loss as `RedisConnection` does.
public final class RedisClient: Sendable {
    public let endpoint: RedisEndpoint
    private let worker: RedisWorker

    public init(endpoint: RedisEndpoint, options: RedisConnection.Options = .init()) {
        self.endpoint = endpoint
        self.worker = RedisWorker(endpoint: endpoint, options: options)
    }

    /// A client for `TRIBUTARY_REDIS_URL`, or redis://127.0.0.1:6389.
    public convenience init(options: RedisConnection.Options = .init()) throws(RedisError) {
        self.init(endpoint: try .fromEnvironment(), options: options)
    }

    deinit { worker.close() }

    /// Opens the connection now (AUTH, SELECT), so a bad address or password shows up at start-up.
    public func connect() async throws(RedisError) {
        try await run { connection throws(RedisError) in try connection.ping() }
    }

    /// Stops the thread after the queued work; later calls throw `RedisError.closed`.
    public func close() { worker.close() }

    /// Runs `body` on the connection's thread. `body` must not keep the connection.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (RedisConnection) throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            worker.submit { connection in
                continuation.resume(returning: Result { try body(connection()) })
            }
        }
        return try result.get()
    }

    /// Like `withConnection`, for bodies that only throw `RedisError`.
    public func run<T: Sendable>(_ body: @escaping @Sendable (RedisConnection) throws(RedisError) -> T) async throws(RedisError) -> T {
        let result: Result<T, RedisError> = await withCheckedContinuation { continuation in
            worker.submit { connection in
                continuation.resume(returning: Result { () throws(RedisError) in try body(connection()) })
            }
        }
        return try result.get()
    }
}

/// The thread, its job queue and (on the thread only) the connection.
private final class RedisWorker: @unchecked Sendable {
    /// A job gets a function that returns the open connection, or throws why there is none.
    typealias Job = @Sendable (() throws(RedisError) -> RedisConnection) -> Void

    private let endpoint: RedisEndpoint
    private let options: RedisConnection.Options
    // Guarded by `condition`: jobs, closed, started.
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var closed = false
    private var started = false

    init(endpoint: RedisEndpoint, options: RedisConnection.Options) {
        self.endpoint = endpoint
        self.options = options
    }

    func submit(_ job: @escaping Job) {
        condition.lock()
        if closed {
            condition.unlock()
            let endpoint = endpoint
            job { () throws(RedisError) in throw .closed(host: endpoint.host, port: endpoint.port) }
            return
        }
        jobs.append(job)
        if !started {
            started = true
            // The thread holds the worker until the queue is closed and drained.
            let thread = Thread { [self] in loop() }
            thread.name = "redis:\(endpoint.port)"  // Linux thread names hold 15 bytes
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.signal()
        condition.unlock()
    }

    private func next() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty && !closed { condition.wait() }
        return jobs.isEmpty ? nil : jobs.removeFirst()
    }

    private func loop() {
        var connection: RedisConnection?
        let endpoint = endpoint, options = options
        while let job = next() {
            job { () throws(RedisError) -> RedisConnection in
                if let connection { return connection }
                let opened = try RedisConnection(endpoint: endpoint, options: options)
                connection = opened
                return opened
            }
        }
        connection?.close()
    }
}
