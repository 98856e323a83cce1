import Foundation

/// Limits for one sandboxed program.
public struct SandboxLimits: Sendable, Codable, Equatable {
    /// Wall-clock deadline; the process group is killed when it passes.
    public var wallSeconds: Double
    /// RLIMIT_CPU.
    public var cpuSeconds: Int
    /// RLIMIT_AS in bytes.
    public var memoryBytes: Int
    /// RLIMIT_NPROC: keep low, a fork bomb stops here.
    public var maxProcesses: Int
    /// RLIMIT_FSIZE and the cap on stdout/stderr; reaching it counts as a huge output.
    public var maxOutputBytes: Int

    public init(wallSeconds: Double = 5, cpuSeconds: Int? = nil, memoryBytes: Int = 512 << 20, maxProcesses: Int = 16, maxOutputBytes: Int = 1 << 20) {
        self.wallSeconds = wallSeconds
        self.cpuSeconds = cpuSeconds ?? max(1, Int(wallSeconds.rounded(.up)))
        self.memoryBytes = memoryBytes
        self.maxProcesses = maxProcesses
        self.maxOutputBytes = maxOutputBytes
    }
}

/// How a sandboxed program ended.
public struct SandboxResult: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
        case timedOut
        case outputTooLarge
        case failedToStart(String)
        /// Not run: the policy refuses this machine's isolation (the reason names what is missing and the setting).
        case refused(String)
    }

    public var outcome: Outcome
    public var stdout: String
    public var stderr: String
    public var wallSeconds: Double
    public var isolation: SandboxIsolation

    /// Exited with status 0.
    public var passed: Bool { outcome == .exited(0) }

    /// One line saying why the program did not pass; nil when it passed.
    public var reason: String? {
        switch outcome {
        case .exited(0): return nil
        case .exited(let status):
            if stderr.contains("MemoryError") { return "memory limit exceeded (MemoryError)" }
            if stderr.contains("BlockingIOError") || stderr.contains("Resource temporarily unavailable") { return "process limit reached" }
            if stderr.contains("File too large") { return "output too large" }
            let last = stderr.split(separator: "\n").last.map(String.init) ?? ""
            return "exited with status \(status)" + (last.isEmpty ? "" : ": \(last.prefix(200))")
        case .signalled(let signal):
            switch signal {
            case 24: return "CPU time limit exceeded (SIGXCPU)"
            case 25: return "output too large (SIGXFSZ)"
            case 9: return "killed (SIGKILL), likely the memory or process limit"
            case 11: return "crashed (SIGSEGV)"
            default: return "killed by signal \(signal)"
            }
        case .timedOut: return "wall-clock time limit exceeded (\(String(format: "%.1f", wallSeconds)) s)"
        case .outputTooLarge: return "output too large"
        case .failedToStart(let why): return "sandbox failed to start: \(why)"
        case .refused(let why): return why
        }
    }
}
