import Synchronization

/// The worker's own records on the trusted side, written while it already works: its registration, and each version it
/// loads. The scorer refuses a group from an unregistered key or claiming a version its worker has not recorded, so a
/// group is published only once both are written; nothing else waits for them. Over a long round trip this takes a
/// round trip off the path from a start, and from each announcement, to the next generation.
final class WorkerRecords: Sendable {
    enum Entry: Hashable, Sendable {
        case registration
        case load(version: Int)
    }

    private struct Record {
        var write: Task<Void, any Error>
        var retry: @Sendable () async throws -> Void
    }

    private let records = Mutex<[Entry: Record]>([:])
    /// Loads kept: a group claims the version held when it was generated, a few at most behind the newest.
    private static let keptLoads = 64

    /// Starts writing `entry`; `retry` writes it again when a publish finds that `write` failed.
    func start(_ entry: Entry, write: @escaping @Sendable () async throws -> Void, retry: @escaping @Sendable () async throws -> Void) {
        let record = Record(write: Task { try await write() }, retry: retry)
        records.withLock { records in
            records[entry] = record
            let loads = records.keys.compactMap { if case let .load(version) = $0 { version } else { nil } }
            if loads.count > Self.keptLoads, let oldest = loads.min() { records.removeValue(forKey: .load(version: oldest)) }
        }
    }

    /// Returns once `entry` is written. One that failed is written again here; when that fails too the error is thrown
    /// (the task goes back to its queue, and the next try writes it again).
    func written(_ entry: Entry) async throws {
        guard let record = records.withLock({ $0[entry] }) else { return }  // a load recorded long ago
        do {
            try await record.write.value
        } catch {
            let again = Task { try await record.retry() }
            records.withLock { $0[entry] = Record(write: again, retry: record.retry) }
            try await again.value
        }
    }
}
