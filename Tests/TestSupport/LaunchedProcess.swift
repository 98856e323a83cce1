import Foundation
import Synchronization

/// A service process that could not be started, or did not end when it was told to.
public struct ServiceProcessError: Error, CustomStringConvertible {
    public var process: String
    public var problem: String
    public var description: String { "\(process): \(problem)" }
}

/// One executable of the build run as a child process, stdout and stderr in one log file. posix_spawn and waitpid
/// directly: Foundation's Process has missed exits here.
public final class LaunchedProcess: Sendable {
    /// The log's name and how errors call it (an instance name such as "rollout-1").
    public let name: String
    /// The executable's file name, e.g. "tributary-rollout".
    public let executable: String
    public let pid: pid_t
    public let logPath: String
    /// Reaped once, under the lock: after that the pid may be another process's and is never signalled again.
    private let exitCode = Mutex<Int32?>(nil)

    /// Starts `binaries/executable` with `arguments` and this process's environment overlaid with `environment`.
    /// `wrapper` is a program and its arguments that exec the executable in its place (e.g. `ip netns exec NS`), so the
    /// pid is still the service's.
    public init(_ executable: String, in binaries: URL, arguments: [String], environment: [String: String] = [:],
                logPath: String, name: String, wrapper: [String] = []) throws {
        let service = binaries.appendingPathComponent(executable).path
        guard FileManager.default.isExecutableFile(atPath: service) else {
            throw ServiceProcessError(process: name, problem: "\(service) is missing: build the services with `swift build -c release`")
        }
        let path = wrapper.first ?? service
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv: [UnsafeMutablePointer<CChar>?] = (wrapper + [service] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        // The child starts with no signal blocked and every signal at its default: the test runner's threads may block
        // or ignore some (SIGTERM, SIGPIPE), and a script child would inherit that and never see the SIGTERM that stops it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard spawned == 0 else {
            throw ServiceProcessError(process: name, problem: "posix_spawn \(path) failed: \(String(cString: strerror(spawned)))")
        }
        self.name = name
        self.executable = executable
        self.pid = pid
        self.logPath = logPath
    }

    /// Sends `number` (SIGTERM, SIGKILL, SIGSTOP, ...) unless the process has already been reaped.
    public func signal(_ number: Int32) {
        exitCode.withLock { code in
            if code == nil, reap(into: &code) == nil { _ = kill(pid, number) }
        }
    }

    /// Exit code (or 128 + signal) once the process has ended; nil while it runs (a stopped process runs).
    public func poll() -> Int32? {
        exitCode.withLock { code in
            if let code { return code }
            return reap(into: &code)
        }
    }

    private func reap(into code: inout Int32?) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return code
    }

    /// The exit code, once the process ends within `seconds`; throws if it is still running then.
    public func waitForExit(within seconds: Double) async throws -> Int32 {
        try await waitForExit(until: .now + .milliseconds(Int(seconds * 1000)))
    }

    func waitForExit(until deadline: ContinuousClock.Instant) async throws -> Int32 {
        while ContinuousClock.now < deadline {
            if let code = poll() { return code }
            try await Task.sleep(for: .milliseconds(50))
        }
        if let code = poll() { return code }
        throw ServiceProcessError(process: name, problem: "pid \(pid) did not exit in time; log: \(logPath)")
    }

    /// The exit code, once the process ends within `seconds`; nil if it is still running then. Blocks the thread,
    /// for synchronous callers (the bench) and teardown.
    public func blockingWaitForExit(within seconds: Double) -> Int32? {
        blockingWaitForExit(until: .now + .milliseconds(Int(seconds * 1000)))
    }

    func blockingWaitForExit(until deadline: ContinuousClock.Instant) -> Int32? {
        while ContinuousClock.now < deadline {
            if let code = poll() { return code }
            usleep(20_000)
        }
        return poll()
    }

    /// The last lines of the log, for a failure message.
    public func logTail(lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// How one process of a fleet ended.
public struct ProcessExit: Sendable {
    public var process: LaunchedProcess
    /// Exit code, or 128 + signal.
    public var code: Int32
    /// Killed with SIGKILL after it outlived its grace period.
    public var forced: Bool
}

/// The processes one test or bench run started, each logging to `logs/NAME.log`; whatever is still running when the
/// fleet goes away is killed, so no failure path leaves a service behind.
public final class ServiceFleet: Sendable {
    public let binaries: URL
    public let logs: URL
    /// Overlaid on this process's environment for every child.
    public let environment: [String: String]
    private let launched = Mutex<[LaunchedProcess]>([])

    public init(binaries: URL, logs: URL, environment: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        self.binaries = binaries
        self.logs = logs
        self.environment = environment
    }

    deinit { _ = stopAll(gracePeriod: 0) }

    /// Starts `executable` logging to `logs/NAME.log`; `environment` is overlaid on the fleet's for this process only.
    @discardableResult
    public func launch(_ executable: String, name: String, arguments: [String], environment: [String: String] = [:],
                       wrapper: [String] = []) throws -> LaunchedProcess {
        let process = try LaunchedProcess(executable, in: binaries, arguments: arguments, environment: self.environment.merging(environment) { $1 },
                                         logPath: logs.appendingPathComponent("\(name).log").path, name: name, wrapper: wrapper)
        launched.withLock { $0.append(process) }
        return process
    }

    /// Every process launched, in launch order.
    public var processes: [LaunchedProcess] { launched.withLock { $0 } }

    /// The first process that has ended, other than those expected to (a test's deliberate kills).
    public func firstExited(except expected: Set<pid_t> = []) -> LaunchedProcess? {
        processes.first { !expected.contains($0.pid) && $0.poll() != nil }
    }

    /// SIGTERM to every running process, then each one's exit; throws naming the first still running after `seconds`
    /// (a graceful shutdown that failed; `stopAll` then kills it).
    public func terminateAll(within seconds: Double) async throws -> [ProcessExit] {
        let all = processes
        for process in all where process.poll() == nil { process.signal(SIGTERM) }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var exits: [ProcessExit] = []
        for process in all {
            exits.append(ProcessExit(process: process, code: try await process.waitForExit(until: deadline), forced: false))
        }
        return exits
    }

    /// SIGTERM to every running process, SIGKILL to any still running after `gracePeriod` seconds (at once when 0),
    /// and each one's exit. Blocks the thread; never leaves a child behind.
    @discardableResult
    public func stopAll(gracePeriod: Double) -> [ProcessExit] {
        let all = processes
        if gracePeriod > 0 {
            for process in all where process.poll() == nil { process.signal(SIGTERM) }
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(gracePeriod * 1000))
        return all.map { process in
            if gracePeriod > 0, let code = process.blockingWaitForExit(until: deadline) {
                return ProcessExit(process: process, code: code, forced: false)
            }
            if let code = process.poll() { return ProcessExit(process: process, code: code, forced: false) }
            process.signal(SIGKILL)
            // a killed process is reaped at once unless it is stuck in the kernel
            return ProcessExit(process: process, code: process.blockingWaitForExit(within: 10) ?? 128 + SIGKILL, forced: true)
        }
    }
}
