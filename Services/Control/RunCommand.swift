import ArgumentParser
import Foundation
import Messaging
import Checkpoints
import Config
import Runtime
import Wire

typealias StartRun = Tributary_V1_StartRun
typealias PauseRun = Tributary_V1_PauseRun
typealias ResumeRun = Tributary_V1_ResumeRun
typealias StopRun = Tributary_V1_StopRun
typealias SetParameter = Tributary_V1_SetParameter
typealias DrainCommandMessage = Tributary_V1_Drain
typealias ShutdownCommandMessage = Tributary_V1_Shutdown
typealias BanWorkerMessage = Tributary_V1_BanWorker

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Start, pause, resume or stop a run (commands go to the run's learner).",
        subcommands: [Start.self, Pause.self, Resume.self, Stop.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a run file and send it to the learner as StartRun.",
            discussion: "The run id is the file's [run] id, else --run. A key no role knows is refused with the nearest known one, as are values the learner would refuse; other roles' keys ride along.")

        @OptionGroup var options: ControlOptions
        @Option(help: ArgumentHelp("The run file (TOML).", valueName: "run.toml")) var config: String
        @Flag(help: "The run id has state from before: start its next epoch (its old tasks, groups and policies are dropped; versions go on above the old ones).")
        var fresh = false
        @Flag(help: "The run id has state from before: resume it from the learner's saved state (its stored run file, not --config's).")
        var resume = false
        @OptionGroup var learner: LearnerOptions

        func validate() throws {
            if fresh, resume { throw ValidationError("--fresh and --resume exclude each other: start a new epoch, or resume the old one") }
        }

        func run() async throws {
            let text: String
            do { text = try String(contentsOfFile: config, encoding: .utf8) } catch {
                throw ControlError("cannot read \(config): \(error.localizedDescription)")
            }
            let file: RunFile
            do { file = try RunFile(text: text, source: config, fallbackRunID: options.runID) } catch {
                throw ControlError("\(config) is not a valid run file: \(error)")
            }
            if file.namesRunID, let explicit = options.run, explicit != file.config.runID {
                throw ControlError("\(config) says [run] id = \"\(file.config.runID)\" but --run is \"\(explicit)\"; drop one of them")
            }
            let run = file.config.runID
            try await withSession(options, run: run, amqp: true) { session in
                let state = try await session.state()
                let current = RunState(hash: state)
                if let status = current.status, status.isActive, !learner.force {
                    throw ControlError("run \(run) is already \(status) (step \(state["step"] ?? "?")); stop it first (tributary run stop --run \(run)) or use another run id")
                }
                // a run id with state is never started over by guessing
                if let status = current.status, !fresh, !resume {
                    let epoch = Int(state["epoch"] ?? "") ?? 1
                    throw ControlError("run \(run) already has state (\(status), step \(state["step"] ?? "?"), epoch \(epoch)): pass --resume to resume it from its saved state, or --fresh to start its epoch \(epoch + 1) (the old epoch's tasks, groups and policies are dropped)")
                }
                let start = StartRun.with {
                    $0.configToml = file.startText
                    $0.fresh = fresh
                    $0.resume = resume
                }
                let message = try await sendToLearner(session, .startRun(start), learner)
                let c = file.config
                print("sent StartRun \(message.messageID) for run \(run): \(c.environment.name), \(c.steps) steps of \(c.groupsPerStep) groups x \(c.groupSize), async level \(c.asyncLevel), lr \(c.learningRate), warm start \(c.warmupSteps) steps")
                print("follow it with: tributary watch --run \(run)")
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause the run after the current step (no new tasks, no steps).")
        @OptionGroup var options: ControlOptions
        @OptionGroup var learner: LearnerOptions
        func run() async throws { try await simpleRunCommand(options, learner, .pause(PauseRun()), verb: "pause") }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused run.")
        @OptionGroup var options: ControlOptions
        @OptionGroup var learner: LearnerOptions
        func run() async throws { try await simpleRunCommand(options, learner, .resume(ResumeRun()), verb: "resume") }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the run: the learner evaluates, marks the run stopped and waits for drain or shutdown.")
        @OptionGroup var options: ControlOptions
        @OptionGroup var learner: LearnerOptions
        func run() async throws { try await simpleRunCommand(options, learner, .stop(StopRun()), verb: "stop") }
    }
}

struct SetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Change a live setting of a running run.",
        discussion: "Live settings: \(RunConfig.liveKeys.sorted().joined(separator: ", ")). The value is checked against the run's current configuration before it is sent.")

    @OptionGroup var options: ControlOptions
    @OptionGroup var learner: LearnerOptions
    @Argument(help: ArgumentHelp("A live setting, e.g. trainer.learning_rate.", valueName: "key")) var key: String
    @Argument(help: ArgumentHelp("Its new value.", valueName: "value")) var value: String

    func validate() throws {
        // The range checks need the run's configuration; here only the key and the value's type, against the defaults.
        var base = try Settings.fromTOML("", specs: RunConfig.settings, source: "defaults")
        try base.set("run.id", options.runID, origin: "--run")
        do { try LiveSetting.validate(key: key, value: value, base: base) } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        try await withSession(options, amqp: true) { session in
            var base = try await session.runConfig()?.settings
            if base == nil {
                Output.warn("run \(session.names.run) has no configuration in Redis yet; checked '\(value)' against the defaults only")
                base = try Settings.fromTOML("", specs: RunConfig.settings, source: "defaults")
                try base?.set("run.id", session.names.run, origin: "--run")
            }
            do { try LiveSetting.validate(key: key, value: value, base: base!) } catch { throw ControlError("\(error)") }
            let message = try await sendToLearner(session, .set(SetParameter.with { $0.key = key; $0.value = value }), learner)
            print("sent set \(key) = \(value) to run \(session.names.run) (\(message.messageID)); the learner applies it between steps")
        }
    }
}

