import Foundation
import Store

/// One learner step as written to `tributary:RUN:metrics`.
public struct MetricsPoint: Sendable, Equatable {
    public var step: Int
    public var version: Int
    public var values: [String: Double]
    /// Groups used by age in versions (the `staleness` JSON object).
    public var staleness: [Int: Int]

    public static let numericFields = ["reward_mean", "accuracy", "loss", "clip_low", "clip_high", "clip_delta", "entropy", "kl",
                                       "wait_s", "step_s", "tokens_per_s", "groups", "stale_dropped", "zero_signal"]

    public init(step: Int, version: Int, values: [String: Double], staleness: [Int: Int] = [:]) {
        self.step = step
        self.version = version
        self.values = values
        self.staleness = staleness
    }

    /// Reads a stream entry; nil when it is not a step entry (no integer `step`).
    public init?(fields: [String: String]) {
        guard let step = fields["step"].flatMap({ Int($0) }) else { return nil }
        self.step = step
        version = fields["version"].flatMap { Int($0) } ?? step
        values = [:]
        for name in Self.numericFields {
            if let value = fields[name].flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) { values[name] = value }
        }
        staleness = [:]
        if let json = fields["staleness"], let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] {
            for (age, count) in object {
                if let age = Int(age), let count = (count as? NSNumber)?.intValue { staleness[age] = count }
            }
        }
    }

    public init?(entry: RedisStreamEntry) {
        self.init(fields: entry.fields.mapValues { String(decoding: $0, as: UTF8.self) })
    }

    public subscript(name: String) -> Double? { values[name] }
    public var rewardMean: Double? { values["reward_mean"] }
    public var accuracy: Double? { values["accuracy"] }
}

/// The whole metrics stream of a run, oldest first.
public enum RunMetrics {
    public static func read(_ redis: RedisClient, names: Names, count: Int? = nil) async throws -> [MetricsPoint] {
        let entries: [RedisStreamEntry]
        if let count {
            entries = try await redis.xrevrange(names.metricsKey, count: count).reversed()
        } else {
            entries = try await redis.xrange(names.metricsKey)
        }
        return entries.compactMap { MetricsPoint(entry: $0) }
    }
}
