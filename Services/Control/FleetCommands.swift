import ArgumentParser
import Foundation
import Messaging
import Checkpoints
import Config
import Runtime
import Wire

/// What drain and shutdown share: a target, the publish, and optionally waiting for the heartbeats to go.
struct FleetOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("all, ROLE (rollout, reward, learner, broadcaster) or ROLE.INSTANCE.", valueName: "target"))
    var target: String
    @Flag(help: "Address the services of every run, not only --run's.") var allRuns = false
    @Flag(help: "Wait until the targeted instances' heartbeats are gone.") var wait = false
    @Option(help: "Seconds --wait waits at most (exit code 4 when some are still alive).") var timeout: Double = 60

    func parsedTarget() throws -> ControlTarget {
        do { return try ControlTarget(parsing: target) } catch { throw ValidationError("\(error)") }
    }
}

struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Ask services to stop taking work, hand back what they hold, and exit 0.")
    @OptionGroup var options: ControlOptions
    @OptionGroup var fleet: FleetOptions
    func validate() throws { _ = try fleet.parsedTarget() }
    func run() async throws { try await sendFleetCommand(options, fleet, .drain(DrainCommandMessage()), verb: "drain") }
}

struct ShutdownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shutdown", abstract: "Ask services to shut down: stop taking work, hand back what they hold, and exit 0.")
    @OptionGroup var options: ControlOptions
    @OptionGroup var fleet: FleetOptions
    func validate() throws { _ = try fleet.parsedTarget() }
    func run() async throws { try await sendFleetCommand(options, fleet, .shutdown(ShutdownCommandMessage()), verb: "shutdown") }
}

private func sendFleetCommand(_ options: ControlOptions, _ fleet: FleetOptions, _ command: ControlCommand.OneOf_Command, verb: String) async throws {
    let target = try fleet.parsedTarget()
    let stillAlive: Int = try await withSession(options, amqp: true) { session in
        let run = session.names.run
        let targeted = try await session.heartbeats().filter { target.matches(role: $0.role, instance: $0.instance) }
        let message: ControlCommand
        do {
            message = try await session.send(command, routingKey: target.routingKey, runID: fleet.allRuns ? "" : run)
        } catch AMQPError.publishReturned {
            throw ControlError("no service is listening for '\(target.routingKey)' on \(Names.controlExchange)" +
                               (target.instance != nil ? " (is the instance name right? see tributary status)" : ""))
        }
        let scope = fleet.allRuns ? "every run" : "run \(run)"
        print("sent \(verb) to \(target.routingKey) of \(scope) (\(message.messageID))")
        if !targeted.isEmpty { print("  heartbeats of \(run) that it reaches: " + targeted.map { "\($0.role).\($0.instance)" }.joined(separator: ", ")) }
        guard fleet.wait, !targeted.isEmpty else { return 0 }
        let deadline = ContinuousClock.now + .seconds(fleet.timeout)
        var alive = targeted
        while true {
            let keys = alive.map { session.names.heartbeatKey(role: $0.role, instance: $0.instance) }
            let replies = try await session.redis.pipeline(keys.map { ["EXISTS", $0] })
            alive = zip(alive, replies).filter { $0.1.int == 1 }.map(\.0)
            if alive.isEmpty {
                print("all \(targeted.count) stopped")
                return 0
            }
            if ContinuousClock.now >= deadline {
                Output.warn("still alive after \(fleet.timeout) s: " + alive.map { "\($0.role).\($0.instance)" }.joined(separator: ", "))
                return alive.count
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
    if stillAlive > 0 { throw ExitCode(4) }
}
