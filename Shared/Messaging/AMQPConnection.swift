import CAMQPLogin
import CRabbitMQ
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Method ids (class << 16 | method); librabbitmq defines them as casts, which Swift does not import.
enum AMQPMethod {
    static let connectionClose: UInt32 = 0x000A_0032
    static let channelClose: UInt32 = 0x0014_0028
    static let channelCloseOK: UInt32 = 0x0014_0029
    static let basicCancel: UInt32 = 0x003C_001E
    static let basicReturn: UInt32 = 0x003C_0032
    static let basicDeliver: UInt32 = 0x003C_003C
    static let basicAck: UInt32 = 0x003C_0050
    static let basicNack: UInt32 = 0x003C_0078
    static let channelOpen: UInt32 = 0x0014_000A
    static let channelOpenOK: UInt32 = 0x0014_000B
    static let confirmSelect: UInt32 = 0x0055_000A
    static let confirmSelectOK: UInt32 = 0x0055_000B
    static let exchangeDeclare: UInt32 = 0x0028_000A
    static let exchangeDeclareOK: UInt32 = 0x0028_000B
    static let queueDeclare: UInt32 = 0x0032_000A
    static let queueDeclareOK: UInt32 = 0x0032_000B
    static let queueBind: UInt32 = 0x0032_0014
    static let queueBindOK: UInt32 = 0x0032_0015
    static let basicQos: UInt32 = 0x003C_000A
    static let basicQosOK: UInt32 = 0x003C_000B
    static let basicConsume: UInt32 = 0x003C_0014
    static let basicConsumeOK: UInt32 = 0x003C_0015

    /// What the broker sends unasked: deliveries, confirms, returns, a consumer's cancellation.
    static let unasked: Set<UInt32> = [basicDeliver, basicAck, basicNack, basicReturn, basicCancel]
}

/// A message read off the wire by the owning thread.
struct ReceivedMessage {
    var body: [UInt8]
    var headers: [String: String]
    var messageID: String?
    var userID: String?
}

/// Frames the owning thread acts on.
enum AMQPEvent {
    case delivery(consumerTag: String, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, message: ReceivedMessage)
    case confirm(tag: UInt64, multiple: Bool, ack: Bool)
    case returned(code: Int, text: String, exchange: String, routingKey: String, messageID: String?)
    case consumerCancelled(consumerTag: String)
    case channelClosed(code: Int, text: String)
    case connectionClosed(code: Int, text: String)
}

/// One librabbitmq-c connection. Not thread-safe: only the client's owning thread touches it.
final class AMQPConnection {
    static let workChannel: amqp_channel_t = 1
    static let declareChannel: amqp_channel_t = 2

    let endpoint: AMQPEndpoint
    private let state: amqp_connection_state_t
    private(set) var isOpen = false
    /// Events read while waiting for the replies of pipelined requests, handed out by `nextEvent` first.
    private var bufferedEvents: [AMQPEvent] = []

