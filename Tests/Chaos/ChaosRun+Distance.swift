import Foundation
import Runtime
import Store
import TestSupport
import Wire

/// What a run across distance measured (issue 14): throughput per worker, checkpoint fetches by source, the bytes that
/// crossed the remote host's link, a mid-run join, and the learner's side (steps per minute, wait, staleness).
public struct DistanceFigures: Sendable, Codable {
    public var profile = "loopback"
    /// Groups per minute per rollout worker that ran from the start, from the scored-group log (first to last group).
    public var groupsPerMinutePerWorker = 0.0
    public var workers = 0
    /// Median checkpoint fetch (read and verify) by source, from the workers' loads log; nil when none came from it.
    public var fetchRelayMs: Double?
    public var fetchOriginMs: Double?
    public var loadsFromRelay = 0
    public var loadsFromOrigin = 0
    /// Medians: from the learner's save of a version to its announcement, and a group's task's wait for a fresh enough
    /// policy on its worker (the group's `fetch_ms`).
    public var announceMs: Double?
    public var taskPolicyWaitMs: Double?
    /// Versions the broadcaster announced during the run, and their raw size.
    public var versionsBroadcast = 0
    public var checkpointRawBytes = 0
    /// The link's bytes to the remote host, per announced version: replication to the relay, and the workers' reads of
    /// the origin Redis (state, heartbeats, fallbacks); nil on loopback.
    public var relayBytesPerCheckpoint: Double?
    public var originReadBytesPerCheckpoint: Double?
    public var linkBytes: LinkBytes?
    /// A worker started mid-run on the remote host: from its launch to its first scored group, with its first
    /// checkpoint fetch and its generation (as the group reports it) for comparison.
    public var joinToFirstGroupSeconds: Double?
    public var joinFetchMs: Double?
    public var joinGenerateMs: Double?
    /// When the joining worker's first policy was loaded (seconds after its launch), and how long its first group's task
    /// waited for a fresh enough policy (the group's `fetch_ms`).
    public var joinLoadedSeconds: Double?
    public var joinTaskWaitMs: Double?
    /// The learner: steps per minute and wait fraction over steps 2..N (step 1 holds the pipeline's fill).
    public var stepsPerMinute = 0.0
    public var waitFraction = 0.0
    /// Groups trained, by staleness (the step's policy version minus the group's).
    public var staleness: [Int: Int] = [:]

    public init() {}

    /// Bytes over the link per checkpoint, both kinds together.
    public var bytesPerCheckpointOverLink: Double? {
        guard let relay = relayBytesPerCheckpoint, let origin = originReadBytesPerCheckpoint else { return nil }
        return relay + origin
    }
}

extension ChaosRun {
    /// The worker that joins mid-run.
    static let joiner = "rollout-join"

    /// A rollout worker's launch: on the remote host (through its link, checkpoints from its relay) when the recipe has one.
    func launchRollout(_ instance: String, fromOrigin: Bool = false) throws {
        if let lab = recipe.remote {
            try fleet.launch(role: "rollout", instance: instance, arguments: arguments(instance) + lab.rolloutArguments(relay: !fromOrigin), wrapper: lab.wrapper)
        } else {
            try fleet.launch(role: "rollout", instance: instance, arguments: arguments(instance))
        }
    }

    /// At the recipe's join step, starts one more rollout worker where the others run and waits for its first group.
    func joinWorker(at step: Int) async throws {
        try await awaitStep(step)
        let launched = WallClock.nowMs()
        ChaosHarness.progress("\(names.run): a rollout worker joins at step \(await self.step())")
        try launchRollout(Self.joiner, fromOrigin: recipe.joinFromOrigin)
        try await waitUntil("the joining worker's first group", within: recipe.stallSeconds) {
            await self.firstGroup(of: Self.joiner, after: launched) != nil
        }
        guard let first = await firstGroup(of: Self.joiner, after: launched) else { return }
        var figures = report.distance ?? DistanceFigures()
        figures.joinToFirstGroupSeconds = Double(first.ms - launched) / 1000
        figures.joinGenerateMs = first.generateMs
        let loads = (try? await redis.xrange(names.loadsLogKey, from: String(launched))) ?? []
        let firstLoad = loads.first { text($0, "worker") == Self.joiner }
        figures.joinFetchMs = firstLoad.flatMap { Double(text($0, "fetch_ms")) }
        figures.joinLoadedSeconds = firstLoad.flatMap { Int64(text($0, "loaded_ms")) }.map { Double($0 - launched) / 1000 }
        figures.joinTaskWaitMs = first.fetchMs
        report.distance = figures
        func ms(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "?" }
        ChaosHarness.progress("\(names.run): the joining worker's first group came \(String(format: "%.1f", figures.joinToFirstGroupSeconds ?? 0)) s after its launch "
                              + "(checkpoint fetch \(ms(figures.joinFetchMs)), its first policy loaded at \(String(format: "%.1f s", figures.joinLoadedSeconds ?? -1)); "
                              + "the group's task waited \(ms(figures.joinTaskWaitMs)) for a policy, generation \(ms(figures.joinGenerateMs)))")
    }

