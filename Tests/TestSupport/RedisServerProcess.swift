import Foundation

/// A private redis-server a test starts and owns: a child of the test (not daemonized), so it is stopped by its pid
/// whatever happens, on a free loopback port. `start` returns once the server listens: its log says "Ready to accept
/// connections". A port taken between the choice and the bind (another test's server, say) makes the server exit; it
/// is then started again on another port, up to five times, and a failure names the log's tail.
public struct RedisServerProcess: Sendable {
    public let port: Int
    public let directory: URL
    public let process: LaunchedProcess
    public var url: String { "redis://127.0.0.1:\(port)" }

    /// Starts `redis-server` with `arguments` (not --port, --bind or --dir, which this sets), its data and log in
    /// `directory`, waiting for it to listen for at most `seconds`.
    public static func start(_ arguments: [String], in directory: URL, name: String, within seconds: Double = 30) async throws -> RedisServerProcess {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin", "/usr/sbin"]
        guard let binaries = path.map({ URL(fileURLWithPath: $0) })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("redis-server").path) }) else {
            throw ServiceProcessError(process: name, problem: "no redis-server on PATH (scripts/brokers.sh install puts it there)")
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var failures: [String] = []
        for attempt in 1...5 {
            let port = try freeLoopbackPorts(1)[0]
            let log = directory.appendingPathComponent("redis-\(attempt).log").path
            let process = try LaunchedProcess("redis-server", in: binaries,
                                              arguments: ["--port", String(port), "--bind", "127.0.0.1", "--dir", directory.path] + arguments,
                                              logPath: log, name: name)
            while ContinuousClock.now < deadline, process.poll() == nil,
                  !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("Ready to accept connections") {
                try await Task.sleep(for: .milliseconds(20))
            }
            if process.poll() == nil, ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("Ready to accept connections") {
                return RedisServerProcess(port: port, directory: directory, process: process)
            }
            process.signal(SIGKILL)
            _ = process.blockingWaitForExit(within: 5)
            failures.append("port \(port): \(process.poll().map { "exited with \($0)" } ?? "not listening in time"): \(process.logTail(lines: 3))")
            if ContinuousClock.now >= deadline { break }
        }
        throw ServiceProcessError(process: name, problem: "redis-server did not start:\n" + failures.joined(separator: "\n"))
    }

    /// SIGSTOP: a server that stops answering; SIGCONT: it goes on.
    public func signal(_ number: Int32) { process.signal(number) }

    /// Kills the server and waits for it; removes its directory if `removing`.
    public func stop(removing: Bool = false) {
        process.signal(SIGKILL)
        _ = process.blockingWaitForExit(within: 10)
        if removing { try? FileManager.default.removeItem(at: directory) }
    }
}
