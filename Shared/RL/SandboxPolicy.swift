import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Which isolation the sandbox could set up on this machine.
public enum SandboxIsolation: String, Sendable, Codable {
    /// Root: new mount, PID and network namespaces (a private /proc and /tmp, no network), the program as a user of its own.
    case namespaces = "mount+pid+network namespaces, a user of its own"
    /// Unprivileged: the same namespaces inside a user namespace; the program keeps the scorer's uid (root inside), so it
    /// can read whatever files the scorer's user can.
    case userNamespaces = "user+mount+pid+network namespaces, the scorer's uid"
    /// Root without namespaces: a user of its own and rlimits; network, /proc and /tmp shared with the host.
    case ownUserWithoutNamespaces = "a user of its own, no namespaces (network not isolated)"
    /// rlimits only, as the scorer's user: network shared, the process limit not enforced for root, a daemon may outlive the run.
    case limitsOnly = "rlimits only, the scorer's user (network not isolated)"

    /// Network, /proc and /tmp shared with the host: only with `sandbox.allow_weak_isolation`.
    public var isWeak: Bool { self == .ownUserWithoutNamespaces || self == .limitsOnly }

    /// A wrapper process (unshare --fork) sits between the scorer and the program.
    var forksWrapper: Bool { self == .namespaces || self == .userNamespaces }

    /// Each program runs as a uid of its own (the scorer is root).
    var ownUser: Bool { self == .namespaces || self == .ownUserWithoutNamespaces }
}

/// A sandbox that will not run untrusted programs: says what this machine lacks and which setting would accept that.
public struct SandboxUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    public var isolation: SandboxIsolation
    /// Why the namespaces could not be made (the probe's error).
    public var missing: String

    public var description: String {
        "code sandbox refuses to run untrusted programs: no mount/pid/network namespaces here (\(missing)); it could only run them with "
            + "\(isolation.rawValue). Give the process the namespaces (as root with CAP_SYS_ADMIN, e.g. compose cap_add SYS_ADMIN, see "
            + "docs/deploy.md) or set \(SandboxPolicy.allowWeakIsolationKey) = true to accept the weaker mode"
    }
}

/// What a process accepts from its sandbox: namespaces, or a weaker mode only when `sandbox.allow_weak_isolation` says so.
/// Configured once at process start (`configureProcess`); every `CodeSandbox` made without an explicit policy uses it.
public struct SandboxPolicy: Sendable, Equatable {
    public static let allowWeakIsolationKey = "sandbox.allow_weak_isolation"

    /// What this machine gives (tests set it to see what a machine without namespaces does).
    public var isolation: SandboxIsolation
    public var allowWeakIsolation: Bool
    /// Why a stronger mode was not available; empty when namespaces are.
    public var missing: String

    public init(isolation: SandboxIsolation, allowWeakIsolation: Bool, missing: String = "") {
        self.isolation = isolation
        self.allowWeakIsolation = allowWeakIsolation
        self.missing = missing.isEmpty && isolation.isWeak ? "not probed" : missing
    }

    /// nil when the sandbox may run programs; else the error naming what is missing and the setting.
    public var refusal: SandboxUnavailable? {
        isolation.isWeak && !allowWeakIsolation ? SandboxUnavailable(isolation: isolation, missing: missing) : nil
    }

    public func check() throws {
        if let refusal { throw refusal }
    }

    /// For a heartbeat, when a weak mode is in use: one line a `tributary status` reader must see; else nil.
    public var caveat: String? {
        isolation.isWeak && allowWeakIsolation ? "sandbox WEAK (\(Self.allowWeakIsolationKey)): \(isolation.rawValue)" : nil
    }

    /// This process's policy: what `configureProcess` set, else namespaces required.
    public static var process: SandboxPolicy {
        configured.withLock { $0 } ?? SandboxPolicy(isolation: probe.isolation, allowWeakIsolation: false, missing: probe.missing)
    }

    /// Sets this process's policy from its setting, once at start; returns it.
    @discardableResult
    public static func configureProcess(allowWeakIsolation: Bool) -> SandboxPolicy {
        let policy = SandboxPolicy(isolation: probe.isolation, allowWeakIsolation: allowWeakIsolation, missing: probe.missing)
        configured.withLock { $0 = policy }
        return policy
    }

    private static let configured = Mutex<SandboxPolicy?>(nil)

    /// What this machine gives, tried once per process with the wrappers `CodeSandbox` uses.
    static let probe: (isolation: SandboxIsolation, missing: String) = {
        let truePath = SandboxTools.find("true") ?? "/bin/true"
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-sandbox-probe-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        func attempt(_ isolation: SandboxIsolation) -> String? {
            let command = CodeSandbox.wrapper(isolation: isolation, uid: CodeSandbox.candidateUID()) + [truePath]
            return SandboxTools.failure(of: command, in: scratch)
        }
        if geteuid() == 0 {
            guard let why = attempt(.namespaces) else { return (.namespaces, "") }
            if attempt(.ownUserWithoutNamespaces) == nil { return (.ownUserWithoutNamespaces, why) }
            return (.limitsOnly, why)
        }
        guard let why = attempt(.userNamespaces) else { return (.userNamespaces, "") }
        return (.limitsOnly, why)
    }()
}

enum SandboxTools {
    static let unshare = find("unshare") ?? "/usr/bin/unshare"
    static let setpriv = find("setpriv") ?? "/usr/bin/setpriv"
    static let prlimit = find("prlimit") ?? "/usr/bin/prlimit"
    static let shell = find("sh") ?? "/bin/sh"

    static func find(_ name: String) -> String? {
        for directory in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
            let path = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// nil when `command` exits 0; else what went wrong (its last line of stderr, or how it ended).
    static func failure(of command: [String], in directory: URL) -> String? {
        guard FileManager.default.isExecutableFile(atPath: command[0]) else { return "\(command[0]) not found" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = directory
        process.environment = ["PATH": CodeSandbox.path]
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        do { try process.run() } catch { return "cannot start \(command[0]): \(error)" }
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationReason == .exit && process.terminationStatus == 0 { return nil }
        let last = stderr.split(separator: "\n").last.map(String.init) ?? "exit status \(process.terminationStatus)"
        return last.trimmingCharacters(in: .whitespaces)
    }
}
