import Foundation
import Synchronization
import TestSupport
import Wire

/// A ServiceFleet looked after as compose's `restart: on-failure` would: a service that exits is started again with the
/// same command. A trusted service (learner, scorer, broadcaster) that exits without the harness meaning it counts as a
/// restart, which is what the fault table reports; one the fault killed on purpose (a kill, or an armed crash point) is
/// restarted as part of the fault and not counted.
public final class SupervisedFleet: Sendable {
    public let fleet: ServiceFleet
    private let members = Mutex<[String: Member]>([:])
    private let log = Mutex<[Event]>([])
    private let watcher = Mutex<Task<Void, Never>?>(nil)

    public static let trustedRoles: Set<String> = ["learner", "reward", "broadcaster", "validator"]

    struct Member {
        var role: String
        var arguments: [String]
        /// For this process only (a crash point), dropped on restart.
        var environment: [String: String]
        var wrapper: [String]
        var process: LaunchedProcess
        var generation = 0
        /// Exits the harness caused (a kill, an armed crash point): the next exit is restarted without counting.
        var expectedExit = false
        /// Left down (a process the fault ended for good, or the fleet is stopping).
        var retired = false
    }

    public enum EventKind: String, Sendable { case faultKill = "killed by the fault", unexpectedExit = "exited unexpectedly", restarted }

    public struct Event: Sendable {
        public var instance: String
        public var kind: EventKind
        public var code: Int32?
        public var atMs: Int64
        /// The process died by its armed crash point (SIGKILL with `TRIBUTARY_CRASH_AT` set at launch).
        public var crashPoint = false
    }

    public init(fleet: ServiceFleet) {
        self.fleet = fleet
        ChaosInterrupt.register(self)
    }

    /// Launches `tributary-ROLE` as `instance` and supervises it.
    @discardableResult
    public func launch(role: String, instance: String, arguments: [String], environment: [String: String] = [:],
                       wrapper: [String] = []) throws -> LaunchedProcess {
        let process = try fleet.launch("tributary-\(role)", name: instance, arguments: arguments, environment: environment, wrapper: wrapper)
        members.withLock {
            $0[instance] = Member(role: role, arguments: arguments, environment: environment, wrapper: wrapper, process: process,
                                  expectedExit: !environment.isEmpty && environment.keys.contains(crashPointVariable))
        }
        return process
    }

    let crashPointVariable = "TRIBUTARY_CRASH_AT"

