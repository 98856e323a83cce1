import Foundation
@testable import Rollout
import Synchronization
import Testing

/// How many tasks a worker holds (`rollout.tasks_in_flight` 0), and the records its publishes wait for.
@Suite("Rollout tasks in flight and records")
struct RolloutInFlightTests {
    /// Feeds `TasksInFlight` `groups` published groups of the same timings; returns what it holds then.
    func feed(_ tasks: TasksInFlight, groups: Int, generateMs: Double, confirmMs: Double) -> Int {
        for _ in 0..<groups { _ = tasks.record(generateMs: generateMs, confirmMs: confirmMs) }
        return tasks.wanted
    }

    @Test func aSmallModelBehindALongLinkHoldsEnoughToCoverTheRoundTrips() {
        // 20 ms a group, a publish confirmed in 150 ms: 1.5 * (20 + 300) / 20 = 24
        let tasks = TasksInFlight()
        #expect(feed(tasks, groups: TasksInFlight.warmup - 1, generateMs: 20, confirmMs: 150) == 4, "nothing decided before the warm-up")
        #expect(feed(tasks, groups: 1, generateMs: 20, confirmMs: 150) == 24)
        // 2 ms a group: far past the maximum
        #expect(feed(TasksInFlight(), groups: 20, generateMs: 2, confirmMs: 150) == 64)
    }

    @Test func aModelThatTakesLongerThanTheRoundTripsStaysWhereItStarted() {
        #expect(feed(TasksInFlight(), groups: 50, generateMs: 2000, confirmMs: 150) == 4, "a 2 s generation behind 150 ms")
        #expect(feed(TasksInFlight(), groups: 50, generateMs: 5, confirmMs: 1) == 4, "loopback: 1.5 * 7 / 5 rounds up to 3")
    }

    @Test func itGrowsWhenTheLinkSlowsAndNeverShrinks() {
        let tasks = TasksInFlight()
        #expect(feed(tasks, groups: 20, generateMs: 10, confirmMs: 50) == 17)  // 1.5 * 110 / 10 = 16.5
        #expect(feed(tasks, groups: 100, generateMs: 10, confirmMs: 150) == 47)  // the running mean reaches 150 ms: 46.5
        #expect(feed(tasks, groups: 100, generateMs: 10, confirmMs: 1) == 47, "a faster link later keeps what it holds")
    }

    @Test func aPublishWaitsForItsRecordsAndAFailedRecordIsWrittenAgain() async throws {
        let records = WorkerRecords()
        let attempts = Mutex(0)
        let (gate, open) = AsyncStream<Void>.makeStream()
        records.start(.registration, write: {
            for await _ in gate { break }  // written only once the test lets it
            attempts.withLock { $0 += 1 }
        }, retry: { attempts.withLock { $0 += 1 } })
        let waiter = Task { try await records.written(.registration) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(attempts.withLock { $0 } == 0, "the record is not written yet")
        open.yield()
        try await waiter.value
        #expect(attempts.withLock { $0 } == 1)

        struct Refused: Error {}
        records.start(.load(version: 3), write: { throw Refused() }, retry: { attempts.withLock { $0 += 10 } })
        try await records.written(.load(version: 3))
        #expect(attempts.withLock { $0 } == 11, "the failed write was retried once")
        try await records.written(.load(version: 3))
        #expect(attempts.withLock { $0 } == 11, "a retried record that succeeded is not written again")
        try await records.written(.load(version: 99))  // never loaded here: nothing to wait for
    }
}
