import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A RabbitMQ client for Swift concurrency. One thread owns the librabbitmq-c connection (which is not
/// thread-safe and only does I/O, heartbeats included, inside its calls); async callers hand it commands
/// and are resumed when the broker has answered, so the cooperative pool never blocks on the socket.
///
/// On a lost connection it reconnects with backoff, declares the topology again, resumes consumers
/// and re-publishes every message the broker had not confirmed.
///
/// Given several endpoints (a cluster's nodes), it tries them in turn: on connect from the first, and after a lost
/// connection from the one after the node it lost, so a dead node is tried last.
public final class AMQPClient: Sendable {
    /// The brokers it may connect to, in the order it tries them.
    public let endpoints: [AMQPEndpoint]
    public let name: String
    public let maxMessageSize: Int
    private let commands = Mutex<CommandQueue>(CommandQueue())
    /// A self-pipe: writing to it wakes the owning thread out of poll().
    private let wakeDescriptors: (read: Int32, write: Int32)
    private let logger: Logger
    private let started = Mutex(false)
    private let connectedFlag = Atomic<Bool>(false)
    private let topology: Topology
    /// Index into `endpoints` of the current connection's broker (the last one's while disconnected).
    private let currentIndex = Atomic<Int>(0)
    /// With several endpoints: how long after a lost connection it waits before connecting to another node.
    let failoverPause: Duration

    public convenience init(endpoint: AMQPEndpoint, topology: Topology = Topology(), name: String = "tributary",
                            maxMessageSize: Int = 16 << 20, logger: Logger = Logger(label: "tributary.amqp")) {
        self.init(endpoints: [endpoint], topology: topology, name: name, maxMessageSize: maxMessageSize, logger: logger)
    }

    /// `endpoints` must not be empty (`AMQPEndpoint.list` never returns an empty list).
    ///
    /// `failoverPause` (several endpoints only): after a lost connection, the wait before connecting to the next node,
    /// as RabbitMQ's own clients wait before recovering (the Java client 5 s). When a node dies, the others still see
    /// it as the leader of its quorum queues until they notice and elect new leaders; on RabbitMQ 3.10 a connection
    /// opened on a survivor within that window had its publishes to a quorum queue nacked for minutes.
    public init(endpoints: [AMQPEndpoint], topology: Topology = Topology(), name: String = "tributary",
                maxMessageSize: Int = 16 << 20, failoverPause: Duration = .seconds(2), logger: Logger = Logger(label: "tributary.amqp")) {
        precondition(!endpoints.isEmpty, "AMQPClient needs at least one endpoint")
        self.endpoints = endpoints
        self.failoverPause = failoverPause
        self.topology = topology
        self.name = name
        self.maxMessageSize = maxMessageSize
        self.logger = logger
        var descriptors: [Int32] = [-1, -1]
        if pipe(&descriptors) != 0 { fatalError("pipe failed: errno \(errno)") }
        for descriptor in descriptors {
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        }
        wakeDescriptors = (descriptors[0], descriptors[1])
    }

    deinit {
        Glibc.close(wakeDescriptors.read)
        Glibc.close(wakeDescriptors.write)
    }

    /// Whether the owning thread holds an open connection right now.
    public var isConnected: Bool { connectedFlag.load(ordering: .relaxed) }

    /// The broker of the current connection (of the last one while disconnected; the first before any).
    public var endpoint: AMQPEndpoint { endpoints[currentIndex.load(ordering: .relaxed)] }

    /// Connects and declares the topology; throws the first failure (refused, authentication, declaration).
    /// After this succeeds, later losses are repaired in the background.
    public func connect() async throws {
        let alreadyStarted = started.withLock { started in
            defer { started = true }
            return started
        }
        guard !alreadyStarted else { return }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let worker = AMQPWorker(client: self, endpoints: endpoints, topology: topology, logger: logger, ready: continuation)
                let thread = Thread { worker.run() }
                thread.name = "amqp-\(name)"
                thread.start()
            }
        } catch {
            // The owning thread has ended; a later connect() may try again.
            commands.withLock { $0.closed = false }
            started.withLock { $0 = false }
            throw error
        }
    }

    /// Publishes a persistent message and returns once the broker has confirmed it. Its user_id is the login user, which
    /// RabbitMQ checks, so a consumer knows who published it; `userID` other than that is refused (tests show it is).
    /// Throws `publishNacked`, `publishReturned` (unroutable, with mandatory), `messageTooLarge` or `clientClosed`.
    public func publish(exchange: String, routingKey: String, body: [UInt8], messageID: String = UUID().uuidString,
                        headers: [String: AMQPFieldValue] = [:], mandatory: Bool = true, userID: String? = nil) async throws {
        guard body.count <= maxMessageSize else { throw AMQPError.messageTooLarge(size: body.count, limit: maxMessageSize) }
        let sortedHeaders = headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            submit(.publish(OutgoingMessage(exchange: exchange, routingKey: routingKey, body: body, messageID: messageID,
                                            userID: userID ?? endpoint.user, headers: sortedHeaders, mandatory: mandatory,
                                            continuation: continuation)))
        }
    }

    /// Consumes a queue with manual acknowledgement and at most `prefetch` unacknowledged deliveries.
    /// With `declare`, the queue (and its bindings) is declared first on every connect; a server-named
    /// queue (empty name) gets a fresh name after a reconnect.
    public func consume(queue: String, prefetch: Int, declare: QueueSpec? = nil, bindings: [BindingSpec] = []) -> AsyncThrowingStream<Delivery, Error> {
        let (stream, continuation) = AsyncThrowingStream<Delivery, Error>.makeStream()
        let tag = "\(name)-\(UUID().uuidString.prefix(8))"
        continuation.onTermination = { [weak self] _ in self?.submit(.cancel(consumerTag: tag)) }
        submit(.consume(ConsumerRegistration(tag: tag, queue: queue, prefetch: max(1, prefetch), declare: declare,
                                             bindings: bindings, continuation: continuation)))
        return stream
    }

    /// Declares more topology now, and again on every reconnect.
    public func declare(_ topology: Topology) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            submit(.declare(topology, continuation))
        }
    }

    /// Messages ready and consumers of a queue.
    public func inspect(queue: String) async throws -> (messages: Int, consumers: Int) {
        try await withCheckedThrowingContinuation { continuation in
            submit(.inspect(queue, continuation))
        }
    }

    /// Deletes every ready message of a queue; returns how many.
    @discardableResult
    public func purge(queue: String) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            submit(.purge(queue, continuation))
        }
    }

    public func delete(queue: String) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            submit(.delete(queue, continuation))
        }
    }

    /// Closes the connection: unconfirmed publishes fail with `clientClosed`, consumers' streams finish,
    /// and unacknowledged deliveries go back to their queues (the broker requeues them).
    public func close() async {
        let isStarted = started.withLock { $0 }
        guard isStarted else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            submit(.close(continuation))
        }
    }

    /// Test hook: drops the TCP connection without a closing handshake, as a crash would.
    public func simulateConnectionLoss() {
        submit(.dropConnection)
    }

    func settle(_ settlement: Settlement, tag: UInt64, generation: Int) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            submit(.settle(settlement, tag: tag, generation: generation, continuation))
        }
    }

    private func submit(_ command: Command) {
        let rejected: Command? = commands.withLock { queue in
            if queue.closed { return command }
            queue.pending.append(command)
            return nil
        }
        if let rejected {
            rejected.fail(AMQPError.clientClosed)
            return
        }
        var one: UInt8 = 1
        _ = write(wakeDescriptors.write, &one, 1)
    }

    // MARK: Owning thread's side

    fileprivate func takeCommands() -> [Command] {
        var drained = [UInt8](repeating: 0, count: 512)
        while read(wakeDescriptors.read, &drained, drained.count) > 0 {}
        return commands.withLock { queue in
            defer { queue.pending.removeAll() }
            return queue.pending
        }
    }

    /// Marks the queue closed and returns what was still pending.
    fileprivate func closeCommands() -> [Command] {
        commands.withLock { queue in
            queue.closed = true
            defer { queue.pending.removeAll() }
            return queue.pending
        }
    }

    fileprivate var wakeFD: Int32 { wakeDescriptors.read }

    fileprivate func setConnected(_ connected: Bool) { connectedFlag.store(connected, ordering: .relaxed) }

    fileprivate func setCurrentIndex(_ index: Int) { currentIndex.store(index, ordering: .relaxed) }
}

