import Foundation
import Testing
@testable import RL

#if canImport(Glibc)
import Glibc
#endif

/// Limits are small so that a test gone wrong cannot hurt the shared machine (process limit 8).
/// Two sandboxes: `sandbox`, whose 3 s wall and 2 s CPU limits the time-limit tests wait out, and `roomy`, for programs
/// that must run to their end (or to a limit other than time): python's start alone can take seconds on a loaded
/// 2-core machine (the suite runs beside model training and end-to-end runs), so a tight wall clock there would fail a
/// correct program. Same memory, process and output limits in both.
@Suite(.serialized) struct CodeSandboxTests {
    let sandbox = CodeSandbox(limits: SandboxLimits(wallSeconds: 3, cpuSeconds: 2, memoryBytes: 256 << 20, maxProcesses: 8, maxOutputBytes: 64 << 10))
    let roomy = CodeSandbox(limits: SandboxLimits(wallSeconds: 120, cpuSeconds: 60, memoryBytes: 256 << 20, maxProcesses: 8, maxOutputBytes: 64 << 10))

    @Test func runsAProgramAndCapturesOutput() {
        let result = roomy.run(program: "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin: "1 2 3")
        #expect(result.passed, "\(result.reason ?? "")")
        #expect(result.stdout == "6\n")
    }

    @Test func crashIsAFailureWithTheException() {
        let result = roomy.run(program: "raise ValueError('boom')")
        #expect(result.outcome == .exited(1))
        #expect(result.reason?.contains("ValueError: boom") == true)
    }

    @Test func infiniteLoopIsStopped() {
        let result = sandbox.run(program: "while True:\n    pass")
        #expect(!result.passed)
        // Either limit may end it: the CPU limit, or the wall clock first when the machine is busy.
        #expect(result.reason?.contains("time limit") == true, "\(result.outcome)")
    }

    @Test func sleepingForeverHitsTheWallClock() {
        let result = sandbox.run(program: "import time\ntime.sleep(1000)")
        #expect(result.outcome == .timedOut)
    }

    @Test func memoryHogIsStopped() {
        let result = roomy.run(program: "x = bytearray(2 * 1024 * 1024 * 1024)\nprint(len(x))")
        #expect(!result.passed)
        #expect(result.reason?.contains("memory") == true, "\(result.outcome) \(result.stderr)")
    }

    @Test func forkBombIsStopped() {
        let result = sandbox.run(program: "import os\nwhile True:\n    os.fork()")
        #expect(!result.passed)
        #expect(result.reason != nil)
    }

    @Test func hugeOutputIsStopped() {
        let result = roomy.run(program: "while True:\n    print('x' * 1000)")
        #expect(result.outcome == .outputTooLarge, "\(result.outcome)")
        #expect(result.reason == "output too large")
    }

    @Test func codeEnvironmentScoresPassingAndFailingPrograms() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("code-\(UUID().uuidString).jsonl").path
        try Data(#"{"prompt": "def double(x):", "tests": ["assert double(2) == 4", "assert double(-1) == -2"], "solution": "def double(x):\n    return 2 * x"}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let env = try CodeEnvironment(path: path, limits: roomy.limits)
        let task = env.task(seed: 0, index: 0)
        #expect(env.verify(completion: env.referenceSolution(for: task), task: task).isCorrect)
        #expect(env.verify(completion: "Here:\n```python\ndef double(x):\n    return x + x\n```\n", task: task).isCorrect)
        let wrong = env.verify(completion: "def double(x):\n    return x", task: task)
        #expect(wrong.correctness == 0 && wrong.reason?.contains("AssertionError") == true)
        #expect(env.verify(completion: "", task: task).reason?.contains("missing") == true)
        let tight = try CodeEnvironment(path: path, limits: sandbox.limits)
        let loop = tight.verify(completion: "def double(x):\n    while True: pass", task: task)
        #expect(loop.correctness == 0 && loop.reason?.contains("time limit") == true)
    }

    @Test func programsThatEndBeforeTheTestsOrForgeEqualityDoNotPass() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("code-\(UUID().uuidString).jsonl").path
        try Data(#"{"prompt": "def double(x):", "tests": ["assert double(2) == 4", "assert double(-1) == -2", "assert double(0.5) == 1"], "solution": "def double(x):\n    return 2 * x"}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let env = try CodeEnvironment(path: path, limits: roomy.limits)
        let task = env.task(seed: 0, index: 0)
        #expect(env.verify(completion: env.referenceSolution(for: task), task: task).isCorrect)
        let attacks = [
            "import os\nos._exit(0)",                                   // exit 0 before any test ran
            "raise SystemExit",                                           // the same, politely
            "import sys\nsys.exit(0)",
            "class Always:\n    def __eq__(self, other): return True\ndef double(x):\n    return Always()",  // every == is True
            "import sys\nprint(sys.stdin.read())\nimport os\nos._exit(0)",  // echo the nonce it was given, then leave
        ]
        for attack in attacks {
            let verdict = env.verify(completion: attack, task: task)
            #expect(!verdict.isCorrect, "passed: \(attack)")
        }
    }
    // MARK: Isolation. Each attack runs with this machine's isolation, which must be namespaces (the sandbox refuses to
    // run otherwise); a few also run in the weak mode a setting allows, to show what that mode gives away.

    /// A sandbox like `roomy` in the given mode (own uid, no namespaces needs root).
    func weak(_ isolation: SandboxIsolation) -> CodeSandbox {
        CodeSandbox(limits: roomy.limits, policy: SandboxPolicy(isolation: isolation, allowWeakIsolation: true, missing: "forced by the test"))
    }

    func requireNamespaces() throws {
        try #require(CodeSandbox.isolation == .namespaces || CodeSandbox.isolation == .userNamespaces,
                     "no namespaces on this machine: \(SandboxPolicy.probe.missing)")
    }

