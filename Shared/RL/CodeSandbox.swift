import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs an untrusted python3 program with limits, and always comes back: the scorer never hangs on a candidate.
///
/// The child runs in a fresh temporary folder, with rlimits set by `prlimit` (address space, CPU seconds, processes,
/// file size = output cap, open files; CPU gets SIGXCPU at the soft limit, SIGKILL a second later), inside new network and PID namespaces (`unshare -n -p`) when the kernel allows
/// it, as user `nobody` when the scorer runs as root (root ignores the process limit). Killing the process group on
/// the wall-clock deadline kills the namespace's init, and with it every process the program forked.
/// Fallback without `unshare`: the same rlimits but network is NOT isolated; `isolation` says which mode is in use.
public struct CodeSandbox: Sendable {
    public var limits: SandboxLimits
    public var python: String

    public init(limits: SandboxLimits = SandboxLimits(), python: String? = nil) {
        self.limits = limits
        self.python = python ?? Self.defaultPython
    }

    /// How this machine isolates sandboxed programs (probed once per process).
    public static var isolation: SandboxIsolation { probedIsolation }

    /// Runs `program` as a python3 script (main.py) beside `files` (name → text), with `stdin`; returns how it ended,
    /// its (capped) output and timing.
    public func run(program: String, files: [String: String] = [:], stdin: String = "") -> SandboxResult {
        let start = ContinuousClock.now
        let fileManager = FileManager.default
        let root = fileManager.temporaryDirectory.appendingPathComponent("tributary-sandbox-\(UUID().uuidString)")
        let work = root.appendingPathComponent("work")
        defer { try? fileManager.removeItem(at: root) }
        do {
            try fileManager.createDirectory(at: work, withIntermediateDirectories: true)
            try fileManager.setAttributes([.posixPermissions: 0o711], ofItemAtPath: root.path)
            try fileManager.setAttributes([.posixPermissions: 0o777], ofItemAtPath: work.path)
            for (name, text) in files.merging(["main.py": program], uniquingKeysWith: { $1 }) {
                try Data(text.utf8).write(to: work.appendingPathComponent(name))
                try fileManager.setAttributes([.posixPermissions: 0o644], ofItemAtPath: work.appendingPathComponent(name).path)
            }
            try Data(stdin.utf8).write(to: root.appendingPathComponent("stdin"))
            try Data().write(to: root.appendingPathComponent("stdout"))
            try Data().write(to: root.appendingPathComponent("stderr"))
        } catch {
            return SandboxResult(outcome: .failedToStart("cannot prepare temporary folder: \(error)"), stdout: "", stderr: "", wallSeconds: 0, isolation: Self.isolation)
        }

        let process = Process()
        let command = Self.command(isolation: Self.isolation, limits: limits, python: python)
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = work
        process.environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work.path, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"]
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            process.standardInput = try FileHandle(forReadingFrom: root.appendingPathComponent("stdin"))
            process.standardOutput = try FileHandle(forWritingTo: root.appendingPathComponent("stdout"))
            process.standardError = try FileHandle(forWritingTo: root.appendingPathComponent("stderr"))
            try process.run()
        } catch {
            return SandboxResult(outcome: .failedToStart("cannot start \(command[0]): \(error)"), stdout: "", stderr: "", wallSeconds: 0, isolation: Self.isolation)
        }

        var timedOut = false
        if finished.wait(timeout: .now() + limits.wallSeconds) == .timedOut {
            timedOut = true
            // Foundation makes the child a process-group leader; the group holds the namespace's init.
            let pid = process.processIdentifier
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            finished.wait()
        }
        let wall = start.duration(to: .now)
        let stdout = Self.readCapped(root.appendingPathComponent("stdout"), cap: limits.maxOutputBytes)
        let stderr = Self.readCapped(root.appendingPathComponent("stderr"), cap: limits.maxOutputBytes)
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18

