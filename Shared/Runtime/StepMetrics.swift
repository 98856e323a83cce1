import Foundation
import Store

/// One learner step as written to `tributary:RUN:metrics`: the learner writes it, the CLI, the plots and the bench
/// read it. Each field is one stream field (its JSON text: numbers as numbers, `staleness` as an object).
public struct StepMetrics: Sendable, Codable, Equatable {
    public var step: Int
    public var version: Int
    public var rewardMean: Double
    public var accuracy: Double
    public var loss: Double
    public var clipLow: Double
    public var clipHigh: Double
    public var clipDelta: Double
    public var meanRatio: Double
    public var entropy: Double
    public var kl: Double
    public var gradNorm: Double
    public var learningRate: Double
    public var waitSeconds: Double
    public var trainSeconds: Double
    public var stepSeconds: Double
    public var tokensPerSecond: Double
    /// Groups trained on, and those dropped as stale, zero-signal or duplicate while the batch was collected.
    public var groups: Int
    public var staleDropped: Int
    public var zeroSignal: Int
    public var duplicates: Int
    /// Groups trained on by age in versions ("0": on-policy).
    public var staleness: [String: Int]
    public var asyncLevel: Int

    enum CodingKeys: String, CodingKey {
        case step, version, loss, entropy, kl, groups, staleness, accuracy, duplicates
        case rewardMean = "reward_mean", clipLow = "clip_low", clipHigh = "clip_high", clipDelta = "clip_delta", meanRatio = "mean_ratio"
        case gradNorm = "grad_norm", learningRate = "learning_rate", waitSeconds = "wait_s", trainSeconds = "train_s", stepSeconds = "step_s"
        case tokensPerSecond = "tokens_per_s", staleDropped = "stale_dropped", zeroSignal = "zero_signal", asyncLevel = "async_level"
    }

    public init(step: Int, version: Int, rewardMean: Double = 0, accuracy: Double = 0, loss: Double = 0, clipLow: Double = 0, clipHigh: Double = 0,
                clipDelta: Double = 0, meanRatio: Double = 0, entropy: Double = 0, kl: Double = 0, gradNorm: Double = 0, learningRate: Double = 0,
                waitSeconds: Double = 0, trainSeconds: Double = 0, stepSeconds: Double = 0, tokensPerSecond: Double = 0, groups: Int = 0,
                staleDropped: Int = 0, zeroSignal: Int = 0, duplicates: Int = 0, staleness: [String: Int] = [:], asyncLevel: Int = 0) {
        (self.step, self.version, self.rewardMean, self.accuracy, self.loss) = (step, version, rewardMean, accuracy, loss)
        (self.clipLow, self.clipHigh, self.clipDelta, self.meanRatio, self.entropy, self.kl) = (clipLow, clipHigh, clipDelta, meanRatio, entropy, kl)
        (self.gradNorm, self.learningRate, self.waitSeconds, self.trainSeconds, self.stepSeconds) = (gradNorm, learningRate, waitSeconds, trainSeconds, stepSeconds)
        (self.tokensPerSecond, self.groups, self.staleDropped, self.zeroSignal, self.duplicates) = (tokensPerSecond, groups, staleDropped, zeroSignal, duplicates)
        (self.staleness, self.asyncLevel) = (staleness, asyncLevel)
    }

    /// Non-finite numbers (a diverged loss) are written as the words nan, inf and -inf.
    static let nonFinite = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

    /// The stream entry's fields.
    public var streamFields: [String: String] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: Self.nonFinite.positiveInfinity,
                                                                      negativeInfinity: Self.nonFinite.negativeInfinity, nan: Self.nonFinite.nan)
        // a flat struct of numbers and one string-keyed object, non-finite numbers as words: always encodable
        let object = try! JSONSerialization.jsonObject(with: encoder.encode(self)) as! [String: Any]
        return object.mapValues { value in
            if let number = value as? NSNumber { return number.stringValue }
            if let word = value as? String { return word }
            return String(decoding: (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
        }
    }

    /// Reads a stream entry; nil when it is not a whole step entry.
    public init?(fields: [String: String]) {
        var json: [String: Any] = [:]
        for (name, text) in fields {
            if [Self.nonFinite.nan, Self.nonFinite.positiveInfinity, Self.nonFinite.negativeInfinity].contains(text) {
                json[name] = text
                continue
            }
            guard let value = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) else { return nil }
            json[name] = value
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: Self.nonFinite.positiveInfinity,
                                                                        negativeInfinity: Self.nonFinite.negativeInfinity, nan: Self.nonFinite.nan)
        guard let data = try? JSONSerialization.data(withJSONObject: json), let metrics = try? decoder.decode(Self.self, from: data) else { return nil }
        self = metrics
    }

    public init?(entry: RedisStreamEntry) {
        self.init(fields: entry.fields.mapValues { String(decoding: $0, as: UTF8.self) })
    }

    /// Mean age of the groups trained on, in versions.
    public var stalenessMean: Double {
        let used = staleness.values.reduce(0, +)
        guard used > 0 else { return 0 }
        return Double(staleness.reduce(0) { $0 + (Int($1.key) ?? 0) * $1.value }) / Double(used)
    }
}

/// The whole metrics stream of a run, oldest first.
public enum RunMetrics {
    public static func read(_ redis: RedisClient, names: Names, count: Int? = nil) async throws -> [StepMetrics] {
        let entries: [RedisStreamEntry]
        if let count {
            entries = try await redis.xrevrange(names.metricsKey, count: count).reversed()
        } else {
            entries = try await redis.xrange(names.metricsKey)
        }
        return entries.compactMap { StepMetrics(entry: $0) }
    }

    /// Entries the metrics stream keeps (about: trimmed with MAXLEN ~).
    public static let keptEntries = 100_000

    /// The XADD of one step's entry, for the learner's fenced transaction.
    public static func appendCommand(_ metrics: StepMetrics, names: Names) -> [any RedisArgument] {
        ["XADD", names.metricsKey, "MAXLEN", "~", String(keptEntries), "*"]
            + metrics.streamFields.sorted { $0.key < $1.key }.flatMap { [$0.key as any RedisArgument, $0.value] }
    }

    public static func append(_ metrics: StepMetrics, to redis: RedisClient, names: Names) async throws {
        _ = try await redis.xadd(names.metricsKey, fields: metrics.streamFields.mapValues { $0 as any RedisArgument })
    }
}
