import Foundation
import Synchronization

/// How many tasks a worker holds at once when `rollout.tasks_in_flight` is 0 (auto): enough that its model does not wait
/// on the link. One task generates at a time; after its generation a task's slot stays busy for about two round trips
/// to the broker (the group's publish until its confirm, then the task's ack until the next delivery), so
/// `1.5 * (generation + 2 * confirm) / generation` tasks keep the model busy. It starts at `initial`, grows to that
/// once it has seen `warmup` groups (and again if the means rise), up to `maximum`, and never shrinks: a worker's link
/// does not get shorter. A model that takes seconds per group stays at `initial`; a small one behind a long link
/// holds many.
final class TasksInFlight: Sendable {
    let initial: Int
    let maximum: Int
    private struct State {
        var generateMs = 0.0
        var confirmMs = 0.0
        var samples = 0
        var wanted: Int
    }
    private let state: Mutex<State>
    /// Groups published before the first decision, and the weight of each new one in the running means.
    static let warmup = 8
    static let weight = 0.125

    init(initial: Int = 4, maximum: Int = 64) {
        self.initial = initial
        self.maximum = maximum
        state = Mutex(State(wanted: initial))
    }

    /// One published group: its generation and its publish's wait for the confirm. Returns the new number when it grew.
    func record(generateMs: Double, confirmMs: Double) -> Int? {
        state.withLock { state in
            let weight = state.samples == 0 ? 1 : Self.weight
            state.generateMs += weight * (generateMs - state.generateMs)
            state.confirmMs += weight * (confirmMs - state.confirmMs)
            state.samples += 1
            guard state.samples >= Self.warmup else { return nil }
            let slots = Self.slots(generateMs: state.generateMs, confirmMs: state.confirmMs, maximum: maximum)
            guard slots > state.wanted else { return nil }
            state.wanted = slots
            return slots
        }
    }

    /// The tasks to hold now.
    var wanted: Int { state.withLock { $0.wanted } }

    /// The means it decided on (for the log).
    var means: (generateMs: Double, confirmMs: Double) { state.withLock { ($0.generateMs, $0.confirmMs) } }

    static func slots(generateMs: Double, confirmMs: Double, maximum: Int) -> Int {
        let generation = max(generateMs, 0.5)
        let slots = 1.5 * (generation + 2 * max(confirmMs, 0)) / generation
        return Int(min(Double(maximum), slots.rounded(.up)))
    }
}
