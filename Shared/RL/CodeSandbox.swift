import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs an untrusted python3 program with limits, and always comes back: the scorer never hangs on a candidate.
///
/// With namespaces (the scorer is root, or may make user namespaces) the program gets new mount, PID and network
/// namespaces: its own /proc (it sees only its own processes), fresh tmpfs on /tmp, /var/tmp and /dev/shm (what it writes
/// there dies with it), its work folder at /tmp/work, no network. As root it also runs as a uid of its own, so its
/// work folder (0700) is closed to every other candidate. rlimits come from `prlimit` (address space, CPU seconds,
/// processes, file size = output cap, open files; CPU gets SIGXCPU at the soft limit, SIGKILL a second later). The
/// environment is a fixed three variables, never the scorer's (which holds broker URLs and passwords).
///
/// Everything the program started is killed when it ends, however it ends: the PID namespace dies with its init, the
/// process group is killed, and a uid of its own is swept from /proc. Without namespaces the sandbox refuses to run
/// unless its policy allows a weak mode (`sandbox.allow_weak_isolation`); each result says which mode ran it.
public struct CodeSandbox: Sendable {
    public var limits: SandboxLimits
    public var python: String
    public var policy: SandboxPolicy

    public init(limits: SandboxLimits = SandboxLimits(), python: String? = nil, policy: SandboxPolicy = .process) {
        self.limits = limits
        self.python = python ?? Self.defaultPython
        self.policy = policy
    }

    /// How this machine isolates sandboxed programs (probed once per process).
    public static var isolation: SandboxIsolation { SandboxPolicy.probe.isolation }

    /// Runs `program` as a python3 script (main.py) beside `files` (name → text), with `stdin`; returns how it ended,
    /// its (capped) output and timing. A policy that refuses this machine's isolation runs nothing (`.refused`).
    public func run(program: String, files: [String: String] = [:], stdin: String = "") -> SandboxResult {
        let isolation = policy.isolation
        if let refusal = policy.refusal {
            return SandboxResult(outcome: .refused(refusal.description), stdout: "", stderr: "", wallSeconds: 0, isolation: isolation)
        }
        let start = ContinuousClock.now
        let fileManager = FileManager.default
        let uid = isolation.ownUser ? Self.candidateUID() : nil
        let root = fileManager.temporaryDirectory.appendingPathComponent("tributary-sandbox-\(UUID().uuidString)")
        let work = root.appendingPathComponent("work")
        defer { try? fileManager.removeItem(at: root) }
        do {
            try fileManager.createDirectory(at: work, withIntermediateDirectories: true)
            for (name, text) in files.merging(["main.py": program], uniquingKeysWith: { $1 }) {
                try Data(text.utf8).write(to: work.appendingPathComponent(name))
                try fileManager.setAttributes([.posixPermissions: 0o644], ofItemAtPath: work.appendingPathComponent(name).path)
            }
            try Data(stdin.utf8).write(to: root.appendingPathComponent("stdin"))
            try Data().write(to: root.appendingPathComponent("stdout"))
            try Data().write(to: root.appendingPathComponent("stderr"))
            // The candidate's folder is its own (0700); the folder above only lets it through, to nothing else.
            try fileManager.setAttributes([.posixPermissions: 0o711], ofItemAtPath: root.path)
            try fileManager.setAttributes([.posixPermissions: 0o700], ofItemAtPath: work.path)
            if let uid, chown(work.path, uid, uid) != 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
        } catch {
            return SandboxResult(outcome: .failedToStart("cannot prepare temporary folder: \(error)"), stdout: "", stderr: "", wallSeconds: 0, isolation: isolation)
        }

        let process = Process()
        let command = Self.command(isolation: isolation, uid: uid, limits: limits, python: python)
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = work
        process.environment = ["PATH": Self.path, "HOME": isolation.forksWrapper ? "/tmp/work" : work.path, "LANG": "C.UTF-8"]
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            process.standardInput = try FileHandle(forReadingFrom: root.appendingPathComponent("stdin"))
            process.standardOutput = try FileHandle(forWritingTo: root.appendingPathComponent("stdout"))
            process.standardError = try FileHandle(forWritingTo: root.appendingPathComponent("stderr"))
            try process.run()
        } catch {
            return SandboxResult(outcome: .failedToStart("cannot start \(command[0]): \(error)"), stdout: "", stderr: "", wallSeconds: 0, isolation: isolation)
        }

        // Foundation makes the child a process-group leader; with namespaces the group holds the namespace's init.
        let pid = process.processIdentifier
        let ending = ProgramEnding(pid: pid)
        var timedOut = false
        if !ending.wait(seconds: limits.wallSeconds) {
            timedOut = true
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            ending.wait()
        }
        // On every exit, not only the deadline: whatever the program left behind (a daemon in its group, or one that
        // left the group with setsid but kept its uid) dies before the verdict.
        kill(-pid, SIGKILL)
        if let uid { Self.killAll(uid: uid) }
        let ended = ending.status ?? {
            // Foundation reaped the child before `waitid` saw it: its status is Foundation's.
            finished.wait()
            return (signalled: process.terminationReason == .uncaughtSignal, value: process.terminationStatus)
        }()
        let wall = start.duration(to: .now)
        let stdout = Self.readCapped(root.appendingPathComponent("stdout"), cap: limits.maxOutputBytes)
        let stderr = Self.readCapped(root.appendingPathComponent("stderr"), cap: limits.maxOutputBytes)
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18