        let outcome: SandboxResult.Outcome
        if stdout.full || stderr.full {
            outcome = .outputTooLarge
        } else if timedOut {
            outcome = .timedOut
        } else if process.terminationReason == .uncaughtSignal {
            outcome = .signalled(process.terminationStatus)
        } else if process.terminationStatus > 128, process.terminationStatus < 160, Self.isolation.forksWrapper {
            outcome = .signalled(process.terminationStatus - 128)  // unshare --fork reports the child's signal as 128+n
        } else {
            outcome = .exited(process.terminationStatus)
        }
        return SandboxResult(outcome: outcome, stdout: stdout.text, stderr: stderr.text, wallSeconds: wallSeconds, isolation: Self.isolation)
    }

    static func readCapped(_ url: URL, cap: Int) -> (text: String, full: Bool) {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return ("", false) }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: cap + 1)) ?? Data()
        let full = data.count >= cap
        return (String(decoding: data.prefix(min(cap, 64 * 1024)), as: UTF8.self), full)
    }

    /// The wrapper chain: [unshare ...] [setpriv to nobody] prlimit ... -- python3 -I -B main.py
    static func command(isolation: SandboxIsolation, limits: SandboxLimits, python: String) -> [String] {
        var command: [String] = []
        switch isolation {
        case .namespacesAsNobody:
            command = [Tools.unshare, "--net", "--pid", "--fork", "--kill-child"] + Tools.dropToNobody
        case .userNamespaces:
            command = [Tools.unshare, "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]
        case .nobodyWithoutNamespaces:
            command = Tools.dropToNobody
        case .limitsOnly:
            command = []
        }
        command += [
            Tools.prlimit,
            "--as=\(limits.memoryBytes)", "--cpu=\(limits.cpuSeconds):\(limits.cpuSeconds + 1)", "--nproc=\(limits.maxProcesses)",
            "--fsize=\(limits.maxOutputBytes)", "--nofile=64", "--core=0", "--",
        ]
        // unshare --fork garbles a child's death by signal; a shell in between turns it into exit status 128+n.
        if isolation.forksWrapper { command += [Tools.shell, "-c", "\"$@\"; exit $?", "sandbox"] }
        command += [python, "-I", "-B", "main.py"]
        return command
    }

    static let defaultPython: String = {
        for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return Tools.find("python3") ?? "/usr/bin/python3"
    }()
}

/// Which isolation the sandbox could set up on this machine.
public enum SandboxIsolation: String, Sendable, Codable {
    /// Root: new network + PID namespaces, then drop to `nobody` so the process limit applies.
    case namespacesAsNobody = "network+pid namespaces, user nobody"
    /// Unprivileged: a user namespace with new network + PID namespaces.
    case userNamespaces = "user+network+pid namespaces"
    /// Root without namespaces: `nobody`, rlimits; network NOT isolated.
    case nobodyWithoutNamespaces = "user nobody, no namespaces (network not isolated)"
    /// rlimits only; network NOT isolated, process limit not enforced for root.
    case limitsOnly = "rlimits only (network not isolated)"

    var forksWrapper: Bool { self == .namespacesAsNobody || self == .userNamespaces }
}

let probedIsolation: SandboxIsolation = {
    func succeeds(_ command: [String]) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: command[0]) else { return false }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationReason == .exit && process.terminationStatus == 0
    }
    let truePath = Tools.find("true") ?? "/bin/true"
    if geteuid() == 0 {
        if succeeds([Tools.unshare, "--net", "--pid", "--fork", "--kill-child"] + Tools.dropToNobody + [truePath]) { return .namespacesAsNobody }
        if succeeds(Tools.dropToNobody + [truePath]) { return .nobodyWithoutNamespaces }
        return .limitsOnly
    }
    if succeeds([Tools.unshare, "--map-root-user", "--net", "--pid", "--fork", "--kill-child", truePath]) { return .userNamespaces }
    return .limitsOnly
}()

enum Tools {
    static let unshare = find("unshare") ?? "/usr/bin/unshare"
    static let setpriv = find("setpriv") ?? "/usr/bin/setpriv"
    static let prlimit = find("prlimit") ?? "/usr/bin/prlimit"
    static let shell = find("sh") ?? "/bin/sh"
    static let dropToNobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--no-new-privs"]

    static func find(_ name: String) -> String? {
        for directory in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
            let path = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}