/// How run commands reach the learner.
struct LearnerOptions: ParsableArguments {
    @Option(help: "Seconds to wait for a learner of this run to be up (heartbeat, and bound to the control exchange).")
    var waitForLearner: Double = 10
    @Flag(help: "Send even when no learner of this run has a heartbeat (and, for run start, when the run is already in progress).")
    var force = false
}

private func simpleRunCommand(_ options: ControlOptions, _ learner: LearnerOptions, _ command: ControlCommand.OneOf_Command, verb: String) async throws {
    try await withSession(options, amqp: true) { session in
        let state = try await session.state()
        if state["status"] == nil { Output.warn("run \(session.names.run) has no state in Redis (never started?)") }
        let message = try await sendToLearner(session, command, learner)
        print("sent \(verb) to run \(session.names.run) (\(message.messageID))")
    }
}

/// Run commands go to `learner.run.RUN`, which only this run's learner binds: first wait for its heartbeat, then publish;
/// an unroutable publish means its learner is not listening (yet).
func sendToLearner(_ session: ControlSession, _ command: ControlCommand.OneOf_Command, _ learner: LearnerOptions) async throws -> ControlCommand {
    let run = session.names.run
    let deadline = ContinuousClock.now + .seconds(max(0, learner.waitForLearner))
    var announced = false
    while true {
        let alive = try await session.heartbeats().contains { $0.role == "learner" }
        if alive || learner.force {
            do {
                return try await session.send(command, routingKey: Names.runRoutingKey(role: "learner", run: run))
            } catch AMQPError.publishReturned {
                if ContinuousClock.now >= deadline {
                    throw ControlError("no learner is listening for run \(run); start tributary-learner --run.id \(run)")
                }
            }
        } else if ContinuousClock.now >= deadline {
            throw ControlError("no learner of run \(run) is alive (no heartbeat in the last 10 s); start tributary-learner --run.id \(run), or pass --force to send anyway")
        }
        if !announced {
            FileHandle.standardError.write(Data("waiting up to \(learner.waitForLearner) s for a learner of run \(run)...\n".utf8))
            announced = true
        }
        try await Task.sleep(for: .milliseconds(250))
    }
}
