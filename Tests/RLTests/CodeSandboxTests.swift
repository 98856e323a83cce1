import Foundation
import Testing
import RL

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

    @Test func networkIsUnreachableWhenNamespacesAreAvailable() throws {
        try #require(CodeSandbox.isolation == .namespacesAsNobody || CodeSandbox.isolation == .userNamespaces, "no namespaces on this machine")
        let result = sandbox.run(program: "import socket\nsocket.create_connection(('127.0.0.1', 6389), timeout=1)")
        #expect(!result.passed)
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
}
