import Synchronization

/// The newest policy version the origin broker announced, and the workers' tasks waiting for one. The announcement
/// listener records each announcement, which wakes every waiter it satisfies at once: nothing polls for it.
final class AnnouncedVersion: Sendable {
    private struct State {
        var version = -1
        var waiters: [Int: (minimum: Int, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    /// The newest version announced so far (-1 before the first).
    var current: Int { state.withLock { $0.version } }

    /// Records an announced version (an older one changes nothing) and wakes the waiters it satisfies.
    func announce(_ version: Int) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard version > state.version else { return [] }
            state.version = version
            let ready = state.waiters.filter { $0.value.minimum <= version }
            for id in ready.keys { state.waiters.removeValue(forKey: id) }
            return ready.map(\.value.continuation)
        }
        woken.forEach { $0.resume() }
    }

    /// Returns once a version of at least `minimum` is announced, at `deadline`, or when the task is cancelled,
    /// whichever comes first; true when such a version has been announced.
    func wait(atLeast minimum: Int, until deadline: ContinuousClock.Instant) async -> Bool {
        if current >= minimum { return true }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.announcement(atLeast: minimum) }
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            await group.next()
            group.cancelAll()
        }
        return current >= minimum
    }

    /// Suspends until a version of at least `minimum` is announced; cancellation ends it early.
    private func announcement(atLeast minimum: Int) async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.version >= minimum || Task.isCancelled { return true }
                    state.waiters[id] = (minimum, continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
        }
    }
}
