import Foundation
import Messaging
import Synchronization
import TestSupport

func uniqueName(_ prefix: String) -> String { "test.\(prefix).\(UUID().uuidString.prefix(8))" }

/// Runs scripts/brokers.sh with extra environment; throws with its output when it fails. Starting or stopping a node
/// takes seconds: it waits on a thread of its own, not on one of the cooperative pool's two.
func brokersScript(_ arguments: [String], environment: [String: String] = [:]) async throws {
    let script = repositoryRoot.appendingPathComponent("scripts/brokers.sh").path
    let (status, output) = try await runCommandOffPool([script] + arguments, environment: environment)
    guard status == 0 else { throw ScriptFailed(arguments: arguments, output: output) }
}

/// The same, blocking: for a `defer`, which cannot wait.
func brokersScriptBlocking(_ arguments: [String], environment: [String: String] = [:]) throws {
    let script = repositoryRoot.appendingPathComponent("scripts/brokers.sh").path
    let (status, output) = try runCommand([script] + arguments, environment: environment)
    guard status == 0 else { throw ScriptFailed(arguments: arguments, output: output) }
}

struct ScriptFailed: Error, CustomStringConvertible {
    var arguments: [String]
    var output: String
    var description: String { "brokers.sh \(arguments.joined(separator: " ")) failed:\n\(output)" }
}

/// Deliveries gathered by a background task, for tests to wait on.
final class Collector: Sendable {
    let deliveries = Mutex<[Delivery]>([])
    let failure = Mutex<String?>(nil)
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(_ stream: AsyncThrowingStream<Delivery, Error>, autoAck: Bool = false) {
        let reader = Task { [self] in
            do {
                for try await delivery in stream {
                    if autoAck { try await delivery.ack() }
                    deliveries.withLock { $0.append(delivery) }
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        task.withLock { $0 = reader }
    }

    var count: Int { deliveries.withLock { $0.count } }
    var all: [Delivery] { deliveries.withLock { $0 } }

    func stop() { task.withLock { $0?.cancel() } }
}

/// A value shared between test tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
