import ArgumentParser
import Foundation
import Checkpoints
import Config
import Runtime
import Wire

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Follow a run live: status every few seconds with a reward sparkline.",
        discussion: """
        On a terminal the screen is redrawn; otherwise one line is printed per new step or status change. \
        Runs until Ctrl-C, or with --until-finished until the run ends: exit 0 when it finished, 1 when it failed \
        (or its learner stayed lost, with no heartbeat, longer than --lost-after), 3 when it was stopped, 4 on --timeout.
        """)

    @OptionGroup var options: ControlOptions
    @Option(help: "Seconds between refreshes.") var interval: Double = 2
    @Flag(help: "Exit when the run is finished (0), failed (1) or stopped (3).") var untilFinished = false
    @Flag(help: "Ignore an end state already there at the first look (a finished earlier run under the same id): wait for the run to start again.")
    var waitForStart = false
    @Option(help: "Give up after this many seconds (0: never); exit code 4.") var timeout: Double = 0
    @Option(help: "Sparkline width in characters.") var width: Int = 60
    @Option(help: "With --until-finished: exit 1 when the run's learner has had no heartbeat for this many seconds (a crashed or killed learner).")
    var lostAfter: Double = 30

    static let endStates: [String: Int32] = [RunStatus.finished.rawValue: 0, RunStatus.failed.rawValue: 1, RunStatus.stopped.rawValue: 3]

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be > 0") }
        guard width > 0 else { throw ValidationError("--width must be > 0") }
        guard lostAfter >= 0 else { throw ValidationError("--lost-after must be >= 0") }
    }

    func run() async throws {
        let code: Int32 = try await withSession(options, amqp: true) { session in
            let deadline = timeout > 0 ? ContinuousClock.now + .seconds(timeout) : nil
            var ignoring = waitForStart
            var lastLine = ""
            var first = true
            var lostSince: ContinuousClock.Instant?
            while true {
                let snapshot: RunSnapshot
                do {
                    snapshot = try await RunSnapshot.read(session, history: 2000)
                } catch {
                    Output.warn("refresh failed: \(error)")
                    try await Task.sleep(for: .seconds(interval))
                    continue
                }
                let status = snapshot.status ?? ""
                if first, Self.endStates[status] != nil, waitForStart {
                    print("run \(snapshot.run) is \(status) from an earlier start; waiting for it to start again")
                } else if Self.endStates[status] == nil {
                    ignoring = false
                }
                first = false
                if Output.isTerminal {
                    print("\u{1B}[H\u{1B}[2J" + screen(snapshot), terminator: "\n")
                } else {
                    let line = progressLine(snapshot)
                    if line != lastLine { print(line) }
                    lastLine = line
                }
                fflush(nil)  // nil flushes every stream; stdout itself is not concurrency-safe to name
                if untilFinished, !ignoring, let code = Self.endStates[status] {
                    var end = "run \(snapshot.run) \(status)" + (snapshot.state["accuracy_after"].flatMap(Double.init).map { String(format: ": held-out accuracy %.1f%%", $0 * 100) } ?? "")
                    if let reason = snapshot.state["reason"], snapshot.runStatus == .failed { end += ": \(reason)" }
                    print(end)
                    return code
                }
                // the heartbeat's TTL (10 s) has already lapsed once a learner shows as lost
                lostSince = snapshot.runStatus == .lost ? (lostSince ?? ContinuousClock.now) : nil
                if untilFinished, let lostSince, ContinuousClock.now - lostSince >= .seconds(lostAfter) {
                    Output.warn("run \(snapshot.run): its learner has been lost (no heartbeat) for \(Output.seconds(lostAfter)); giving up")
                    return 1
                }
                if let deadline, ContinuousClock.now >= deadline {
                    Output.warn("gave up after \(timeout) s; run \(snapshot.run) is \(status.isEmpty ? "not started" : status)")
                    return 4
                }
                try await Task.sleep(for: .seconds(interval))
            }
        }
        if code != 0 { throw ExitCode(code) }
    }

    func rewardSeries(_ snapshot: RunSnapshot) -> [Double] { snapshot.recent.map(\.rewardMean) }

    func screen(_ snapshot: RunSnapshot) -> String {
        var lines = snapshot.summaryLines()
        let rewards = rewardSeries(snapshot)
        if !rewards.isEmpty {
            let finite = rewards.filter(\.isFinite)
            let range = String(format: "%.2f..%.2f", finite.min() ?? 0, finite.max() ?? 0)
            lines.append("  reward   \(Sparkline.render(rewards, width: width))  \(range) over \(rewards.count) steps")
            let accuracy = snapshot.recent.map(\.accuracy)
            lines.append("  accuracy \(Sparkline.render(accuracy, width: width, range: 0...1))  0..1")
        }
        lines += snapshot.fleetLines() + snapshot.queueLines() + snapshot.counterLines()
        let time = DateFormatter.localizedString(from: Date(), dateStyle: .none, timeStyle: .medium)
        lines.append("\(time) · every \(interval) s · Ctrl-C to quit")
        return lines.joined(separator: "\n")
    }

    /// One line for logs: changes only when the step or the status does.
    func progressLine(_ snapshot: RunSnapshot) -> String {
        guard let status = snapshot.status else { return "run \(snapshot.run): waiting for StartRun" }
        let steps = snapshot.config.map { "/\($0.steps)" } ?? ""
        var line = "run \(snapshot.run) \(status) step \(snapshot.state["step"] ?? "?")\(steps) version \(snapshot.state["version"] ?? "?")"
        if let point = snapshot.latest {
            line += String(format: " reward %.3f acc %.3f wait %.2fs", point.rewardMean, point.accuracy, point.waitSeconds)
            line += " " + Sparkline.render(rewardSeries(snapshot), width: min(width, 40))
        }
        if let before = snapshot.state["accuracy_before"].flatMap(Double.init) { line += String(format: " held-out before %.1f%%", before * 100) }
        line += " fleet \(snapshot.fleet.count)"
        return line
    }
}
