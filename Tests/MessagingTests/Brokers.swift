import Foundation
import Messaging
import Synchronization

/// The repository root, for scripts/brokers.sh.
let repositoryRoot: URL = {
    if let root = ProcessInfo.processInfo.environment["TRIBUTARY_ROOT"] { return URL(fileURLWithPath: root) }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}()

func uniqueName(_ prefix: String) -> String { "test.\(prefix).\(UUID().uuidString.prefix(8))" }

/// Runs scripts/brokers.sh with extra environment; throws with its output when it fails.
/// posix_spawn and waitpid directly: Foundation's Process can miss the exit of a script that leaves daemons behind.
func brokersScript(_ arguments: [String], environment: [String: String] = [:]) throws {
    let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("brokers-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: logPath) }
    let script = repositoryRoot.appendingPathComponent("scripts/brokers.sh").path
    let command = ([script] + arguments).map { "'\($0)'" }.joined(separator: " ") + " >'\(logPath)' 2>&1 </dev/null"
    let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let argv: [UnsafeMutablePointer<CChar>?] = [String](["/bin/sh", "-c", command]).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, "/bin/sh", nil, nil, argv, envp)
    guard spawned == 0 else { throw ScriptFailed(arguments: arguments, output: "posix_spawn failed: \(spawned)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    guard status == 0 else { throw ScriptFailed(arguments: arguments, output: output) }
}

struct ScriptFailed: Error, CustomStringConvertible {
    var arguments: [String]
    var output: String
    var description: String { "brokers.sh \(arguments.joined(separator: " ")) failed:\n\(output)" }
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
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

/// Polls `condition` until it holds, or throws after `seconds`.
func waitUntil(_ what: String, within seconds: Double = 15, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    if try await condition() { return }
    throw TimedOut(what: what)
}

/// A value shared between test tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
