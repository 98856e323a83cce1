import Dispatch
import Foundation
import Config
import Logging
import Messaging
import Model
import Store
import Synchronization
import Wire

/// What a service is doing, for its heartbeat and `tributary status`.
public final class StatusBoard: Sendable {
    public struct Snapshot: Sendable, Codable {
        public var role: String
        public var instance: String
        public var state: String
        public var policyVersion: Int
        public var throughput: Double
        public var throughputUnit: String
        public var detail: String
        public var metricsPort: Int
        public var pid: Int32
        public var host: String
        public var updatedAtUnixMs: Int64
    }

    private let snapshot: Mutex<Snapshot>
    private let caveats = Mutex<[String]>([])

    init(identity: ServiceIdentity, throughputUnit: String) {
        snapshot = Mutex(Snapshot(role: identity.role, instance: identity.instance, state: "starting", policyVersion: -1, throughput: 0,
                                  throughputUnit: throughputUnit, detail: "", metricsPort: -1, pid: getpid(),
                                  host: ProcessInfo.processInfo.hostName, updatedAtUnixMs: 0))
    }

    public func update(_ body: (inout Snapshot) -> Void) { snapshot.withLock { body(&$0) } }
    public func set(state: String, detail: String = "") { update { $0.state = state; $0.detail = detail } }

    /// Something true for the life of the process that every heartbeat must show (a weak sandbox), after whatever
    /// detail the role last set: the role rewrites `detail` as it works and would hide it.
    public func addCaveat(_ caveat: String) { caveats.withLock { $0.append(caveat) } }

    public var current: Snapshot {
        var current = snapshot.withLock { $0 }
        let caveats = caveats.withLock { $0 }
        if !caveats.isEmpty { current.detail = ([current.detail].filter { !$0.isEmpty } + caveats).joined(separator: "; ") }
        return current
    }
}

/// Runs blocking, CPU-heavy work (the model) on a thread of its own, never on the cooperative pool.
public final class ComputeQueue: Sendable {
    private let queue: DispatchQueue

    public init(label: String) { queue = DispatchQueue(label: label) }

    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// A value only ever touched from one ComputeQueue, so it can cross into its closures.
public final class Confined<Value>: @unchecked Sendable {
    public var value: Value
    public init(_ value: Value) { self.value = value }
}


/// Everything a role gets: its settings, connections, status board, metric labels, stop request and control commands.
public struct ServiceContext: Sendable {
    public let settings: Settings
    public let fabric: Fabric
    public let status: StatusBoard
    public let stop: StopRequest
    public let logger: Logger
    /// Control commands other than drain and shutdown (run commands, settings), for the learner.
    public let control: AsyncStream<ControlCommand>

    /// Labels every metric of this process carries.
    public var dimensions: [(String, String)] {
        [("role", fabric.identity.role), ("instance", fabric.identity.instance), ("run", fabric.names.run)]
    }
}
