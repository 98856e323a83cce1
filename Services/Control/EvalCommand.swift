import ArgumentParser
import Foundation
import Model
import RL
import Checkpoints
import Config
import Runtime
import Wire

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Held-out accuracy of a checkpoint version, with greedy decoding.",
        discussion: """
        Loads the version from Redis (every shard verified against its manifest), builds the run's environment from the \
        configuration the learner stored (or --config), and scores greedy completions of held-out tasks: the same tasks \
        (RunConfig.evalSeed) as the learner's accuracy before and after.
        """)

    @OptionGroup var options: ControlOptions
    @Option(help: ArgumentHelp("Checkpoint version, or latest.", valueName: "version")) var version: String = "latest"
    @Option(help: "Held-out tasks (default: the run's run.eval_tasks).") var tasks: Int?
    @Option(help: ArgumentHelp("Run file to take the environment from instead of the run state in Redis.", valueName: "run.toml"))
    var config: String?
    @Option(help: "Print this many examples (prompt, completion, verdict).") var show: Int = 0
    @Option(help: "OpenBLAS threads.") var threads: Int = 1
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        guard version == "latest" || UInt64(version) != nil else { throw ValidationError("--version must be a number or latest") }
        if let tasks, tasks < 1 { throw ValidationError("--tasks must be >= 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be >= 1") }
    }

    func run() async throws {
        BLAS.relaunchWithNativeKernelsIfNeeded()
        BLAS.setThreads(threads)
        try await withSession(options, amqp: false) { session in
            let runConfig: RunConfig
            if let config {
                let text: String
                do { text = try String(contentsOfFile: config, encoding: .utf8) } catch {
                    throw ControlError("cannot read \(config): \(error.localizedDescription)")
                }
                runConfig = try RunFile(text: text, source: config, fallbackRunID: session.names.run).config
            } else {
                guard let stored = try await session.runConfig() else {
                    throw ControlError("run \(session.names.run) has no configuration in Redis; pass --config run.toml")
                }
                runConfig = stored.config
            }
            // The run's own prompt format as the learner published it; a run file given here brings its own.
            let published = config == nil ? try await RunFormatCache().format(names: session.names, redis: session.redis)?.prompt : nil
            let store = CheckpointStore(names: session.names, redis: session.checkpointRedis)
            let chosen: UInt64
            if version == "latest" {
                guard let latest = try await store.latest() else {
                    throw ControlError("run \(session.names.run) has no announced checkpoint (\(session.names.checkpoints.latest) is missing)")
                }
                chosen = latest
            } else {
                chosen = UInt64(version)!
            }
            let checkpoint: (bytes: [UInt8], manifest: CheckpointManifest)
            do { checkpoint = try await store.read(version: chosen) } catch {
                throw ControlError("cannot load version \(chosen) of run \(session.names.run): \(error)")
            }
            let count = tasks ?? runConfig.evalTasks
            let environment = try EnvironmentFactory.make(runConfig.environment)
            let heldOut = environment.tasks(seed: runConfig.evalSeed, range: 0..<count)
            let bytes = checkpoint.bytes
            let maxNewTokens = runConfig.maxNewTokens
            let started = ContinuousClock.now
            let outcomes = try await ComputeQueue(label: "control.eval").run {
                let model = try Policies.fromSafetensors(bytes)
                let format = try published ?? runConfig.promptFormat(tokenizerJSON: try runConfig.tokenizerJSON(for: model), eos: model.eosToken)
                return Evaluation.run(model: model, environment: environment, tasks: heldOut, maxNewTokens: maxNewTokens, format: format)
            }
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let correct = outcomes.filter { $0.reward.isCorrect }.count
            let accuracy = outcomes.isEmpty ? 0 : Double(correct) / Double(outcomes.count)
            if json {
                var object: [String: Any] = ["run": session.names.run, "version": chosen, "tasks": outcomes.count, "correct": correct,
                                             "accuracy": accuracy, "seconds": seconds, "sha256": checkpoint.manifest.sha256,
                                             "environment": runConfig.environment.name, "eval_seed": runConfig.evalSeed]
                if show > 0 {
                    object["examples"] = outcomes.prefix(show).map { ["prompt": $0.task.prompt, "answer": $0.task.answer, "completion": $0.completion,
                                                                      "correct": $0.reward.isCorrect] as [String: Any] }
                }
                print(try Output.json(object))
            } else {
                for outcome in outcomes.prefix(show) {
                    print("\(outcome.reward.isCorrect ? "✓" : "✗") \(outcome.task.prompt.debugDescription) -> \(outcome.completion.debugDescription) (answer \(outcome.task.answer.debugDescription))")
                }
                print(String(format: "run %@ version %llu: held-out accuracy %.1f%% (%d/%d, %@, greedy) in %.1f s",
                             session.names.run, chosen, accuracy * 100, correct, outcomes.count, runConfig.environment.name, seconds))
            }
        }
    }
}
