import Foundation
import Synchronization

/// Named places where a process can be made to die by SIGKILL, for the fault table (`tributary-bench chaos` and the
/// chaos tests): a kill at an exact point (after the learner's save and before its acks; after a checkpoint's shards and
/// before its manifest) that a signal from outside would hit only by luck. Armed only by the environment variable
/// `TRIBUTARY_CRASH_AT` (comma-separated names, each optionally `NAME@N` to die at the N-th time it is reached, 1 by
/// default); unset, `hit` does nothing.
public enum CrashPoint {
    public static let environmentVariable = "TRIBUTARY_CRASH_AT"

    /// The learner saved a step's state and has not acknowledged the groups that fed it.
    public static let learnerAfterSave = "learner.after-save"
    /// The broadcaster wrote a checkpoint's shards and not its manifest.
    public static let broadcasterMidWrite = "broadcaster.mid-write"

    private static let armed: [String: Int] = parse(ProcessInfo.processInfo.environment[environmentVariable] ?? "")
    private static let reached = Mutex<[String: Int]>([:])

    static func parse(_ text: String) -> [String: Int] {
        var points: [String: Int] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "@", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let name = parts.first, !name.isEmpty else { continue }
            points[name] = parts.count > 1 ? max(1, Int(parts[1]) ?? 1) : 1
        }
        return points
    }

    /// Dies here by SIGKILL (no cleanup, no flush: what a power cut or the OOM killer leaves) when this point is armed
    /// and reached for the armed time.
    public static func hit(_ name: String) {
        guard let at = armed[name] else { return }
        let count = reached.withLock { counts in
            counts[name, default: 0] += 1
            return counts[name]!
        }
        guard count == at else { return }
        FileHandle.standardError.write(Data("crash point \(name) reached (\(count)): SIGKILL\n".utf8))
        kill(getpid(), SIGKILL)
    }
}