        let outcome: SandboxResult.Outcome
        if stdout.full || stderr.full {
            outcome = .outputTooLarge
        } else if timedOut {
            outcome = .timedOut
        } else if ended.signalled {
            outcome = .signalled(ended.value)
        } else if ended.value > 128, ended.value < 160, isolation.forksWrapper {
            outcome = .signalled(ended.value - 128)  // unshare --fork reports the child's signal as 128+n
        } else {
            outcome = .exited(ended.value)
        }
        return SandboxResult(outcome: outcome, stdout: stdout.text, stderr: stderr.text, wallSeconds: wallSeconds, isolation: isolation)
    }

    static func readCapped(_ url: URL, cap: Int) -> (text: String, full: Bool) {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return ("", false) }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: cap + 1)) ?? Data()
        let full = data.count >= cap
        return (String(decoding: data.prefix(min(cap, 64 * 1024)), as: UTF8.self), full)
    }

    /// The wrapper chain: [unshare ... sh -c mounts] [setpriv to the candidate's uid] prlimit ... -- python3 -I -B main.py
    static func command(isolation: SandboxIsolation, uid: UInt32?, limits: SandboxLimits, python: String) -> [String] {
        var command = wrapper(isolation: isolation, uid: uid)
        command += [
            SandboxTools.prlimit,
            "--as=\(limits.memoryBytes)", "--cpu=\(limits.cpuSeconds):\(limits.cpuSeconds + 1)", "--nproc=\(limits.maxProcesses)",
            "--fsize=\(limits.maxOutputBytes)", "--nofile=64", "--core=0", "--",
        ]
        // unshare --fork garbles a child's death by signal; a shell in between turns it into exit status 128+n.
        // (dash exports PWD: unset, so the program's environment is exactly the three variables)
        if isolation.forksWrapper { command += [SandboxTools.shell, "-c", "unset PWD; \"$@\"; exit $?", "sandbox"] }
        command += [python, "-I", "-B", "main.py"]
        return command
    }

    /// What runs before prlimit: the namespaces and the mounts inside them, then the drop to the candidate's uid.
    static func wrapper(isolation: SandboxIsolation, uid: UInt32?) -> [String] {
        let drop = uid.map { [SandboxTools.setpriv, "--reuid=\($0)", "--regid=\($0)", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"] } ?? []
        switch isolation {
        case .namespaces:
            return [SandboxTools.unshare, "--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc", "--", SandboxTools.shell, "-c", privateMounts, "sandbox"] + drop
        case .userNamespaces:
            return [SandboxTools.unshare, "--map-root-user", "--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc", "--", SandboxTools.shell, "-c", privateMounts, "sandbox"]
        case .ownUserWithoutNamespaces:
            return drop
        case .limitsOnly:
            return []
        }
    }

    /// Inside the new mount namespace, started in the work folder: fresh tmpfs over the shared scratch folders, the work
    /// folder bound at /tmp/work (reached through /proc/self/cwd, since the tmpfs now hides its path), then the program.
    static let privateMounts = """
        set -e
        for d in /tmp /var/tmp /dev/shm; do
            if [ -d "$d" ]; then mount -t tmpfs -o mode=1777,size=16m,nosuid,nodev tmpfs "$d"; fi
        done
        mkdir /tmp/work
        mount --bind --no-canonicalize /proc/self/cwd /tmp/work
        cd /tmp/work
        unset OLDPWD PWD
        exec "$@"
        """

    static let path = "/usr/local/bin:/usr/bin:/bin"

    /// A uid no account uses, fresh for each program (as root only): its files and processes are its own.
    static func candidateUID() -> UInt32 { UInt32.random(in: 1_000_000_000..<2_000_000_000) }

    /// SIGKILL every live process whose real uid is `uid`, until none is left (a fork between two scans is caught by the next).
    static func killAll(uid: UInt32) {
        for _ in 0..<1000 {
            let pids = processes(uid: uid)
            if pids.isEmpty { return }
            for pid in pids { kill(pid, SIGKILL) }
            usleep(1000)
        }
    }

    /// Processes (not zombies) whose real uid is `uid`, from /proc.
    static func processes(uid: UInt32) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8) else { return nil }
            var state = "", realUID: UInt32?
            for line in status.split(separator: "\n") {
                if line.hasPrefix("State:") { state = line.dropFirst(6).trimmingCharacters(in: .whitespaces) }
                if line.hasPrefix("Uid:") { realUID = line.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { UInt32($0) } }
            }
            return realUID == uid && !state.hasPrefix("Z") ? pid : nil
        }
    }

    static let defaultPython: String = {
        for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return SandboxTools.find("python3") ?? "/usr/bin/python3"
    }()
}

/// The end of the program's own process, seen with `waitid(WNOWAIT)` on a thread of its own (it blocks), which leaves
/// the child for Foundation to reap. Foundation's termination handler is no use here: it fires only once every process
/// holding a socket Foundation gives the child has exited, and a daemon the program left would put that off forever.
final class ProgramEnding: Sendable {
    private let ended = DispatchSemaphore(value: 0)
    private let result = Mutex<(signalled: Bool, value: Int32)?>(nil)

    init(pid: pid_t) {
        Thread { [self] in
            var info = siginfo_t()
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == 0 {
                let signalled = info.si_code == Int32(CLD_KILLED) || info.si_code == Int32(CLD_DUMPED)
                let value = info._sifields._sigchld.si_status
                result.withLock { $0 = (signalled, value) }
            }
            ended.signal()
        }.start()
    }

    /// false when `seconds` passed first.
    func wait(seconds: Double) -> Bool { ended.wait(timeout: .now() + seconds) == .success }
    func wait() { ended.wait() }

    /// How it ended: killed by a signal, or exited with a status; nil when it was already reaped.
    var status: (signalled: Bool, value: Int32)? { result.withLock { $0 } }
}
