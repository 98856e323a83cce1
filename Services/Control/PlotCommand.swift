import ArgumentParser
import Foundation
import Checkpoints
import Config
import Runtime

struct PlotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot", abstract: "Write the run's reward and accuracy curves per step to an SVG file.",
        discussion: "Reads the metrics stream (one entry per learner step) and the held-out accuracy before and after from the run state.")

    @OptionGroup var options: ControlOptions
    @Option(help: ArgumentHelp("The image file to write (.svg).", valueName: "file.svg")) var out: String
    @Option(help: "Title (default: the run id and environment).") var title: String?

    func validate() throws {
        guard out.lowercased().hasSuffix(".svg") else { throw ValidationError("--out must name an .svg file (the plot is written as SVG, no other format is built in)") }
    }

    func run() async throws {
        try await withSession(options, amqp: false) { session in
            let points = try await RunMetrics.read(session.redis, names: session.names)
            let state = try await session.state()
            guard !points.isEmpty || state["status"] != nil else {
                throw ControlError("run \(session.names.run) has no metrics and no state in Redis; nothing to plot")
            }
            let config = try? await session.runConfig()?.config
            let heading = title ?? "Tributary run \(session.names.run)" + (config.map { " · \($0.environment.name), async level \($0.asyncLevel)" } ?? "")
            let svg = RunPlot.svg(points: points, title: heading, accuracyBefore: state["accuracy_before"].flatMap(Double.init),
                                  accuracyAfter: state["accuracy_after"].flatMap(Double.init))
            do { try Data(svg.utf8).write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw ControlError("cannot write \(out): \(error.localizedDescription)")
            }
            print("wrote \(out): \(points.count) steps" + (points.isEmpty ? " (no metrics yet)" : ", steps \(points.first!.step)...\(points.last!.step)"))
        }
    }
}