    /// Opens the socket, logs in, and opens the work channel (publisher confirms on) and the declaration channel.
    init(endpoint: AMQPEndpoint, connectTimeoutSeconds: Int = 5) throws {
        self.endpoint = endpoint
        guard let state = amqp_new_connection() else { throw AMQPError.protocolError("amqp_new_connection failed") }
        self.state = state
        guard let socket = amqp_tcp_socket_new(state) else {
            amqp_destroy_connection(state)
            throw AMQPError.protocolError("amqp_tcp_socket_new failed")
        }
        var timeout = timeval(tv_sec: connectTimeoutSeconds, tv_usec: 0)
        errno = 0
        let opened = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
        if opened != AMQP_STATUS_OK.rawValue {
            let savedErrno = errno
            amqp_destroy_connection(state)
            throw Self.classifyOpenFailure(status: opened, errno: savedErrno, endpoint: endpoint)
        }
        // Never hang on a broker that accepts TCP but does not answer (starting up, overloaded).
        var handshakeTimeout = timeval(tv_sec: 15, tv_usec: 0)
        var rpcTimeout = timeval(tv_sec: 30, tv_usec: 0)
        amqp_set_handshake_timeout(state, &handshakeTimeout)
        amqp_set_rpc_timeout(state, &rpcTimeout)
        var reply = amqp_rpc_reply_t()
        tributary_amqp_login_plain(UnsafeMutableRawPointer(state), endpoint.vhost, 0, 131_072, Int32(endpoint.heartbeatSeconds),
                                   endpoint.user, endpoint.password, &reply)
        if reply.reply_type != AMQP_RESPONSE_NORMAL {
            let reason = Self.describe(reply)
            amqp_destroy_connection(state)
            throw AMQPError.authenticationRefused(user: endpoint.user, vhost: endpoint.vhost, reason: reason)
        }
        isOpen = true
        // both channels and the work channel's confirms in one round trip (nothing else can arrive yet)
        var open = amqp_channel_open_t(out_of_band: amqp_empty_bytes)
        var confirms = amqp_confirm_select_t(nowait: 0)
        do {
            try pipelined([
                Request(channel: Self.workChannel, reply: AMQPMethod.channelOpenOK, what: "opening channel \(Self.workChannel)") {
                    amqp_send_method(state, Self.workChannel, AMQPMethod.channelOpen, &open)
                },
                Request(channel: Self.workChannel, reply: AMQPMethod.confirmSelectOK, what: "enabling publisher confirms") {
                    amqp_send_method(state, Self.workChannel, AMQPMethod.confirmSelect, &confirms)
                },
                Request(channel: Self.declareChannel, reply: AMQPMethod.channelOpenOK, what: "opening channel \(Self.declareChannel)") {
                    amqp_send_method(state, Self.declareChannel, AMQPMethod.channelOpen, &open)
                },
            ])
        } catch {
            close()
            throw error
        }
    }

    /// A method sent ahead of the replies to the ones before it, and the reply that says it was done.
    private struct Request {
        var channel: amqp_channel_t
        var reply: UInt32
        var what: String
        var send: () -> Int32
        /// Reads what it needs from the reply (valid only during the call).
        var received: ((amqp_method_t) -> Void)? = nil
    }