private struct CommandQueue {
    var pending: [Command] = []
    var closed = false
}

struct OutgoingMessage: Sendable {
    var exchange: String
    var routingKey: String
    var body: [UInt8]
    var messageID: String
    var userID: String
    var headers: [(String, AMQPFieldValue)]
    var mandatory: Bool
    var continuation: CheckedContinuation<Void, Error>
}

struct ConsumerRegistration: Sendable {
    var tag: String
    var queue: String
    var prefetch: Int
    var declare: QueueSpec?
    var bindings: [BindingSpec]
    var continuation: AsyncThrowingStream<Delivery, Error>.Continuation
}

enum Command: Sendable {
    case publish(OutgoingMessage)
    case consume(ConsumerRegistration)
    case cancel(consumerTag: String)
    case settle(Settlement, tag: UInt64, generation: Int, CheckedContinuation<Void, Error>)
    case declare(Topology, CheckedContinuation<Void, Error>)
    case inspect(String, CheckedContinuation<(messages: Int, consumers: Int), Error>)
    case purge(String, CheckedContinuation<Int, Error>)
    case delete(String, CheckedContinuation<Void, Error>)
    case dropConnection
    case close(CheckedContinuation<Void, Never>)

    func fail(_ error: Error) {
        switch self {
        case let .publish(message): message.continuation.resume(throwing: error)
        case let .consume(registration): registration.continuation.finish(throwing: error)
        case .cancel, .dropConnection: break
        case let .settle(_, _, _, continuation): continuation.resume(throwing: error)
        case let .declare(_, continuation): continuation.resume(throwing: error)
        case let .inspect(_, continuation): continuation.resume(throwing: error)
        case let .purge(_, continuation): continuation.resume(throwing: error)
        case let .delete(_, continuation): continuation.resume(throwing: error)
        case let .close(continuation): continuation.resume()
        }
    }
}

