import ArgumentParser
import Foundation
import Checkpoints
import Config
import Runtime
import Wire

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show a run: status, step, version, reward, the fleet from heartbeats, queue depths and counters.")

    @OptionGroup var options: ControlOptions
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() async throws {
        try await withSession(options, amqp: true) { session in
            let snapshot = try await RunSnapshot.read(session)
            print(json ? try Output.json(snapshot.json) : snapshot.text)
        }
    }
}
