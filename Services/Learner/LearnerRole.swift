import Config
import Foundation
import Messaging
import Runtime
import ServiceLifecycle
import Store
import Wire

/// Scored groups and control commands in one stream, so a command is seen while the learner waits for a batch.
enum LearnerEvent: Sendable {
    case group(Delivery)
    case control(ControlCommand)
    /// Once a second: task deadlines are checked.
    case tick
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
        let lease = try await acquireLease()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                for await command in control { events.yield(.control(command)) }
            }
            group.addTask { try await keep(lease) }
            group.addTask {
                while (try? await Task.sleep(for: .seconds(1))) != nil { events.yield(.tick) }
            }
            defer { group.cancelAll() }
            let source = LearnerEvents(stream)
            do {
                guard let (settings, resuming) = try await chooseRun(events: source) else { return await lease.release() }
                let learner = try Learner(context: context, lease: lease, settings: settings, events: source)
                let fabric = context.fabric
                // with validators, only what they let through
                let queue = fabric.names.learnerInputQueue(validating: learner.config.validation.enabled)
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
                await lease.release()
            } catch {
                if !(error is CancellationError), Self.brokerWentAway(error) {
                    // Redis or RabbitMQ went away mid-step (a restart, a kill): nothing is wrong with the run. Exit
                    // non-zero without marking it failed; a restarted learner (compose's restart: on-failure) or a
                    // standby resumes it from its last durable step.
                    context.logger.error("learner lost a broker mid-step: \(error); exiting for a restart to resume the run")
                    context.status.set(state: "lost a broker", detail: "\(error)")
                    await lease.release()
                    throw error
                }
                if !(error is CancellationError) {
                    context.logger.error("learner failed: \(error)")
                    context.status.set(state: "failed", detail: "\(error)")
                    // fenced: a learner that lost the lease writes nothing, its successor's state stands
                    let failed = RunState(status: .failed, reason: "\(error)", finishedAtMs: WallClock.nowMs())
                    _ = try? await lease.exec(failed.writeCommand(names: context.fabric.names).map { [$0] } ?? [])
                    await lease.release()  // a restarted learner (compose's restart: on-failure) takes over at once
                }
                throw error
            }
        }
    }

    /// A connection to Redis or RabbitMQ failed (refused, reset, timed out, closed) or Redis is still loading its data
    /// after a restart: the run is fine, this process only lost its footing.
    static func brokerWentAway(_ error: Error) -> Bool {
        switch error {
        case let error as RedisError:
            switch error {
            case .connectionRefused, .connectFailed, .timeout, .io, .closed, .protocolError: true
            case let .server(message, _): message.hasPrefix("LOADING")
            default: false
            }
        case let error as AMQPError:
            switch error {
            case .connectionRefused, .connectionFailed, .connectionClosed, .connectionLost: true
            default: false
            }
        default: false
        }
    }

    /// Waits as a hot standby while another learner holds the run's lease; takes it when it lapses.
    func acquireLease() async throws -> LearnerLease {
        let fabric = context.fabric
        let seconds = try context.settings.int("learner.lease_seconds", in: 2...600)
        let lease = LearnerLease(names: fabric.names, instance: fabric.identity.instance, redis: fabric.redis, ttl: .seconds(seconds))
        var announced = false
        while true {
            if let token = try await lease.tryAcquire() {
                context.logger.notice("holding the learner lease of run \(fabric.names.run) (fencing token \(token))")
                return lease
            }
            if !announced, let holder = try await LearnerLease.holder(names: fabric.names, redis: fabric.redis) {
                context.logger.notice("standby: learner \(holder.instance) holds run \(fabric.names.run) (token \(holder.token)); taking over when its lease lapses")
                context.status.set(state: "standby", detail: "behind \(holder.instance)")
                announced = true
            }
            if context.stop.isStopping { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(min(1000, lease.ttlMs / 4)))
        }
    }

    /// Renews the lease a few times per TTL; a lease lost to another learner ends this process with an error at once,
    /// before anything more is written.
    func keep(_ lease: LearnerLease) async throws {
        while (try? await Task.sleep(for: .milliseconds(max(200, lease.ttlMs / 4)))) != nil {
            if try await !lease.renew() {
                let holder = try? await LearnerLease.holder(names: context.fabric.names, redis: context.fabric.redis)
                let error = LeaseLost(key: lease.key, detail: "learner \(holder?.instance ?? "?") (token \(holder.map { String($0.token) } ?? "?")) holds it now")
                context.logger.critical("\(error)")
                context.status.set(state: "failed", detail: "\(error)")
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
        // autostart starts a run id that has no state; one with state waits for `run start --fresh` or `--resume`
        let hasState = state.status != nil
        if try context.settings.bool("learner.autostart") {
            if !hasState { return (context.settings, false) }
            context.logger.warning("run \(names.run) already has state (\(state.status.map { "\($0)" } ?? "?"), step \(state.step ?? 0)): not starting it again by autostart; `tributary run start --fresh` starts its next epoch, `--resume` resumes it")
        }
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
                let current = try await RunState.read(fabric.redis, names: names)
                if start.resume {
                    guard let toml = current.config, try await fabric.redis.exists(names.learnerStateKey) else {
                        context.logger.error("StartRun \(command.messageID) refused: --resume, but run \(names.run) has no saved learner state")
                        continue
                    }
                    return (try Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"), true)
                }
                guard start.fresh || current.status == nil else {
                    context.logger.error("StartRun \(command.messageID) refused: run \(names.run) already has state (\(current.status.map { "\($0)" } ?? "?"), step \(current.step ?? 0)); send it with --fresh (a new epoch) or --resume")
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
