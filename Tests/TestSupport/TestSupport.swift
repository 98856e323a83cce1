import Foundation

/// The repository root (scripts, run files, compose files, built executables), also when the tests are compiled
/// through a symlink (a private dev package); TRIBUTARY_ROOT overrides it.
public let repositoryRoot: URL = {
    if let root = ProcessInfo.processInfo.environment["TRIBUTARY_ROOT"] { return URL(fileURLWithPath: root) }
    return URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}()

public struct CommandFailedToStart: Error, CustomStringConvertible {
    public var command: String
    public var code: Int32
    public var description: String { "posix_spawn failed (\(code)) for \(command)" }
}

/// Runs a program to completion and returns its exit status (128 + signal when killed) and its output (stdout and
/// stderr, through a file). posix_spawn and waitpid directly: Foundation's Process can miss the exit of a script
/// that leaves daemons behind (scripts/brokers.sh does).
public func runCommand(_ argv: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("command-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: logPath) }
    let quoted = argv.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    let command = "\(quoted) >'\(logPath)' 2>&1 </dev/null"
    var merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    merged["PATH"] = (merged["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    let shellArguments: [UnsafeMutablePointer<CChar>?] = [String](["/bin/sh", "-c", command]).map { strdup($0) } + [nil]
    let environmentPointers: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (shellArguments + environmentPointers).forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, "/bin/sh", nil, nil, shellArguments, environmentPointers)
    guard spawned == 0 else { throw CommandFailedToStart(command: argv.first ?? "?", code: spawned) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exitStatus, output)
}

public struct NoFreePort: Error, CustomStringConvertible {
    public var code: Int32
    public var description: String { "could not get a free port on 127.0.0.1 (errno \(code))" }
}

/// `count` distinct TCP ports on 127.0.0.1 that nothing listens on now, for the private servers a test starts. Fixed
/// port numbers would clash with another checkout's tests running at the same time on the same machine (each would stop
/// the other's server). Drawn from 20000..<32000, below Linux's ephemeral range (32768 and up), so that no outgoing
/// connection takes one while its server restarts; each is bound to check it is free, and all stay bound until every
/// port is picked, so they differ.
public func freeLoopbackPorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    var ports: [Int] = []
    var attempts = 0
    while ports.count < count {
        attempts += 1
        guard attempts <= 1000 else { throw NoFreePort(code: errno) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NoFreePort(code: errno) }
        let port = Int.random(in: 20000..<32000)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound == 0 {
            sockets.append(fd)
            ports.append(port)
        } else {
            close(fd)
        }
    }
    return ports
}

/// The pid in `pidFile` if that process is running, else nil.
public func runningProcess(pidFile: URL) -> pid_t? {
    guard let text = try? String(contentsOf: pidFile, encoding: .utf8),
          let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0 else { return nil }
    return pid
}

/// Ports a test picked for its private servers, kept as KEY=VALUE lines in `ports.env` of the servers' state folder, so
/// that the next run finds and stops a server that an interrupted run left behind.
public enum RecordedPorts {
    public static func read(in directory: URL) -> [String: String]? {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("ports.env"), encoding: .utf8) else { return nil }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    public static func write(_ values: [String: String], in directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let text = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined()
        try Data(text.utf8).write(to: directory.appendingPathComponent("ports.env"))
    }
}

/// `runCommand` on a thread of its own: a command that runs for seconds (a `tributary watch`) must not hold one of the
/// cooperative pool's two threads, or every other test in the process stalls behind it.
public func runCommandOffPool(_ argv: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try runCommand(argv, environment: environment) }) }
        thread.name = "run-\(URL(fileURLWithPath: argv.first ?? "command").lastPathComponent)"
        thread.start()
    }
}

/// `body` on a thread of its own, for blocking set-up, faults and tear-down (starting or killing brokers, waiting for a
/// process): the cooperative pool has two threads here, and two such calls at once would stall every other test of the
/// process, down to an in-process learner's lease renewal.
public func offPool<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
    }
}

/// Where the service executables are: scripts/test.sh builds them with `swift build -c release` first.
public let binaryDirectory: URL = {
    if let directory = ProcessInfo.processInfo.environment["TRIBUTARY_BIN_DIR"] { return URL(fileURLWithPath: directory) }
    return repositoryRoot.appendingPathComponent(".build/release")
}()

public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var seconds: Double
    public var description: String { "timed out after \(seconds) s waiting for \(what)" }

    public init(what: String, seconds: Double) {
        self.what = what
        self.seconds = seconds
    }
}

/// Polls `condition` until it holds, or throws after `seconds`. The deadline only bounds a failing test (a passing one
/// returns as soon as the condition holds), so it is set for a 2-core machine running the whole suite at once.
public func waitUntil(_ what: String, within seconds: Double = 60, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    if try await condition() { return }
    throw TimedOut(what: what, seconds: seconds)
}

/// A plain HTTP/1.1 GET on 127.0.0.1 (the metrics endpoint closes the connection after its answer).
public func httpGet(port: Int, path: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HTTPGetFailed(problem: "socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
    let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard connected == 0 else { throw HTTPGetFailed(problem: "cannot connect to 127.0.0.1:\(port)") }
    // an endpoint that accepts and never answers fails the caller instead of holding its thread
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    return String(decoding: response, as: UTF8.self)
}

public struct HTTPGetFailed: Error, CustomStringConvertible {
    public var problem: String
    public var description: String { problem }
}

/// The value of an unlabelled Prometheus counter or gauge in an exposition, nil when the series is absent.
public func prometheusValue(_ series: String, in exposition: String) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") || line.hasPrefix(series + "{") {
        if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return value }
    }
    return nil
}
