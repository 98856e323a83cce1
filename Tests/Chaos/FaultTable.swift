import Foundation

/// One row of issue 13's fault table.
public struct FaultRow: Sendable, Codable {
    public var fault: String
    public var title: String
    public var injectedAtStep: Int?
    public var groupsLost: Int
    public var tasksAppliedTwice: Int
    public var versionsRewritten: Int
    public var trustedProcessRestarts: Int
    public var recoverySeconds: Double?
    public var finished: Bool
    public var accuracyAfter: Double?
    /// accuracy_after minus the fault-free run's, in points.
    public var accuracyDeltaPoints: Double?
    /// Fault-specific checks that failed, and why the run was given up.
    public var notes: [String]
    public var account: TaskAccount

    public init(report: ChaosReport, baseline: ChaosReport?) {
        fault = report.faults.isEmpty ? "0" : report.faults.map(\.number).joined(separator: "+")
        title = report.faults.isEmpty ? "fault-free baseline" : report.faults.map(\.title).joined(separator: "; ")
        injectedAtStep = report.injections.first?.atStep
        groupsLost = report.account.lost
        tasksAppliedTwice = report.account.appliedTwice
        versionsRewritten = report.versionsRewritten
        trustedProcessRestarts = report.trustedProcessRestarts
        let recoveries = report.injections.compactMap(\.recoverySeconds)
        recoverySeconds = recoveries.count == report.injections.count ? recoveries.max() : nil
        finished = report.finished
        accuracyAfter = report.accuracyAfter
        if let after = report.accuracyAfter, let reference = baseline?.accuracyAfter, baseline?.run != report.run {
            accuracyDeltaPoints = 100 * (after - reference)
        }
        notes = report.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }
        if let problem = report.problem { notes.append(problem) }
        if !report.account.unloggedSteps.isEmpty { notes.append("steps missing from the batch log: \(report.account.unloggedSteps)") }
        if !report.rewrittenVersions.isEmpty { notes.append("versions rewritten: \(report.rewrittenVersions)") }
        if !report.account.lostExamples.isEmpty { notes.append("lost e.g. \(report.account.lostExamples.prefix(3).joined(separator: ", "))") }
        account = report.account
    }

    /// Lost, twice and rewritten zero, finished, checks passed and accuracy within 5 points of the fault-free run.
    public var meetsTargets: Bool {
        groupsLost == 0 && tasksAppliedTwice == 0 && versionsRewritten == 0 && finished && notes.isEmpty && abs(accuracyDeltaPoints ?? 0) <= 5
    }
}

public enum FaultTable {
    /// A Markdown table, for the terminal and docs/benchmarks.md alike.
    public static func markdown(_ rows: [FaultRow]) -> String {
        func number(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "—" }
        var lines = ["| # | fault | at step | groups_lost | tasks_applied_twice | versions_rewritten | trusted_process_restarts | recovery_seconds | finished | accuracy_after (Δ points) | issued / trained / replaced / dead-lettered / in flight |",
                     "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in rows {
            let accuracy = row.accuracyAfter.map { String(format: "%.1f %%", 100 * $0) + (row.accuracyDeltaPoints.map { String(format: " (%+.1f)", $0) } ?? "") } ?? "—"
            let account = row.account
            lines.append("| \(row.fault) | \(row.title) | \(row.injectedAtStep.map(String.init) ?? "—") | \(row.groupsLost) | \(row.tasksAppliedTwice) | "
                         + "\(row.versionsRewritten) | \(row.trustedProcessRestarts) | \(number(row.recoverySeconds, "%.1f")) | \(row.finished ? "yes" : "**no**") | "
                         + "\(accuracy) | \(account.issued) / \(account.trained) / \(account.replaced) / \(account.deadLettered) / \(account.inFlight) |")
        }
        let notes = rows.filter { !$0.notes.isEmpty }.map { "- \($0.fault): " + $0.notes.joined(separator: "; ") }
        return (lines + (notes.isEmpty ? [] : [""] + notes)).joined(separator: "\n")
    }

    /// One JSON object: the seed and the rows.
    public static func json(_ rows: [FaultRow], seed: UInt64) throws -> String {
        struct Document: Encodable {
            var seed: UInt64
            var rows: [FaultRow]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(Document(seed: seed, rows: rows)), as: UTF8.self)
    }
}