/// Everything the owning thread keeps; touched by that thread only.
private final class AMQPWorker: @unchecked Sendable {
    let client: AMQPClient
    let endpoints: [AMQPEndpoint]
    /// Index of the broker connected to (or last connected to); the next attempt starts here.
    var current = 0
    var endpoint: AMQPEndpoint { endpoints[current] }
    var topology: Topology
    let logger: Logger
    var ready: CheckedContinuation<Void, Error>?

    var connection: AMQPConnection?
    var generation = 0
    var nextPublishTag: UInt64 = 1
    /// Sent and awaiting the broker's confirm, by publish sequence number.
    var unconfirmed: [UInt64: OutgoingMessage] = [:]
    /// Waiting for a connection, in publish order (re-published after a reconnect).
    var unsent: [OutgoingMessage] = []
    /// Message ids the broker returned as unroutable; their confirm then fails the publish.
    var returned: [String: AMQPError] = [:]
    var consumers: [String: ConsumerRegistration] = [:]
    /// The queue each consumer reads on the current connection (server-named queues change).
    var consumerQueues: [String: String] = [:]
    var closing: CheckedContinuation<Void, Never>?
    var backoff = 0.05
    /// After a lost connection to one node of several: no reconnect before this (see `failoverPause`).
    var reconnectNotBefore: ContinuousClock.Instant?

    init(client: AMQPClient, endpoints: [AMQPEndpoint], topology: Topology, logger: Logger, ready: CheckedContinuation<Void, Error>) {
        self.client = client
        self.endpoints = endpoints
        self.topology = topology
        self.logger = logger
        self.ready = ready
    }

