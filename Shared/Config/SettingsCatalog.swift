import RL

/// Every role's settings in one place, so a key that no role knows is an error wherever it appears (a run file, a
/// flag, a StartRun, autostart), while a key of another role in a shared run file is passed over.
public enum SettingsCatalog {
    /// The run a rollout worker, scorer or broadcaster serves (the learner's is RunConfig's).
    static let servedRun = Setting("run.id", "default", "run to serve")

    /// Roles that run candidate programs (reward scorer, learner's evaluation) take the sandbox's policy from it.
    static let sandboxWeakIsolation = Setting(SandboxPolicy.allowWeakIsolationKey, "false",
                                              "run candidate programs without namespaces (network not isolated, /proc and /tmp shared) when the machine gives none; false: code tasks are refused there")

    public static let rollout = [
        servedRun,
        Setting("rollout.version_wait_seconds", "120", "how long to wait for a fresh enough policy before handing a task back", range: .reals(0...86_400)),
        Setting("rollout.max_group_size", "256", "largest G accepted from a task", range: .integers(1...4096)),
        Setting("rollout.tasks_in_flight", "0", "tasks held and served at once (one generates at a time; the others publish, wait for confirms and deliveries); 0: from 4, grown to what the generation and the broker's round trip need, up to 64",
                range: .integers(0...64)),
        Setting("rollout.checkpoint_redis_url", "", "Redis to read checkpoints from: the nearest relay (a replica); empty: redis.url"),
        Setting("rollout.state_dir", "", "folder of the worker's Ed25519 key (worker.key, made on first start), which signs every group; empty: $XDG_STATE_HOME/tributary or ~/.local/state/tributary"),
        Setting("rollout.origin_fallback", "true", "with a relay: read a checkpoint from redis.url (the origin) when the relay's copy does not verify, its latest goes back, or it lags behind the announced version"),
        Setting("rollout.relay_lag_seconds", "5", "how long the relay may stay behind the version the origin broker announced before the origin is read",
                range: .reals(0...3600)),
        Setting("rollout.checkpoint_public_key", "", "the broadcaster's Ed25519 public key (hex, `tributary checkpoint keygen`): unsigned or badly signed manifests are refused; empty: signatures are not checked"),
    ]

    public static let reward = [
        servedRun,
        Setting("reward.prefetch", "4", "rollout groups held at once", range: .integers(1...1024)),
        sandboxWeakIsolation,
    ]

    public static let learner = RunConfig.settings + [
        Setting("learner.autostart", "false", "start the run from this process's settings (e.g. --config run.toml) without `tributary run start`"),
        Setting("learner.prefetch", "0", "scored groups held at once (0: groups_per_step * (async_level + 2))",
                range: .integers(0...100_000)),
        Setting("learner.task_deadline_seconds", "120", "a task not filled in this time (lost with a worker, dead-lettered, purged) is reissued with a new seed; doubled on each reissue of the same task",
                range: .integers(1...86_400)),
        Setting("learner.ledger_keep_steps", "1000", "closed tasks stay in the ledger this many steps (a late copy is then refused as unknown instead of late)",
                range: .integers(1...1_000_000)),
        Setting("learner.max_nonfinite_steps", "3", "a step whose loss, gradient or weights are NaN or infinite is skipped (never saved); the run fails after this many in a row",
                range: .integers(1...1000)),
        Setting("learner.lease_seconds", "10", "the learner's lease on its run: a standby learner takes over this long after the holder stops renewing it",
                range: .integers(2...600)),
        sandboxWeakIsolation,
    ]

    public static let broadcaster = [
        servedRun,
        Setting("broadcaster.shard_bytes", "1048576", "raw bytes per shard", range: .integers(4096...(256 << 20))),
        Setting("broadcaster.replicas", "0", "Redis replicas (regional relays) that must hold a checkpoint before it is announced",
                range: .integers(0...64)),
        Setting("broadcaster.replica_timeout_ms", "5000", "how long to wait for the relays", range: .integers(0...600_000)),
        Setting("broadcaster.keep_versions", "4", "versions kept besides the newest (at least the run's async level + 1)",
                range: .integers(1...1000)),
        Setting("broadcaster.signing_key_file", "", "Ed25519 secret key file (`tributary checkpoint keygen`) that signs every manifest; it never enters Redis. Empty: unsigned"),
    ]

    public static let validator = [
        servedRun,
        Setting("validator.prefetch", "4", "scored groups held at once", range: .integers(1...1024)),
        Setting("validator.loaded_versions", "3", "policy versions held in memory (groups claim any of the last async_level + 1)", range: .integers(1...64)),
        Setting("validator.checkpoint_public_key", "", "the broadcaster's Ed25519 public key (hex): unsigned or badly signed manifests are refused; empty: signatures are not checked"),
    ]

    /// Settings every service process takes (connections, identity, logging), defined with their defaults by Runtime's
    /// `Fabric.settings`; their keys are here so a run file or StartRun that sets them is not refused (a test keeps the two equal).
    public static let processKeys: Set<String> = ["amqp.url", "redis.url", "checkpoints.redis_url", "service.instance", "service.connect_timeout", "service.max_message_failures", "metrics.port",
                                                   "queue.type", "blas.threads", "log.level"]

    /// Every setting some role or the run defines (the process settings are Runtime's `Fabric.settings`).
    static let roleSpecs: [String: Setting] = Dictionary((rollout + reward + learner + broadcaster + validator).map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })

    /// Every key some role or the run knows.
    public static let allKeys: Set<String> = Set((rollout + reward + learner + broadcaster + validator).map(\.key)).union(processKeys)

    /// Refuses a key that neither this process nor any role knows, naming it and the nearest known key.
    public static func checkKnown(_ keys: some Sequence<String>, source: String, specs: [Setting]) throws {
        let known = allKeys.union(specs.map(\.key))
        for key in keys.sorted() where !known.contains(key) {
            throw SettingsError(problem: "\(source): unknown setting '\(key)'\(suggestion(for: key, among: Array(known)))")
        }
    }

    /// Refuses a value outside its setting's range, for this process's keys and every role's: a run file or StartRun
    /// carries every role's sections, and a bad value in any of them is refused where the file is first read.
    public static func checkRanges(_ values: [String: String], source: String, specs: [Setting]) throws {
        let own = Dictionary(specs.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        for (key, text) in values.sorted(by: { $0.key < $1.key }) {
            try (own[key] ?? roleSpecs[key])?.check(text, origin: source)
        }
    }

    /// ", did you mean 'x'?" for the nearest key within a few edits, else "".
    public static func suggestion(for key: String, among candidates: [String], flag: Bool = false) -> String {
        let scored = candidates.map { ($0, editDistance(key, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        guard let (best, distance) = scored, distance <= max(2, key.count / 3) else { return "" }
        return flag ? "; did you mean --\(best)?" : "; did you mean '\(best)'?"
    }

    /// Levenshtein distance over characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(1, a.count) where !a.isEmpty {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...max(1, b.count) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return a.isEmpty ? b.count : (b.isEmpty ? a.count : previous[b.count])
    }
}
