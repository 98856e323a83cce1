import ServiceLifecycle
import Synchronization

/// How a process is asked to stop. SIGTERM, SIGINT and the `drain` command drain: finish what is in hand, take
/// nothing new, exit 0. The `shutdown` command hands back: what is in hand goes back to its queue (nack with
/// requeue) at once, then exit 0. Either way the ServiceGroup then stops the role's companions (control listener,
/// heartbeat, metrics endpoint) in reverse order.
public final class StopRequest: Sendable {
    public enum Mode: Sendable, Equatable { case running, draining, handingBack }

    private struct State {
        var mode = Mode.running
        var reason: String?
        var handBackWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        var trigger: (@Sendable () async -> Void)?
    }

    private let state = Mutex(State())

    public init() {}

    public var mode: Mode { state.withLock { $0.mode } }
    public var reason: String? { state.withLock { $0.reason } }
    public var isHandingBack: Bool { mode == .handingBack }
    /// Asked to stop in any way: a command, or SIGTERM/SIGINT (which the ServiceGroup turns into a graceful shutdown
    /// of the calling task's service without passing through here).
    public var isStopping: Bool { mode != .running || Task.isShuttingDownGracefully }

    /// What starts the graceful shutdown of the process's group (set by ServiceHost).
    func onStop(_ trigger: @escaping @Sendable () async -> Void) { state.withLock { $0.trigger = trigger } }

    /// Finish what is in hand, take nothing new.
    public func drain(_ reason: String) async {
        let trigger = state.withLock { state -> (@Sendable () async -> Void)? in
            if state.mode == .running { state.mode = .draining; state.reason = reason }
            return state.trigger
        }
        await trigger?()
    }

    /// Hand back what is in hand now, take nothing new.
    public func handBack(_ reason: String) async {
        let (waiters, trigger) = state.withLock { state -> ([CheckedContinuation<Void, Never>], (@Sendable () async -> Void)?) in
            if state.mode != .handingBack { state.mode = .handingBack; state.reason = reason }
            defer { state.handBackWaiters = [:] }
            return (Array(state.handBackWaiters.values), state.trigger)
        }
        waiters.forEach { $0.resume() }
        await trigger?()
    }

    /// Returns when a hand-back is requested; cancellable.
    public func waitForHandBack() async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.mode == .handingBack || Task.isCancelled { return true }
                    state.handBackWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.handBackWaiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Runs `work` for something in hand; if a hand-back comes first, calls `handBack` at once and cancels `work`
    /// (which must not publish once cancelled). Returns false when handed back.
    public func holding(_ work: @escaping @Sendable () async throws -> Void, handBack: @escaping @Sendable () async -> Void) async throws -> Bool {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await work()
                return true
            }
            group.addTask {
                await self.waitForHandBack()
                return false
            }
            let finished: Bool
            do {
                finished = try await group.next() ?? true
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
            if !finished {
                await handBack()
                // the work ends cancelled (CancellationError) or finishes a step it could not stop; either way it is handed back
                while let _ = try? await group.next() {}
            }
            return finished
        }
    }
}
