import Config
import RL
import Synchronization

/// The run's config and environment, built from the run file the learner stored in Redis (rebuilt when it changes).
public final class RunCache: Sendable {
    public struct Run: Sendable {
        public var config: RunConfig
        public var environment: any Environment
        /// The run's epoch (Envelope.epoch): groups of tasks of an older one feed nothing.
        public var epoch: UInt64
    }

    private let cached = Mutex<(toml: String, run: Run)?>(nil)

    public init() {}

    public func current(fabric: Fabric) async throws -> Run? {
        let replies = try await fabric.redis.command(["HMGET", fabric.names.stateKey, "config", "epoch"]).array ?? []
        guard let stored = replies.first?.bytes else { return nil }
        // a run state without one (written by no learner of this version) checks no epoch
        let epoch = replies.dropFirst().first?.string.flatMap { UInt64($0) } ?? 0
        let toml = String(decoding: stored, as: UTF8.self)
        if let hit = cached.withLock({ $0 }), hit.toml == toml, hit.run.epoch == epoch { return hit.run }
        let config = try RunConfig(try Settings.fromTOML(toml, specs: RunConfig.settings, source: "run state"))
        let run = Run(config: config, environment: try EnvironmentFactory.make(config.environment), epoch: epoch)
        cached.withLock { $0 = (toml, run) }
        return run
    }
}