    @Test func withoutNamespacesAndWithoutTheSettingNothingRuns() throws {
        let strict = CodeSandbox(limits: roomy.limits, policy: SandboxPolicy(isolation: .limitsOnly, allowWeakIsolation: false, missing: "unshare: unshare failed: Operation not permitted"))
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("ran-\(UUID().uuidString)")
        let result = strict.run(program: "open('\(marker.path)', 'w').write('ran')")
        guard case .refused = result.outcome else { Issue.record("ran: \(result.outcome)"); return }
        #expect(!FileManager.default.fileExists(atPath: marker.path), "the program ran")
        let reason = try #require(result.reason)
        #expect(reason.contains("namespaces") && reason.contains("Operation not permitted") && reason.contains("sandbox.allow_weak_isolation = true"), "\(reason)")

        // A code environment that would score with it refuses to exist, with the same reason; one only checked does not.
        let path = try dataset(#"{"prompt": "def double(x):", "tests": ["assert double(2) == 4"], "solution": "def double(x):\n    return 2 * x"}"#)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: SandboxUnavailable.self) { try CodeEnvironment(path: path, policy: strict.policy) }
        let checkedOnly = try CodeEnvironment(path: path, policy: strict.policy, checkSandbox: false)
        let task = checkedOnly.task(seed: 0, index: 0)
        let verdict = checkedOnly.verify(completion: checkedOnly.referenceSolution(for: task), task: task)
        #expect(!verdict.isCorrect && verdict.reason?.contains("sandbox.allow_weak_isolation") == true, "\(verdict)")
        #expect(strict.policy.caveat == nil && strict.policy.refusal != nil)

        // With the setting the weak mode runs, and says so.
        let allowed = weak(.limitsOnly).run(program: "print('ran')")
        #expect(allowed.passed && allowed.stdout == "ran\n" && allowed.isolation == .limitsOnly)
        #expect(weak(.limitsOnly).policy.caveat?.contains("WEAK") == true)
    }

    @Test func thisMachineHasNamespacesAndTheProcessPolicyAcceptsThem() throws {
        try requireNamespaces()
        #expect(SandboxPolicy.process.refusal == nil && SandboxPolicy.process.caveat == nil)
        #expect(roomy.run(program: "print(1)").isolation == CodeSandbox.isolation)
    }

    @Test func theNetworkIsUnreachable() throws {
        try requireNamespaces()
        let listener = try TCPListener()
        defer { listener.close() }
        let program = """
            import socket
            try:
                socket.create_connection(('127.0.0.1', \(listener.port)), timeout=5)
                print('connected')
            except OSError as error:
                print('no connection:', error)
            """
        let result = roomy.run(program: program)
        #expect(result.passed, "\(result.reason ?? "")")
        #expect(result.stdout.hasPrefix("no connection:"), "\(result.stdout)")
        // the same program in the weak mode reaches the port: the listener is there to be reached
        if geteuid() == 0 {
            #expect(weak(.ownUserWithoutNamespaces).run(program: program).stdout == "connected\n")
        }
    }

    @Test func theScorersEnvironmentAndProcessesAreOutOfSight() throws {
        try requireNamespaces()
        // a secret of the scorer's kind under a name of its own: setting TRIBUTARY_AMQP_URL itself here would reach the
        // other tests running in this process at the same time (and every service they launch), then unset theirs
        let secret = "amqp://reward:secret-\(UUID().uuidString)@rabbitmq"
        setenv("TRIBUTARY_SANDBOX_TEST_SECRET_URL", secret, 1)
        defer { unsetenv("TRIBUTARY_SANDBOX_TEST_SECRET_URL") }
        let program = """
            import os
            print(sorted(os.environ))
            print(open('/proc/1/environ', 'rb').read())
            pids = [p for p in os.listdir('/proc') if p.isdigit()]
            for pid in pids:
                for name in ('environ', 'cmdline'):
                    try:
                        print(pid, name, open('/proc/%s/%s' % (pid, name), 'rb').read())
                    except OSError as error:
                        print(pid, name, error)
            print('processes', len(pids))
            """
        let result = roomy.run(program: program)
        #expect(result.passed, "\(result.reason ?? "")")
        #expect(result.stdout.hasPrefix("['HOME', 'LANG', 'PATH']\n"), "\(result.stdout.prefix(300))")
        #expect(!result.stdout.contains("secret-") && !result.stdout.contains("TRIBUTARY"), "\(result.stdout)")
        // only the sandbox's own shell and python: not the scorer, not the host's processes
        let processes = result.stdout.split(separator: "\n").last.flatMap { Int($0.split(separator: " ").last ?? "") }
        #expect(processes != nil && processes! <= 3, "\(result.stdout)")
    }

    @Test func aDaemonIsGoneWhenTheProgramEnds() throws {
        try requireNamespaces()
        var sandboxes = [roomy]
        if geteuid() == 0 { sandboxes.append(weak(.ownUserWithoutNamespaces)) }  // no PID namespace: the uid sweep alone
        for sandbox in sandboxes {
            let marker = "daemon-\(UUID().uuidString)"
            // double fork, setsid, then exec a sleeper named by the marker, which says it is running before main.py exits
            let program = """
                import os, sys
                r, w = os.pipe()
                os.set_inheritable(w, True)
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        os.execv(sys.executable, [sys.executable, '-c', 'import os, sys, time\\nos.write(int(sys.argv[1]), b"x")\\nwhile True: time.sleep(3600)', str(w), '\(marker)'])
                    os._exit(0)
                os.wait()
                os.close(w)
                print('daemon running' if os.read(r, 1) == b'x' else 'no daemon')
                """
            let result = sandbox.run(program: program)
            // it ends when main.py does: the sandbox does not wait for the daemon (which never ends by itself)
            #expect(result.outcome == .exited(0) && result.stdout == "daemon running\n", "\(result.isolation): \(result.outcome) \(result.stdout) \(result.stderr)")
            #expect(Self.processes(naming: marker).isEmpty, "\(result.isolation): the daemon outlived the verdict")
        }
    }

    @Test func writesOutsideTheWorkFolderDoNotReachTheHost() throws {
        try requireNamespaces()
        let shared = FileManager.default.temporaryDirectory.appendingPathComponent("shared-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: shared, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: shared.path)  // anybody may write here
        defer { try? FileManager.default.removeItem(at: shared) }
        let marker = "escaped-\(UUID().uuidString)"
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent(marker)
        let program = """
            import os, stat
            before = sorted(os.listdir('/tmp'))
            for path in ['\(shared.path)/\(marker)', '\(tmp.path)', '/var/tmp/\(marker)', '/dev/shm/\(marker)', '\(marker)']:
                try:
                    open(path, 'w').write('x')
                    print('wrote', path)
                except OSError as error:
                    print('refused', path, error.strerror)
            info = os.stat('.')
            print('work', oct(stat.S_IMODE(info.st_mode)), info.st_uid == os.getuid(), os.getuid() != 0, before)
            """
        let result = roomy.run(program: program)
        #expect(result.passed, "\(result.reason ?? "")")
        for path in [shared.appendingPathComponent(marker).path, tmp.path, "/var/tmp/\(marker)", "/dev/shm/\(marker)"] {
            #expect(!FileManager.default.fileExists(atPath: path), "reached the host: \(path)\n\(result.stdout)")
        }
        #expect(result.stdout.contains("wrote \(marker)\n"), "the work folder is writable\n\(result.stdout)")
        if CodeSandbox.isolation == .namespaces {
            #expect(result.stdout.contains("work 0o700 True True ['work']"), "\(result.stdout)")
        }
        // and the work folder is gone afterwards
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path)) ?? []
        for folder in leftovers where folder.hasPrefix("tributary-sandbox-") {
            #expect(!FileManager.default.fileExists(atPath: FileManager.default.temporaryDirectory.appendingPathComponent(folder).appendingPathComponent("work/\(marker)").path))
        }
    }

    @Test func eachProgramRunsAsAUserOfItsOwn() throws {
        try requireNamespaces()
        try #require(CodeSandbox.isolation == .namespaces, "not root: programs keep the scorer's uid")
        let uids = (0..<2).map { _ in roomy.run(program: "import os\nprint(os.getuid())").stdout }
        #expect(uids[0] != uids[1] && !uids.contains("0\n") && !uids.contains("65534\n"), "\(uids)")
    }

    func dataset(_ line: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("code-\(UUID().uuidString).jsonl").path
        try Data(line.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Live processes on the host whose command line holds `marker`.
    static func processes(naming marker: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int(entry) != nil, let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(marker)
        }
    }
}

/// A TCP socket listening on 127.0.0.1 at a free port (connections wait in its backlog; nothing accepts them).
struct TCPListener {
    let descriptor: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { fd >= 0 && bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL) }
        descriptor = fd
        port = UInt16(bigEndian: address.sin_port)
    }

    func close() { _ = Glibc.close(descriptor) }
}