    func run() {
        signal(SIGPIPE, SIG_IGN)
        while closing == nil {
            if connection == nil {
                if let notBefore = reconnectNotBefore, ContinuousClock.now < notBefore {
                    let remaining = (notBefore - ContinuousClock.now).components
                    waitForWake(timeoutMilliseconds: Int32(max(1, remaining.seconds * 1000 + remaining.attoseconds / 1_000_000_000_000_000)))
                    handleCommandsWhileDisconnected()
                    continue
                }
                reconnectNotBefore = nil
                do {
                    try establish()
                    backoff = 0.05
                    ready?.resume()
                    ready = nil
                } catch {
                    if let ready {
                        // The first connect reports its failure to the caller and the client stops.
                        self.ready = nil
                        shutDown(error: error)
                        ready.resume(throwing: error)
                        return
                    }
                    logger.warning("AMQP reconnect failed, retrying in \(String(format: "%.2f", backoff)) s", metadata: ["error": "\(error)"])
                    waitForWake(timeoutMilliseconds: Int32(backoff * 1000))
                    backoff = min(backoff * 2, 5)
                    handleCommandsWhileDisconnected()
                    continue
                }
            }
            do {
                try handleCommands()
                try pumpFrames()
            } catch {
                connectionLost(error)
            }
        }
        shutDown(error: AMQPError.clientClosed)
    }

    /// Every broker once, from `current` on, until one takes the connection. With one broker its error is thrown as is;
    /// with several, a broker's answer (a refused login or declaration) says more than a refused connection, so the first
    /// such is thrown, else `noBrokerAnswered` with each one's error.
    func establish() throws {
        var failures: [(AMQPEndpoint, Error)] = []
        for offset in 0..<endpoints.count {
            let index = (current + offset) % endpoints.count
            do {
                try establish(on: endpoints[index])
                current = index
                client.setCurrentIndex(index)
                if endpoints.count > 1 { logger.info("AMQP connected to \(endpoints[index])") }
                return
            } catch {
                failures.append((endpoints[index], error))
            }
        }
        if failures.count == 1 { throw failures[0].1 }
        if let answered = failures.first(where: { !Self.isUnreachable($0.1) }) { throw answered.1 }
        throw AMQPError.noBrokerAnswered(failures.map { "\($0.0.host):\($0.0.port): \($0.1)" })
    }

    /// Nobody answered at that address (as opposed to a broker that answered with a refusal).
    static func isUnreachable(_ error: Error) -> Bool {
        switch error as? AMQPError {
        case .connectionRefused, .connectionFailed, .connectionLost: true
        default: false
        }
    }

    /// Connect to one broker, declare, resume consumers, re-publish what was never confirmed.
    func establish(on endpoint: AMQPEndpoint) throws {
        let connection = try AMQPConnection(endpoint: endpoint)
        do {
            try connection.declare(topology)
        } catch {
            connection.close()
            throw error
        }
        self.connection = connection
        generation += 1
        nextPublishTag = 1
        client.setConnected(true)
        do {
            try resume(on: connection)
        } catch {
            connection.abandon()
            self.connection = nil
            client.setConnected(false)
            throw error
        }
    }

    /// Consumers again, then every message not yet confirmed, in publish order.
    func resume(on connection: AMQPConnection) throws {
        for registration in consumers.values.sorted(by: { $0.tag < $1.tag }) {
            do {
                try startConsumer(registration, on: connection)
            } catch let error as AMQPError {
                // A consumer the broker refuses ends with that error; the others carry on.
                if case .declarationFailed = error {
                    consumers[registration.tag] = nil
                    registration.continuation.finish(throwing: error)
                    continue
                }
                if case .channelClosed = error {
                    consumers[registration.tag] = nil
                    registration.continuation.finish(throwing: error)
                }
                throw error
            }
        }
        let resend = unconfirmed.sorted { $0.key < $1.key }.map(\.value) + unsent
        unconfirmed = [:]
        unsent = []
        if !resend.isEmpty { logger.info("re-publishing \(resend.count) unconfirmed messages after reconnect") }
        for message in resend { try send(message, on: connection) }
    }

    func startConsumer(_ registration: ConsumerRegistration, on connection: AMQPConnection) throws {
        consumerQueues[registration.tag] = try connection.startConsumer(declaring: registration.declare, queue: registration.queue,
                                                                        bindings: registration.bindings, consumerTag: registration.tag,
                                                                        prefetch: registration.prefetch)
    }

