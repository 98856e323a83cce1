import Foundation
import Testing
import TestSupport

/// The launcher the end-to-end tests and the pipeline bench share, on /bin/sh (no brokers, no services).
@Suite("Service launcher")
struct ServiceProcessTests {
    static func fleet() throws -> ServiceFleet {
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("service-process-tests-\(UUID().uuidString.prefix(8))")
        return try ServiceFleet(binaries: URL(fileURLWithPath: "/bin"), logs: logs, environment: ["LAUNCHER_GREETING": "hello"])
    }

    @Test func outputArgumentsAndEnvironmentReachTheLogAndTheExitCodeComesBack() async throws {
        let fleet = try Self.fleet()
        let process = try fleet.launch("sh", name: "greeter", arguments: ["-c", "echo \"$LAUNCHER_GREETING $0\"; echo oops >&2; exit 3", "world"])
        #expect(try await process.waitForExit(within: 30) == 3)
        #expect(process.poll() == 3)
        let log = try String(contentsOfFile: process.logPath, encoding: .utf8)
        #expect(log == "hello world\noops\n")
        #expect(process.logTail(lines: 1) == "oops")
        #expect(fleet.firstExited()?.pid == process.pid)
        #expect(fleet.firstExited(except: [process.pid]) == nil)
    }

    @Test func aMissingExecutableIsNamed() throws {
        let fleet = try Self.fleet()
        #expect(throws: ServiceProcessError.self) { try fleet.launch("tributary-nothing-here", name: "ghost", arguments: []) }
    }

    @Test func waitingPastTheDeadlineThrowsAndSignalsEndTheProcess() async throws {
        let fleet = try Self.fleet()
        let process = try fleet.launch("sh", name: "sleeper", arguments: ["-c", "sleep 60"])
        await #expect(throws: ServiceProcessError.self) { try await process.waitForExit(within: 0.2) }
        process.signal(SIGTERM)
        #expect(try await process.waitForExit(within: 30) == 128 + SIGTERM)
        process.signal(SIGKILL)  // reaped: never sent to a pid that may be another process's now
        #expect(process.poll() == 128 + SIGTERM)
    }

    @Test func stopAllTerminatesKillsWhoeverIgnoresSIGTERMAndReportsEveryExit() throws {
        let fleet = try Self.fleet()
        let polite = try fleet.launch("sh", name: "polite", arguments: ["-c", "sleep 60"])
        let stubborn = try fleet.launch("sh", name: "stubborn", arguments: ["-c", "trap '' TERM; while :; do sleep 0.1; done"])
        let done = try fleet.launch("sh", name: "done", arguments: ["-c", "exit 0"])
        #expect(done.blockingWaitForExit(within: 30) == 0)
        Thread.sleep(forTimeInterval: 0.3)  // the trap is set before SIGTERM comes
        let exits = fleet.stopAll(gracePeriod: 1)
        #expect(exits.map(\.process.name) == ["polite", "stubborn", "done"])
        #expect(exits.map(\.code) == [128 + SIGTERM, 128 + SIGKILL, 0])
        #expect(exits.map(\.forced) == [false, true, false])
        #expect(polite.poll() != nil && stubborn.poll() != nil)
    }

    @Test func aFleetThatGoesAwayKillsWhatIsStillRunning() throws {
        var fleet: ServiceFleet? = try Self.fleet()
        let process = try fleet!.launch("sh", name: "straggler", arguments: ["-c", "sleep 60"])
        fleet = nil
        #expect(process.poll() == 128 + SIGKILL)
    }
}
