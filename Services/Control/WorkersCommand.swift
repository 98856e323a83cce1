import ArgumentParser
import Foundation
import Runtime
import Signing
import Wire

struct WorkersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workers", abstract: "The run's rollout workers, known by their Ed25519 keys: groups accepted, trained and refused (with reasons); bans.",
        subcommands: [List.self, Ban.self, Unban.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every registered, counted or banned worker key of the run.")
        @OptionGroup var options: ControlOptions
        @Flag(help: "Print JSON instead of text.") var json = false

        func run() async throws {
            try await withSession(options, amqp: false) { session in
                let probation = (try? await session.runConfig())??.config.validation.probationFailures ?? 1
                let workers = try await WorkerRegistry(names: session.names, redis: session.redis).summaries(probationFailures: probation)
                if json {
                    print(try Output.json(["run": session.names.run, "workers": workers.map { worker -> [String: Any] in
                        var entry: [String: Any] = ["key": worker.key, "counts": worker.counts,
                                                    "refusals": Dictionary(uniqueKeysWithValues: worker.refusals.map { ($0.reason, $0.count) })]
                        if let registration = worker.registration {
                            entry["instance"] = registration.instance
                            entry["host"] = registration.host
                            entry["registered_at_ms"] = registration.registeredAtMs
                        }
                        if let last = worker.lastRefusal { entry["last_refusal"] = last }
                        if let banned = worker.banned { entry["banned"] = banned }
                        entry["reputation"] = ["passed": worker.counts["validation_passed"] ?? 0, "failed": worker.counts["validation_failed"] ?? 0,
                                               "unchecked": (worker.counts["validation_unsampled"] ?? 0) + (worker.counts["validation_unchecked"] ?? 0),
                                               "probation": worker.onProbation]
                        return entry
                    }]))
                    return
                }
                guard !workers.isEmpty else { return print("run \(session.names.run): no workers registered") }
                print("run \(session.names.run): \(workers.count) worker key\(workers.count == 1 ? "" : "s")")
                for worker in workers {
                    let counts = worker.counts
                    // instance, host and refusal texts come from workers: no control characters reach the terminal
                    let name = worker.registration.map { "\(printable($0.instance)) on \(printable($0.host))" } ?? "(not registered)"
                    print("\(printable(worker.key).prefix(16))  \(name)\(worker.banned.map { "  BANNED: \(printable($0))" } ?? "")")
                    print("    accepted \(counts["accepted"] ?? 0), trained \(counts["trained"] ?? 0), late \(counts["late"] ?? 0), refused \(counts["refused"] ?? 0)"
                          + (worker.refusals.isEmpty ? "" : " (" + worker.refusals.map { "\($0.reason) \($0.count)" }.joined(separator: ", ") + ")"))
                    let checked = ["passed", "failed", "unsampled", "unchecked"].map { counts["validation_\($0)"] ?? 0 }
                    if checked.contains(where: { $0 > 0 }) {
                        print("    validation: passed \(checked[0]), failed \(checked[1]), not sampled \(checked[2]), not checkable \(checked[3])"
                              + (worker.onProbation ? "  ON PROBATION (every group checked)" : ""))
                    }
                    if let last = worker.lastRefusal { print("    last refusal: \(printable(last))") }
                }
            }
        }
    }

    struct Ban: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Refuse every group a worker key signs, from now on (its groups not yet trained on are dropped and their tasks reissued).")
        @OptionGroup var options: ControlOptions
        @OptionGroup var learner: LearnerOptions
        @Argument(help: "The worker's key (hex), or a prefix of at least 8 digits that names one known key.") var key: String
        @Option(help: "Why, shown by workers list.") var reason = ""

        func run() async throws {
            try await sendBan(options, learner, key: key, reason: reason, unban: false)
        }
    }

    struct Unban: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept a banned worker key's groups again.")
        @OptionGroup var options: ControlOptions
        @OptionGroup var learner: LearnerOptions
        @Argument(help: "The worker's key (hex), or a prefix of at least 8 digits that names one known key.") var key: String

        func run() async throws {
            try await sendBan(options, learner, key: key, reason: "", unban: true)
        }
    }
}

/// Text a worker wrote, with control characters (terminal escapes) shown as '?', and at most 200 characters.
func printable(_ text: String) -> String {
    String(text.unicodeScalars.prefix(200).map { $0.properties.generalCategory == .control ? "?" : Character($0) })
}

/// Bans go through the run's learner (the CLI's Redis user writes nothing); the key is resolved against the known ones.
private func sendBan(_ options: ControlOptions, _ learner: LearnerOptions, key: String, reason: String, unban: Bool) async throws {
    try await withSession(options, amqp: true) { session in
        let known = try await WorkerRegistry(names: session.names, redis: session.redis).summaries().map(\.key)
        let wanted = key.lowercased()
        let full: String
        if wanted.count == 64, Hex.decode(wanted) != nil {
            full = wanted
        } else {
            guard wanted.count >= 8 else { throw ValidationError("'\(key)': give the worker's key, or at least 8 hex digits of it") }
            let matches = known.filter { $0.hasPrefix(wanted) }
            guard matches.count == 1 else {
                throw ControlError(matches.isEmpty ? "no worker key of run \(session.names.run) starts with '\(key)' (see tributary workers list)"
                                                   : "'\(key)' names \(matches.count) worker keys; give more digits")
            }
            full = matches[0]
        }
        let ban = BanWorkerMessage.with {
            $0.workerKey = Data(Hex.decode(full) ?? [])
            $0.reason = reason
            $0.unban = unban
        }
        let message = try await sendToLearner(session, .banWorker(ban), learner)
        print("sent \(unban ? "unban" : "ban") of worker \(full) to run \(session.names.run) (\(message.messageID))")
    }
}