    /// The first scored group of `worker` logged after `ms`: when, and the generation time the group reports.
    func firstGroup(of worker: String, after ms: Int64) async -> (ms: Int64, generateMs: Double?, fetchMs: Double?)? {
        guard let entries = try? await redis.xrange(names.scoredLogKey, from: String(ms)) else { return nil }
        guard let entry = entries.first(where: { text($0, "worker") == worker }) else { return nil }
        return (Self.entryMs(entry), Double(text(entry, "generate_ms")), Double(text(entry, "fetch_ms")))
    }

    func text(_ entry: RedisStreamEntry, _ field: String) -> String {
        entry.fields[field].map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    static func entryMs(_ entry: RedisStreamEntry) -> Int64 { Int64(entry.id.split(separator: "-").first ?? "") ?? 0 }

    /// The run's distance figures, from its streams (before its keys are deleted) and the lab's byte counts.
    func distanceFigures() async -> DistanceFigures {
        var figures = report.distance ?? DistanceFigures()
        figures.profile = recipe.remote?.profile.name ?? "loopback"
        let scored = (try? await redis.xrange(names.scoredLogKey)) ?? []
        let starters = (0..<recipe.rollouts).map { "rollout-\($0)" }
        var rates: [Double] = []
        for worker in starters {
            let times = scored.filter { text($0, "worker") == worker }.map(Self.entryMs)
            guard let first = times.first, let last = times.last, times.count > 1, last > first else { continue }
            rates.append(Double(times.count - 1) / (Double(last - first) / 60_000))
        }
        figures.workers = rates.count
        figures.groupsPerMinutePerWorker = rates.isEmpty ? 0 : rates.reduce(0, +) / Double(rates.count)
        let loads = (try? await redis.xrange(names.loadsLogKey)) ?? []
        func fetches(_ source: String) -> [Double] { loads.filter { text($0, "source") == source }.compactMap { Double(text($0, "fetch_ms")) } }
        let (relay, origin) = (fetches("relay"), fetches("origin"))
        (figures.loadsFromRelay, figures.loadsFromOrigin) = (relay.count, origin.count)
        figures.fetchRelayMs = Self.median(relay)
        figures.fetchOriginMs = Self.median(origin)
        // where a version's way to the workers goes: from the learner's save to the announcement (the broadcaster's
        // writes and its wait for the relays), and then a task's wait for a fresh enough policy on the worker
        figures.taskPolicyWaitMs = Self.median(scored.filter { starters.contains(text($0, "worker")) }.compactMap { Double(text($0, "fetch_ms")) })
        let broadcasts = (try? await redis.xrange(names.broadcastLogKey)) ?? []
        figures.announceMs = Self.median(broadcasts.compactMap { entry in
            guard let saved = Double(text(entry, "saved_ms")), let announced = Double(text(entry, "announced_ms")) else { return nil }
            return announced - saved
        })
        figures.versionsBroadcast = broadcasts.count
        figures.checkpointRawBytes = broadcasts.last.flatMap { Int(text($0, "bytes")) } ?? 0
        if let lab = recipe.remote {
            let bytes = lab.bytes()
            figures.linkBytes = bytes
            let versions = Double(max(1, broadcasts.count))
            figures.relayBytesPerCheckpoint = Double(bytes.toRelay) / versions
            figures.originReadBytesPerCheckpoint = Double(bytes.redisToRemote) / versions
        }
        let metrics = ((try? await redis.xrange(names.metricsKey)) ?? []).dropFirst()
        let waits = metrics.compactMap { Double(text($0, "wait_s")) }, steps = metrics.compactMap { Double(text($0, "step_s")) }
        figures.waitFraction = waits.reduce(0, +) / max(steps.reduce(0, +), 1e-9)
        if let first = metrics.first, let last = metrics.last, metrics.count > 1 {
            figures.stepsPerMinute = Double(metrics.count - 1) / (Double(Self.entryMs(last) - Self.entryMs(first)) / 60_000)
        }
        for batch in (try? await redis.xrange(names.batchesLogKey)) ?? [] {
            guard let produced = Int(text(batch, "produced_version")) else { continue }
            for version in text(batch, "versions").split(separator: ",").compactMap({ Int($0) }) {
                figures.staleness[produced - 1 - version, default: 0] += 1
            }
        }
        return figures
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