    func send(_ message: OutgoingMessage, on connection: AMQPConnection) throws {
        let tag = nextPublishTag
        unconfirmed[tag] = message
        nextPublishTag += 1
        try connection.publish(exchange: message.exchange, routingKey: message.routingKey, body: message.body, messageID: message.messageID,
                               userID: message.userID, headers: message.headers, mandatory: message.mandatory)
    }

    func handleCommands() throws {
        let commands = client.takeCommands()
        for (index, command) in commands.enumerated() {
            do {
                try handle(command)
            } catch {
                // The connection is gone: what was not handled yet waits for the next one, nothing is dropped.
                for later in commands[(index + 1)...] { handleDisconnected(later) }
                throw error
            }
            if closing != nil {
                for later in commands[(index + 1)...] { handleDisconnected(later) }
                return
            }
        }
    }

    func handle(_ command: Command) throws {
        guard let connection else {
            handleDisconnected(command)
            return
        }
        switch command {
        case let .publish(message):
            try send(message, on: connection)
        case let .consume(registration):
            consumers[registration.tag] = registration
            do {
                try startConsumer(registration, on: connection)
            } catch let error as AMQPError {
                switch error {
                case .declarationFailed:
                    consumers[registration.tag] = nil
                    registration.continuation.finish(throwing: error)
                case .channelClosed:
                    // Refused on the work channel: end this consumer, reconnect for the rest.
                    consumers[registration.tag] = nil
                    registration.continuation.finish(throwing: error)
                    throw error
                default:
                    throw error
                }
            }
        case let .cancel(tag):
            guard consumers.removeValue(forKey: tag) != nil else { return }
            consumerQueues[tag] = nil
            try connection.cancel(consumerTag: tag)
        case let .settle(settlement, tag, deliveryGeneration, continuation):
            // A tag from an earlier connection is void: the broker has already requeued that message. Say so: the
            // caller must not take its ack for done (the message comes back, and is applied at most once by its id).
            guard deliveryGeneration == generation else {
                continuation.resume(throwing: AMQPError.deliveryVoid(tag: tag))
                return
            }
            do { try connection.settle(settlement, tag: tag) } catch {
                continuation.resume(throwing: error)
                throw error
            }
            continuation.resume()
        case let .declare(more, continuation):
            try answer(continuation) {
                try connection.declare(more)
                topology = topology + more
            }
        case let .inspect(queue, continuation):
            try answer(continuation) { try connection.inspect(queue: queue) }
        case let .purge(queue, continuation):
            try answer(continuation) { try connection.purge(queue: queue) }
        case let .delete(queue, continuation):
            try answer(continuation) { try connection.delete(queue: queue) }
        case .dropConnection:
            throw AMQPError.connectionLost(host: endpoint.host, port: endpoint.port, reason: "dropped on purpose")
        case let .close(continuation):
            closing = continuation
        }
    }

    /// Answers a caller's broker request: a refused declaration goes to that caller only; anything else also ends the connection.
    func answer<T>(_ continuation: CheckedContinuation<T, Error>, _ body: () throws -> T) throws {
        do {
            continuation.resume(returning: try body())
        } catch let error as AMQPError {
            continuation.resume(throwing: error)
            if case .declarationFailed = error { return }
            throw error
        }
    }

    /// While there is no connection: queue publishes, void settlements, refuse broker queries.
    func handleDisconnected(_ command: Command) {
        switch command {
        case let .publish(message): unsent.append(message)
        case let .consume(registration): consumers[registration.tag] = registration
        case let .cancel(tag): consumers[tag] = nil
        case let .settle(_, _, _, continuation): continuation.resume()
        case let .declare(more, continuation):
            topology = topology + more
            continuation.resume()
        case .dropConnection: break
        case let .close(continuation): closing = continuation
        case .inspect, .purge, .delete:
            command.fail(AMQPError.connectionLost(host: endpoint.host, port: endpoint.port, reason: "not connected"))
        }
    }