    /// Polls every 100 ms; restarts whatever exited.
    public func startSupervising() {
        watcher.withLock { task in
            guard task == nil else { return }
            task = Task.detached { [weak self] in
                while !Task.isCancelled {
                    self?.superviseOnce()
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    func superviseOnce() {
        let exited: [(String, Member, Int32)] = members.withLock { all in
            all.compactMap { name, member in
                guard !member.retired, let code = member.process.poll() else { return nil }
                return (name, member, code)
            }
        }
        for (instance, member, code) in exited {
            let now = WallClock.nowMs()
            // an armed crash point ends the process with SIGKILL; any other end of it is a failure of its own
            let armed = member.environment[crashPointVariable] != nil
            if member.expectedExit && (!armed || code == 128 + SIGKILL) {
                record(Event(instance: instance, kind: .faultKill, code: code, atMs: now, crashPoint: armed))
            } else {
                record(Event(instance: instance, kind: .unexpectedExit, code: code, atMs: now))
            }
            do {
                try relaunch(instance, member)
            } catch {
                FileHandle.standardError.write(Data("chaos: could not restart \(instance): \(error)\n".utf8))
                members.withLock { $0[instance]?.retired = true }
            }
        }
    }

    private func relaunch(_ instance: String, _ member: Member) throws {
        let generation = member.generation + 1
        // a restart gets its own log; the crash point is not armed again
        let process = try fleet.launch("tributary-\(member.role)", name: "\(instance).\(generation)", arguments: member.arguments, wrapper: member.wrapper)
        members.withLock {
            $0[instance]?.process = process
            $0[instance]?.generation = generation
            $0[instance]?.expectedExit = false
            $0[instance]?.environment = [:]
        }
        record(Event(instance: instance, kind: .restarted, code: nil, atMs: WallClock.nowMs()))
    }

    private func record(_ event: Event) {
        log.withLock { $0.append(event) }
        FileHandle.standardError.write(Data("chaos: \(event.instance) \(event.kind.rawValue)\(event.code.map { " (\($0))" } ?? "")\n".utf8))
    }

    /// The instance's current process.
    public func process(_ instance: String) -> LaunchedProcess? { members.withLock { $0[instance]?.process } }

    public func instances(role: String) -> [String] {
        members.withLock { all in all.filter { $0.value.role == role }.map(\.key).sorted() }
    }

    /// Signals the instance's process on the harness's behalf: with SIGKILL (or any signal that ends it) its exit is the
    /// fault's, and the supervisor restarts it unless `restart` is false.
    public func signal(_ instance: String, _ number: Int32, restart: Bool = true) {
        let process: LaunchedProcess? = members.withLock { all in
            guard let member = all[instance] else { return nil }
            if number == SIGKILL || number == SIGTERM {
                all[instance]?.expectedExit = true
                all[instance]?.retired = !restart
            }
            return member.process
        }
        process?.signal(number)
    }

    /// Arms the next exit of `instance` as the fault's (an armed crash point ends it).
    public func expectExit(_ instance: String) { members.withLock { $0[instance]?.expectedExit = true } }

    /// Puts a retired instance back under supervision: the supervisor starts it again (without counting a restart).
    public func revive(_ instance: String) {
        members.withLock {
            $0[instance]?.retired = false
            $0[instance]?.expectedExit = true
        }
    }

    /// Like `revive`, with other arguments (a learner that waits for StartRun instead of autostarting).
    public func replace(_ instance: String, arguments: [String]) {
        members.withLock {
            $0[instance]?.arguments = arguments
            $0[instance]?.retired = false
            $0[instance]?.expectedExit = true
        }
    }

    public var events: [Event] { log.withLock { $0 } }

    /// Trusted processes restarted after exits the harness did not cause.
    public var trustedRestarts: Int {
        let roles = members.withLock { $0.mapValues(\.role) }
        return events.filter { $0.kind == .unexpectedExit && Self.trustedRoles.contains(roles[$0.instance] ?? "") }.count
    }

    /// Times the fault ended an instance (kills and crash points), with when.
    public var faultKills: [Event] { events.filter { $0.kind == .faultKill } }

    /// The crash-point deaths of `instance` since launch (an armed crash point fires at most once: restarts are unarmed).
    public func crashPointKills(of instance: String) -> [Event] { faultKills.filter { $0.crashPoint && $0.instance == instance } }

    /// Stops supervising, then every process (SIGTERM, SIGKILL after `gracePeriod`).
    @discardableResult
    public func stopAll(gracePeriod: Double) -> [ProcessExit] {
        watcher.withLock { task in
            task?.cancel()
            task = nil
        }
        members.withLock { all in
            for name in all.keys { all[name]?.retired = true }
        }
        ChaosInterrupt.unregister(self)
        // a stopped process ignores SIGTERM until it is continued
        for process in fleet.processes { process.signal(SIGCONT) }
        return fleet.stopAll(gracePeriod: gracePeriod)
    }
}

/// SIGINT or SIGTERM to a process running the harness (the bench): every supervised fleet still up is killed, then
/// `cleanup` (brokers, jail) runs, then the process exits, so an interrupted bench leaves nothing behind.
public enum ChaosInterrupt {
    static let live = Mutex<[ObjectIdentifier: SupervisedFleet]>([:])
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []

    static func register(_ fleet: SupervisedFleet) { live.withLock { $0[ObjectIdentifier(fleet)] = fleet } }
    static func unregister(_ fleet: SupervisedFleet) { _ = live.withLock { $0.removeValue(forKey: ObjectIdentifier(fleet)) } }

    public static func install(cleanup: @escaping @Sendable () -> Void) {
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("chaos: interrupted; stopping every service and the brokers\n".utf8))
                for fleet in live.withLock({ Array($0.values) }) { fleet.stopAll(gracePeriod: 0) }
                cleanup()
                exit(130)
            }
            source.resume()
            return source
        }
    }
}
