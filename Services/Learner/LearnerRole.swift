import Config
import Foundation
import Messaging
import Runtime
import ServiceLifecycle
import Wire

/// Scored groups and control commands in one stream, so a command is seen while the learner waits for a batch.
enum LearnerEvent: Sendable {
    case group(Delivery)
    case control(ControlCommand)
    /// The scored-queue consumer stopped, with why.
    case consumerEnded(String)
}

/// The learner's events, ending on drain or shutdown (graceful shutdown of the process).
final class LearnerEvents {
    private var iterator: AsyncCancelOnGracefulShutdownSequence<AsyncStream<LearnerEvent>>.AsyncIterator

    init(_ stream: AsyncStream<LearnerEvent>) { iterator = stream.cancelOnGracefulShutdown().makeAsyncIterator() }

    func next() async -> LearnerEvent? { await iterator.next() }
}

/// Picks the run (resume one in progress, start from this process's settings, or wait for StartRun), then trains it.
/// A learner that stops on an error writes `failed` with the reason.
struct LearnerRole: Role {
    let context: ServiceContext

    init(context: ServiceContext) throws { self.context = context }

    func run() async throws {
        let (stream, events) = AsyncStream<LearnerEvent>.makeStream()
        let control = context.control
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                for await command in control { events.yield(.control(command)) }
            }
            defer { group.cancelAll() }
            let source = LearnerEvents(stream)
            do {
                guard let (settings, resuming) = try await chooseRun(events: source) else { return }
                let learner = try Learner(context: context, settings: settings, events: source)
                let fabric = context.fabric
                let queue = fabric.names.scoredQueue
                let prefetch = try learner.prefetch()
                group.addTask {
                    // the learner cannot train without it: its end (not asked for) fails the run instead of a silent stall
                    do {
                        for try await delivery in fabric.amqp.consume(queue: queue, prefetch: prefetch) { events.yield(.group(delivery)) }
                        events.yield(.consumerEnded("the broker ended the consumer of \(queue)"))
                    } catch {
                        events.yield(.consumerEnded("the consumer of \(queue) failed: \(error)"))
                    }
                }
                try await learner.run(resuming: resuming)
            } catch {
                if !(error is CancellationError) {
                    context.logger.error("learner failed: \(error)")
                    try? await RunState(status: .failed, reason: "\(error)", finishedAtMs: WallClock.nowMs()).write(to: context.fabric.redis, names: context.fabric.names)
                    context.status.set(state: "failed", detail: "\(error)")
                }
                throw error
            }
        }
    }

    /// The run's settings, and whether it resumes from saved state; nil when stopped while waiting.
    func chooseRun(events: LearnerEvents) async throws -> (Settings, Bool)? {
        let fabric = context.fabric
        let names = fabric.names
        let state = try await RunState.read(fabric.redis, names: names)
        // a failed run resumes too (compose restarts a failed learner with autostart on: it must not start over)
        if let status = state.status, status.isActive || status == .failed, let toml = state.config,
           try await fabric.redis.exists(names.learnerStateKey) {
            context.logger.notice("resuming run \(names.run) from its saved state\(status == .failed ? " (it had failed: \(state.reason ?? "no reason recorded"))" : "")")
            return (try Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"), true)
        }
        if try context.settings.bool("learner.autostart") { return (context.settings, false) }
        context.status.set(state: "waiting for StartRun", detail: "tributary run start --config run.toml")
        context.logger.info("waiting for `tributary run start` for run \(names.run)")
        while let event = await events.next() {
            guard case let .control(command) = event, case let .startRun(start) = command.command else { continue }
            do {
                let settings = try Settings.fromTOML(start.configToml, specs: RunConfig.settings, source: "StartRun \(command.messageID)")
                let config = try RunConfig(settings)
                guard config.runID == names.run else {
                    context.logger.error("StartRun \(command.messageID) is for run '\(config.runID)', this learner serves '\(names.run)'; ignored")
                    continue
                }
                return (settings, false)
            } catch {
                context.logger.error("StartRun \(command.messageID) refused: \(error)")
            }
        }
        return nil
    }
}