    func handleCommandsWhileDisconnected() {
        for command in client.takeCommands() { handleDisconnected(command) }
    }

    func pumpFrames() throws {
        guard let connection else { return }
        if !connection.hasBufferedFrames {
            var descriptors = [pollfd(fd: connection.socketDescriptor, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: client.wakeFD, events: Int16(POLLIN), revents: 0)]
            // Wake at least every 200 ms so librabbitmq can send heartbeats.
            _ = poll(&descriptors, 2, 200)
        }
        // Read everything that is ready, then go back to commands.
        var handled = 0
        while handled < 256, let event = try connection.nextEvent() {
            handled += 1
            try handle(event)
            if self.connection == nil { return }
        }
    }

    func handle(_ event: AMQPEvent) throws {
        switch event {
        case let .delivery(consumerTag, deliveryTag, redelivered, exchange, routingKey, message):
            guard let registration = consumers[consumerTag] else {
                try connection?.settle(.nackRequeue, tag: deliveryTag)  // consumer already cancelled: hand it back
                return
            }
            let delivery = Delivery(body: message.body, headers: message.headers, messageID: message.messageID, userID: message.userID,
                                    redelivered: redelivered,
                                    exchange: exchange, routingKey: routingKey, queue: consumerQueues[consumerTag] ?? registration.queue,
                                    deliveryTag: deliveryTag, generation: generation, client: client)
            registration.continuation.yield(delivery)
        case let .confirm(tag, multiple, ack):
            let tags = multiple ? unconfirmed.keys.filter { $0 <= tag } : [tag]
            for tag in tags.sorted() {
                guard let message = unconfirmed.removeValue(forKey: tag) else { continue }
                if let failure = returned.removeValue(forKey: message.messageID) {
                    message.continuation.resume(throwing: failure)
                } else if ack {
                    message.continuation.resume()
                } else {
                    message.continuation.resume(throwing: AMQPError.publishNacked(exchange: message.exchange, routingKey: message.routingKey,
                                                                                 messageID: message.messageID))
                }
            }
        case let .returned(code, text, exchange, routingKey, messageID):
            if let messageID {
                returned[messageID] = .publishReturned(exchange: exchange, routingKey: routingKey, code: code, text: text)
            }
        case let .consumerCancelled(tag):
            // The broker cancelled it (queue deleted): start it again on the next connect.
            logger.warning("broker cancelled consumer \(tag) on \(consumerQueues[tag] ?? "?")")
            throw AMQPError.protocolError("consumer \(tag) cancelled by the broker")
        case let .channelClosed(code, text):
            // The broker refused something on the work channel: fail what is in flight rather than retry it forever.
            let error = AMQPError.channelClosed(code: code, text: text)
            for (_, message) in unconfirmed { message.continuation.resume(throwing: error) }
            unconfirmed = [:]
            throw error
        case let .connectionClosed(code, text):
            throw AMQPError.connectionClosed(code: code, text: text)
        }
    }

    func connectionLost(_ error: Error) {
        logger.warning("AMQP connection lost; reconnecting", metadata: ["error": "\(error)", "endpoint": "\(endpoint)"])
        // the next attempt starts with the broker after this one: a dead node is tried last
        current = (current + 1) % endpoints.count
        if endpoints.count > 1 { reconnectNotBefore = ContinuousClock.now + client.failoverPause }
        connection?.abandon()
        connection = nil
        client.setConnected(false)
        returned = [:]
    }

    func waitForWake(timeoutMilliseconds: Int32) {
        var descriptor = pollfd(fd: client.wakeFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, timeoutMilliseconds)
    }

    func shutDown(error: Error) {
        connection?.close()
        connection = nil
        client.setConnected(false)
        for message in unconfirmed.values { message.continuation.resume(throwing: error) }
        for message in unsent { message.continuation.resume(throwing: error) }
        unconfirmed = [:]
        unsent = []
        for registration in consumers.values { registration.continuation.finish() }
        consumers = [:]
        for command in client.closeCommands() { command.fail(error) }
        closing?.resume()
        closing = nil
    }
}