    /// Sends every request at once, then reads their replies: one round trip for all. Each channel answers its requests
    /// in order, but channels answer independently (RabbitMQ runs each as a process of its own), so requests that must
    /// follow one another's effect go on one channel. What arrives unasked meanwhile (deliveries, confirms, returns, a
    /// cancellation, another channel's closing) is read as `nextEvent` would read it and kept for `nextEvent`. A
    /// request the broker refuses closes its channel, and the broker drops the requests after it on that channel; the
    /// refusal is thrown as `check` throws it (the declaration channel is opened again).
    private func pipelined(_ requests: [Request]) throws {
        for request in requests { try checkStatus(request.send(), request.what) }
        var pending = Dictionary(grouping: requests, by: \.channel)
        while let waiting = pending.values.first(where: { !$0.isEmpty }) {
            var frame = amqp_frame_t()
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &timeout)
            if status == AMQP_STATUS_TIMEOUT.rawValue {
                abandon()
                throw AMQPError.connectionLost(host: endpoint.host, port: endpoint.port, reason: "\(waiting[0].what): no reply in 30 s")
            }
            try checkStatus(status, waiting[0].what)
            guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { continue }
            let method = frame.payload.method
            guard !AMQPMethod.unasked.contains(method.id), let next = pending[frame.channel]?.first else {
                if let event = try event(from: frame) {
                    if case let .connectionClosed(code, text) = event { throw AMQPError.connectionClosed(code: code, text: text) }
                    bufferedEvents.append(event)
                }
                continue
            }
            if method.id == next.reply {
                next.received?(method)
                pending[frame.channel]?.removeFirst()
                continue
            }
            var reply = amqp_rpc_reply_t()
            reply.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION
            reply.reply = method
            try check(reply, next.what, channel: frame.channel)
            abandon()
            throw AMQPError.protocolError("\(next.what): method \(method.id) on channel \(frame.channel) instead of \(next.reply)")
        }
    }

    deinit { close() }

    private static func classifyOpenFailure(status: Int32, errno code: Int32, endpoint: AMQPEndpoint) -> AMQPError {
        if code == ECONNREFUSED { return .connectionRefused(host: endpoint.host, port: endpoint.port) }
        // librabbitmq does not always keep errno; ask the kernel directly whether the port refuses.
        if status == AMQP_STATUS_SOCKET_ERROR.rawValue, portRefuses(host: endpoint.host, port: endpoint.port) {
            return .connectionRefused(host: endpoint.host, port: endpoint.port)
        }
        return .connectionFailed(host: endpoint.host, port: endpoint.port, reason: String(cString: amqp_error_string2(status)))
    }

    private static func portRefuses(host: String, port: Int) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return false }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        return connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 && errno == ECONNREFUSED
    }

    func close() {
        guard isOpen else { return }
        isOpen = false
        // Best effort: a broken socket makes these fail, which is fine.
        _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        amqp_destroy_connection(state)
    }

    /// Tear down without the closing handshake (the socket is already broken).
    func abandon() {
        guard isOpen else { return }
        isOpen = false
        amqp_destroy_connection(state)
    }

    var socketDescriptor: Int32 { amqp_get_sockfd(state) }

    /// True when frames are already read into librabbitmq's buffers, so poll() would not see them.
    var hasBufferedFrames: Bool { !bufferedEvents.isEmpty || amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 }

    private func openChannel(_ channel: amqp_channel_t, confirms: Bool) throws {
        amqp_channel_open(state, channel)
        try checkReply("opening channel \(channel)", channel: channel)
        if confirms {
            amqp_confirm_select(state, channel)
            try checkReply("enabling publisher confirms", channel: channel)
        }
    }

    /// Reopens the declaration channel after the broker closed it for a failed declaration.
    private func reopenDeclareChannel() throws {
        try openChannel(Self.declareChannel, confirms: false)
    }

    private func checkReply(_ what: String, channel: amqp_channel_t = AMQPConnection.declareChannel) throws {
        let reply = amqp_get_rpc_reply(state)
        try check(reply, what, channel: channel)
    }

    private func check(_ reply: amqp_rpc_reply_t, _ what: String, channel: amqp_channel_t) throws {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == AMQPMethod.channelClose, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                var ok = amqp_channel_close_ok_t()
                _ = amqp_send_method(state, channel, AMQPMethod.channelCloseOK, &ok)
                if channel == Self.workChannel {
                    // The work channel is gone (with its confirms and consumers): the client reconnects.
                    throw AMQPError.channelClosed(code: Int(close.reply_code), text: "\(what): \(Self.string(close.reply_text))")
                }
                let error = AMQPError.declarationFailed(what: what, code: Int(close.reply_code), text: Self.string(close.reply_text))
                try? reopenDeclareChannel()
                throw error
            }
            if reply.reply.id == AMQPMethod.connectionClose, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                abandon()
                throw AMQPError.connectionClosed(code: Int(close.reply_code), text: Self.string(close.reply_text))
            }
            throw AMQPError.protocolError("\(what): server exception \(reply.reply.id)")
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let reason = String(cString: amqp_error_string2(reply.library_error))
            abandon()
            throw AMQPError.connectionLost(host: endpoint.host, port: endpoint.port, reason: "\(what): \(reason)")
        default:
            throw AMQPError.protocolError("\(what): no reply")
        }
    }

    static func describe(_ reply: amqp_rpc_reply_t) -> String {
        switch reply.reply_type {
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == AMQPMethod.connectionClose, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                return "\(close.reply_code) \(string(close.reply_text))"
            }
            return "server exception \(reply.reply.id)"
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return String(cString: amqp_error_string2(reply.library_error))
        default:
            return "no reply"
        }
    }

    static func string(_ bytes: amqp_bytes_t) -> String {
        guard let pointer = bytes.bytes, bytes.len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: bytes.len), as: UTF8.self)
    }

    // MARK: Topology

    /// Exchanges, then queues, then bindings, in one round trip (see `pipelined`).
    func declare(_ topology: Topology) throws {
        let (state, channel) = (self.state, Self.declareChannel)
        var requests: [Request] = []
        for exchange in topology.exchanges {
            requests.append(Request(channel: channel, reply: AMQPMethod.exchangeDeclareOK, what: Self.describe(exchange)) {
                withBytes([exchange.name, exchange.kind.rawValue]) { b in
                    var method = amqp_exchange_declare_t(ticket: 0, exchange: b[0], type: b[1], passive: exchange.passive ? 1 : 0,
                                                         durable: exchange.durable ? 1 : 0, auto_delete: 0, internal: 0, nowait: 0,
                                                         arguments: amqp_empty_table)
                    return amqp_send_method(state, channel, AMQPMethod.exchangeDeclare, &method)
                }
            })
        }
        requests += topology.queues.map { declaring($0) }
        requests += topology.bindings.map { binding($0) }
        try pipelined(requests)
    }

    /// A queue's declaration on the declaration channel, for `pipelined` (a passive one only checks that it exists).
    private func declaring(_ queue: QueueSpec, received: ((amqp_method_t) -> Void)? = nil) -> Request {
        let (state, channel) = (self.state, Self.declareChannel)
        return Request(channel: channel, reply: AMQPMethod.queueDeclareOK, what: Self.describe(queue), send: {
            withTable(queue.passive ? [] : queue.arguments) { arguments in
                withBytes([queue.name]) { b in
                    var method = amqp_queue_declare_t(ticket: 0, queue: b[0], passive: queue.passive ? 1 : 0,
                                                      durable: !queue.passive && queue.durable ? 1 : 0,
                                                      exclusive: !queue.passive && queue.exclusive ? 1 : 0,
                                                      auto_delete: !queue.passive && queue.autoDelete ? 1 : 0, nowait: 0, arguments: arguments)
                    return amqp_send_method(state, channel, AMQPMethod.queueDeclare, &method)
                }
            }
        }, received: received)
    }

    /// A binding on the declaration channel, for `pipelined`.
    private func binding(_ binding: BindingSpec) -> Request {
        let (state, channel) = (self.state, Self.declareChannel)
        return Request(channel: channel, reply: AMQPMethod.queueBindOK, what: Self.describe(binding)) {
            withBytes([binding.queue, binding.exchange, binding.routingKey]) { b in
                var method = amqp_queue_bind_t(ticket: 0, queue: b[0], exchange: b[1], routing_key: b[2], nowait: 0, arguments: amqp_empty_table)
                return amqp_send_method(state, channel, AMQPMethod.queueBind, &method)
            }
        }
    }

    static func describe(_ exchange: ExchangeSpec) -> String {
        exchange.passive ? "exchange '\(exchange.name)' (passive: it must exist)" : "exchange '\(exchange.name)'"
    }

    static func describe(_ queue: QueueSpec) -> String {
        queue.passive ? "queue '\(queue.name)' (passive: it must exist)" : "queue '\(queue.name)'"
    }

    static func describe(_ binding: BindingSpec) -> String {
        "binding of '\(binding.queue)' to '\(binding.exchange)' with '\(binding.routingKey)'"
    }

    /// Message and consumer counts, by a passive declare; throws declarationFailed 404 when the queue does not exist.
    func inspect(queue: String) throws -> (messages: Int, consumers: Int) {
        let ok = withBytes([queue]) { b in amqp_queue_declare(state, Self.declareChannel, b[0], 1, 0, 0, 0, amqp_empty_table) }
        try checkReply("queue '\(queue)'")
        guard let ok else { throw AMQPError.protocolError("queue.declare-ok missing for '\(queue)'") }
        return (Int(ok.pointee.message_count), Int(ok.pointee.consumer_count))
    }

    func purge(queue: String) throws -> Int {
        let ok = withBytes([queue]) { b in amqp_queue_purge(state, Self.declareChannel, b[0]) }
        try checkReply("purging '\(queue)'")
        return Int(ok?.pointee.message_count ?? 0)
    }

    func delete(queue: String) throws {
        withBytes([queue]) { b in _ = amqp_queue_delete(state, Self.declareChannel, b[0], 0, 0) }
        try checkReply("deleting '\(queue)'")
    }

    // MARK: Work channel

    /// `userID` goes in the user_id property, which RabbitMQ checks against the login: consumers can trust who published.
    func publish(exchange: String, routingKey: String, body: [UInt8], messageID: String, userID: String, headers: [(String, AMQPFieldValue)],
                 mandatory: Bool) throws {
        var properties = amqp_basic_properties_t()
        properties._flags = amqp_flags_t(AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG
                                         | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_USER_ID_FLAG)
        properties.delivery_mode = 2  // persistent
        properties.timestamp = UInt64(Date().timeIntervalSince1970)
        let status: Int32 = withBytes([messageID, "application/x-protobuf", userID, exchange, routingKey]) { b in
            properties.message_id = b[0]
            properties.content_type = b[1]
            properties.user_id = b[2]
            return withTable(headers) { table in
                properties.headers = table
                return body.withUnsafeBytes { raw in
                    let bytes = amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress))
                    return amqp_basic_publish(state, Self.workChannel, b[3], b[4], mandatory ? 1 : 0, 0, &properties, bytes)
                }
            }
        }
        try checkStatus(status, "publishing to '\(exchange)'")
    }

    /// A consumer's whole start in two round trips where it took one per method: its queue's declaration and bindings
    /// together on the declaration channel, then its prefetch and the consume together on the work channel (after the
    /// first: channels do not wait for each other). A server-named queue's bindings name it by the empty name, which
    /// means the queue last declared on the channel; its name comes back in the declaration's reply. Returns the
    /// queue's name.
    func startConsumer(declaring spec: QueueSpec?, queue: String, bindings: [BindingSpec], consumerTag: String, prefetch: Int) throws -> String {
        let (state, workChannel) = (self.state, Self.workChannel)
        var requests: [Request] = []
        // the queue's name: known, or read from the declaration's reply
        var name = spec?.name ?? queue
        if let spec {
            requests.append(declaring(spec) { reply in
                if let ok = reply.decoded?.assumingMemoryBound(to: amqp_queue_declare_ok_t.self).pointee { name = Self.string(ok.queue) }
            })
        }
        // bindings of the declared queue name it as the declaration did (the empty name for a server-named one)
        for var spec in bindings {
            if spec.queue.isEmpty || spec.queue == queue { spec.queue = name }
            requests.append(binding(spec))
        }
        if !requests.isEmpty { try pipelined(requests) }
        guard !name.isEmpty else { throw AMQPError.protocolError("queue.declare-ok named no queue for consumer '\(consumerTag)'") }
        var qos = amqp_basic_qos_t(prefetch_size: 0, prefetch_count: UInt16(clamping: prefetch), global: 0)
        try pipelined([
            Request(channel: workChannel, reply: AMQPMethod.basicQosOK, what: "setting prefetch \(prefetch)") {
                amqp_send_method(state, workChannel, AMQPMethod.basicQos, &qos)
            },
            Request(channel: workChannel, reply: AMQPMethod.basicConsumeOK, what: "consuming from '\(name)'") {
                withBytes([name, consumerTag]) { b in
                    var method = amqp_basic_consume_t(ticket: 0, queue: b[0], consumer_tag: b[1], no_local: 0, no_ack: 0, exclusive: 0, nowait: 0,
                                                      arguments: amqp_empty_table)
                    return amqp_send_method(state, workChannel, AMQPMethod.basicConsume, &method)
                }
            },
        ])
        return name
    }

    func cancel(consumerTag: String) throws {
        withBytes([consumerTag]) { b in _ = amqp_basic_cancel(state, Self.workChannel, b[0]) }
        try checkReply("cancelling consumer '\(consumerTag)'", channel: Self.workChannel)
    }

    func settle(_ settlement: Settlement, tag: UInt64) throws {
        let status: Int32 = switch settlement {
        case .ack: amqp_basic_ack(state, Self.workChannel, tag, 0)
        case .nackRequeue: amqp_basic_nack(state, Self.workChannel, tag, 0, 1)
        case .nackDrop: amqp_basic_nack(state, Self.workChannel, tag, 0, 0)
        case .rejectRequeue: amqp_basic_reject(state, Self.workChannel, tag, 1)
        case .rejectDrop: amqp_basic_reject(state, Self.workChannel, tag, 0)
        }
        try checkStatus(status, "settling delivery \(tag)")
    }

    private func checkStatus(_ status: Int32, _ what: String) throws {
        guard status != AMQP_STATUS_OK.rawValue else { return }
        let reason = String(cString: amqp_error_string2(status))
        abandon()
        throw AMQPError.connectionLost(host: endpoint.host, port: endpoint.port, reason: "\(what): \(reason)")
    }

    /// Reads one frame if one is ready (never waits); nil when none. Heartbeats are sent and checked inside.
    func nextEvent() throws -> AMQPEvent? {
        if !bufferedEvents.isEmpty { return bufferedEvents.removeFirst() }
        while true {
            var frame = amqp_frame_t()
            var zero = timeval(tv_sec: 0, tv_usec: 0)
            amqp_maybe_release_buffers(state)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
            try checkStatus(status, "reading a frame")
            if let event = try event(from: frame) { return event }
        }
    }

    /// The event a frame is (a delivery or a return reads its content frames too); nil for heartbeats, stray content
    /// and methods nobody waits for.
    private func event(from frame: amqp_frame_t) throws -> AMQPEvent? {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return nil }
        let method = frame.payload.method
        switch method.id {
        case AMQPMethod.basicDeliver:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let consumerTag = Self.string(deliver.consumer_tag)
            let exchange = Self.string(deliver.exchange)
            let routingKey = Self.string(deliver.routing_key)
            let message = try readContent(channel: frame.channel)
            return .delivery(consumerTag: consumerTag, deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0,
                             exchange: exchange, routingKey: routingKey, message: message)
        case AMQPMethod.basicAck:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .confirm(tag: ack.delivery_tag, multiple: ack.multiple != 0, ack: true)
        case AMQPMethod.basicNack:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .confirm(tag: nack.delivery_tag, multiple: nack.multiple != 0, ack: false)
        case AMQPMethod.basicReturn:
            let returned = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let code = Int(returned.reply_code)
            let text = Self.string(returned.reply_text)
            let exchange = Self.string(returned.exchange)
            let routingKey = Self.string(returned.routing_key)
            let message = try readContent(channel: frame.channel)
            return .returned(code: code, text: text, exchange: exchange, routingKey: routingKey, messageID: message.messageID)
        case AMQPMethod.basicCancel:
            let cancel = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            return .consumerCancelled(consumerTag: Self.string(cancel.consumer_tag))
        case AMQPMethod.channelClose:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let event = AMQPEvent.channelClosed(code: Int(close.reply_code), text: Self.string(close.reply_text))
            var ok = amqp_channel_close_ok_t()
            _ = amqp_send_method(state, frame.channel, AMQPMethod.channelCloseOK, &ok)
            return event
        case AMQPMethod.connectionClose:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let event = AMQPEvent.connectionClosed(code: Int(close.reply_code), text: Self.string(close.reply_text))
            abandon()
            return event
        default:
            return nil
        }
    }

    private func readContent(channel: amqp_channel_t) throws -> ReceivedMessage {
        var message = amqp_message_t()
        let reply = amqp_read_message(state, channel, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            let reason = Self.describe(reply)
            abandon()
            throw AMQPError.connectionLost(host: endpoint.host, port: endpoint.port, reason: "reading message content: \(reason)")
        }
        defer { amqp_destroy_message(&message) }
        var body = [UInt8]()
        if let pointer = message.body.bytes, message.body.len > 0 {
            body = Array(UnsafeRawBufferPointer(start: pointer, count: message.body.len))
        }
        let flags = message.properties._flags
        var messageID: String?
        if flags & amqp_flags_t(AMQP_BASIC_MESSAGE_ID_FLAG) != 0 { messageID = Self.string(message.properties.message_id) }
        var userID: String?
        if flags & amqp_flags_t(AMQP_BASIC_USER_ID_FLAG) != 0 { userID = Self.string(message.properties.user_id) }
        var headers: [String: String] = [:]
        if flags & amqp_flags_t(AMQP_BASIC_HEADERS_FLAG) != 0 { headers = Self.decode(message.properties.headers) }
        return ReceivedMessage(body: body, headers: headers, messageID: messageID, userID: userID)
    }

    private static func decode(_ table: amqp_table_t) -> [String: String] {
        var headers: [String: String] = [:]
        guard let entries = table.entries else { return headers }
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            let key = string(entry.key)
            let value = entry.value
            switch UInt32(value.kind) {
            case AMQP_FIELD_KIND_UTF8.rawValue, AMQP_FIELD_KIND_BYTES.rawValue: headers[key] = string(value.value.bytes)
            case AMQP_FIELD_KIND_I8.rawValue: headers[key] = String(value.value.i8)
            case AMQP_FIELD_KIND_U8.rawValue: headers[key] = String(value.value.u8)
            case AMQP_FIELD_KIND_I16.rawValue: headers[key] = String(value.value.i16)
            case AMQP_FIELD_KIND_U16.rawValue: headers[key] = String(value.value.u16)
            case AMQP_FIELD_KIND_I32.rawValue: headers[key] = String(value.value.i32)
            case AMQP_FIELD_KIND_U32.rawValue: headers[key] = String(value.value.u32)
            case AMQP_FIELD_KIND_I64.rawValue: headers[key] = String(value.value.i64)
            case AMQP_FIELD_KIND_U64.rawValue, AMQP_FIELD_KIND_TIMESTAMP.rawValue: headers[key] = String(value.value.u64)
            case AMQP_FIELD_KIND_BOOLEAN.rawValue: headers[key] = value.value.boolean != 0 ? "true" : "false"
            default: continue  // nested tables and arrays (x-death) are not used by Tributary
            }
        }
        return headers
    }
}

