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