/// amqp_bytes_t views of strings, valid for the duration of `body` (a Swift String's C pointer is not).
private func withBytes<R>(_ strings: [String], _ body: ([amqp_bytes_t]) -> R) -> R {
    let copies = strings.map { strdup($0)! }
    defer { copies.forEach { free($0) } }
    return body(copies.map { amqp_bytes_t(len: strlen($0), bytes: UnsafeMutableRawPointer($0)) })
}

/// Builds a temporary amqp_table_t for the duration of `body`.
private func withTable<R>(_ fields: [(String, AMQPFieldValue)], _ body: (amqp_table_t) -> R) -> R {
    if fields.isEmpty { return body(amqp_empty_table) }
    let entries = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: fields.count)
    var strings: [UnsafeMutablePointer<CChar>] = []
    defer {
        strings.forEach { free($0) }
        entries.deallocate()
    }
    func bytes(_ text: String) -> amqp_bytes_t {
        let copy = strdup(text)!
        strings.append(copy)
        return amqp_bytes_t(len: strlen(copy), bytes: UnsafeMutableRawPointer(copy))
    }
    for (index, (key, value)) in fields.enumerated() {
        var field = amqp_field_value_t()
        switch value {
        case let .string(text):
            field.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
            field.value.bytes = bytes(text)
        case let .int(number):
            field.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
            field.value.i64 = number
        case let .bool(flag):
            field.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
            field.value.boolean = flag ? 1 : 0
        }
        entries[index] = amqp_table_entry_t(key: bytes(key), value: field)
    }
    return body(amqp_table_t(num_entries: Int32(fields.count), entries: entries))
}
