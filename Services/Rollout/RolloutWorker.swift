import Checkpoints
import Config
import Foundation
import Messaging
import Metrics
import Model
import RL
import Runtime
import Signing
import Store
import Synchronization
import Wire

/// Takes a task, makes sure it holds a policy fresh enough for it, generates the group, publishes it.
struct RolloutWorker: Role {
    let context: ServiceContext
    let policy = PolicyHolder()
    let formats = RunFormatCache()
    let meter = RateMeter()
    /// Checkpoints and the run's format come from the nearest Redis (a read-only relay is enough); heartbeats go to redis.url.
    let checkpointRedis: RedisClient
    let store: CheckpointStore
    /// The origin's checkpoints, read when the relay serves something that does not verify or lags behind what the
    /// origin broker announced (nil without a relay, or with rollout.origin_fallback off).
    let originStore: CheckpointStore?
    let relayLag: Duration
    /// The worker's key: it signs every group, and the trusted side knows the worker only by it.
    let identity: WorkerIdentity
    let registry: WorkerRegistry
    let versionWait: Double
    /// Tasks served at once (`rollout.tasks_in_flight`): over a long round trip, one task's publish and confirm and the
    /// next task's delivery overlap another's generation. 0: `adaptive` decides, from the generations and confirms seen.
    let tasksInFlight: Int
    let adaptive: TasksInFlight?
    let heldTasks: Gauge
    let policyLoads = SerialGate()
    let records = WorkerRecords()
    let firsts = Firsts()
    let maxGroup: Int
    let groups: Counter
    let tokens: Counter
    let loads: Counter
    let refusedCheckpoints: Counter
    let originFetches: Counter
    let relayRollbacks: Counter
    let generateTime: Metrics.Timer
    let fetchTime: Metrics.Timer

    init(context: ServiceContext) throws {
        self.context = context
        let relayURL = try context.settings.string("rollout.checkpoint_redis_url")
        checkpointRedis = relayURL.isEmpty ? context.fabric.checkpointRedis : RedisClient(endpoint: try RedisEndpoint(url: relayURL))
        let publicKey = try context.settings.string("rollout.checkpoint_public_key")
        let verifier = publicKey.isEmpty ? nil : try VerifyingKey(hex: publicKey)
        if verifier == nil { context.logger.warning("checkpoint signatures are not checked (no rollout.checkpoint_public_key)") }
        store = CheckpointStore(names: context.fabric.names, redis: checkpointRedis, verifier: verifier)
        let fallback = try context.settings.bool("rollout.origin_fallback")
        originStore = relayURL.isEmpty || !fallback ? nil : CheckpointStore(names: context.fabric.names, redis: context.fabric.checkpointRedis, verifier: verifier)
        relayLag = .milliseconds(Int(1000 * (try context.settings.double("rollout.relay_lag_seconds"))))
        let stateDirectory = try context.settings.string("rollout.state_dir")
        identity = try WorkerIdentity.loadOrCreate(directory: stateDirectory.isEmpty ? WorkerIdentity.defaultDirectory() : stateDirectory)
        registry = WorkerRegistry(names: context.fabric.names, redis: context.fabric.redis)
        versionWait = try context.settings.double("rollout.version_wait_seconds")
        let fixed = try context.settings.int("rollout.tasks_in_flight")
        adaptive = fixed == 0 ? TasksInFlight() : nil
        tasksInFlight = adaptive?.initial ?? fixed
        heldTasks = Gauge(label: "tributary_rollout_tasks_in_flight", dimensions: context.dimensions)
        maxGroup = try context.settings.int("rollout.max_group_size")
        groups = Counter(label: "tributary_rollout_groups_total", dimensions: context.dimensions)
        tokens = Counter(label: "tributary_generated_tokens_total", dimensions: context.dimensions)
        loads = Counter(label: "tributary_checkpoints_loaded_total", dimensions: context.dimensions)
        refusedCheckpoints = Counter(label: "tributary_checkpoints_refused_total", dimensions: context.dimensions)
        originFetches = Counter(label: "tributary_checkpoint_origin_fallbacks_total", dimensions: context.dimensions)
        relayRollbacks = Counter(label: "tributary_relay_rollbacks_total", dimensions: context.dimensions)
        generateTime = Metrics.Timer(label: "tributary_generate_seconds", dimensions: context.dimensions, preferredDisplayUnit: .seconds)
        fetchTime = Metrics.Timer(label: "tributary_checkpoint_fetch_seconds", dimensions: context.dimensions, preferredDisplayUnit: .seconds)
    }

    func run() async throws {
        if checkpointRedis !== context.fabric.checkpointRedis {
            // A relay that does not answer yet is not fatal: its connection is opened again on each use, and until then
            // checkpoints come from the origin (or, without the fallback, the worker waits for the relay per task).
            do {
                try await checkpointRedis.connect()
                context.logger.info("reading checkpoints from \(checkpointRedis.endpoint)")
            } catch {
                let meanwhile = originStore == nil ? "tasks wait for it" : "reading the origin until it does"
                context.logger.warning("the relay \(checkpointRedis.endpoint) does not answer yet (\(error)): \(meanwhile)")
            }
        }
        defer { if checkpointRedis !== context.fabric.checkpointRedis { checkpointRedis.close() } }
        // permissionless: a worker joins by registering its key (groups signed by an unregistered key are refused); the
        // registration is written while the worker starts, and its first publish waits for it
        let (registry, key, instance) = (self.registry, identity.publicKey, context.fabric.identity.instance)
        records.start(.registration, write: { try await registry.register(key, instance: instance) },
                      retry: { try await registry.register(key, instance: instance) })
        context.logger.info("worker key \(identity.publicKey.hex) (\(identity.file))")
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await watchAnnouncements() }
            // the newest policy now, while the consumers start, rather than with the first task
            group.addTask { try await warmUp() }
            context.status.set(state: "waiting for tasks")
            heldTasks.record(Double(tasksInFlight))
            var growTo: (@Sendable () -> Int)?
            if let adaptive { growTo = { adaptive.wanted } }
            try await context.consume(queue: context.fabric.names.tasksQueue, prefetch: tasksInFlight, concurrency: tasksInFlight,
                                      growTo: growTo) { delivery in
                try await serve(delivery)
            }
            group.cancelAll()
        }
    }

    /// Announcements wake a worker waiting for a version; late joiners read `latest` instead.
    func watchAnnouncements() async throws {
        let fabric = context.fabric
        let stream = fabric.amqp.consume(queue: "", prefetch: 8, declare: .exclusiveTemporary,
                                         bindings: [BindingSpec(queue: "", exchange: Names.checkpointsExchange)])
        for try await delivery in stream {
            // an exclusive queue dies with its connection: a void ack here has nothing left to redeliver
            do { try await delivery.ack() } catch AMQPError.deliveryVoid {}
            if let announcement = try? CheckpointAnnouncement.decode(delivery.body, deliveredID: delivery.messageID),
               announcement.envelope.runID == fabric.names.run {
                // the hash first: a worker woken by the version reads the checkpoint against it
                policy.announced.withLock { announced in
                    announced[announcement.version] = announcement.sha256
                    if announced.count > 64, let oldest = announced.keys.min() { announced.removeValue(forKey: oldest) }
                }
                policy.announcedVersion.announce(Int(clamping: announcement.version))
            }
        }
    }

    /// One task: check it, hold a fresh enough policy, generate, publish the group, then acknowledge the task.
    func serve(_ delivery: Delivery) async throws {
        let taken = ContinuousClock.now
        let fabric = context.fabric
        let task: RolloutTask
        do {
            task = try RolloutTask.decode(delivery.body, deliveredID: delivery.messageID)
            try task.validate(RolloutTask.Limits(run: fabric.names.run, maxGroupSize: maxGroup))
        } catch {
            await fabric.deadLetter(delivery, reason: "\(error)")
            return
        }
        let fetchStarted = ContinuousClock.now
        // one task at a time looks for a newer policy; the others find it loaded when their turn comes
        guard try await policyLoads.serialized({ try await ensurePolicy(minimum: Int(clamping: task.minPolicyVersion)) }) else {
            // No fresh enough policy in time (or stopping): hand the task back for later or for another worker.
            try await delivery.nack(requeue: true)
            return
        }
        let fetchMs = (ContinuousClock.now - fetchStarted).milliseconds
        guard let format = try await runFormat() else {
            // The run's format is not published (or is mid-update): hand the task back and look again shortly.
            try await delivery.nack(requeue: true)
            try await Task.sleep(for: .seconds(1))
            return
        }
        let prompt = format.prompt.promptTokens(task.prompt)
        context.status.set(state: "generating", detail: task.taskID)
        let options = task.sampling.options
        let policy = self.policy
        // the version is read with the model, on the compute queue where loads swap both: with several tasks in hand a
        // load can come between two generations, and a group claims exactly the weights that made it. The generation is
        // timed there too (not its wait for its turn)
        let stop = context.stop
        let (version, result, generateMs): (Int, Result<[SampledCompletion], WireError>?, Double) = try await policy.compute.run {
            // a drain finishes the generation in hand; a task still waiting for its turn goes back to the queue
            if stop.isStopping { return (-1, nil, 0) }
            let generateStarted = ContinuousClock.now
            let version = policy.version.load(ordering: .relaxed)
            guard let model = policy.model.value else { throw CheckpointStoreError.missing(key: "policy (none loaded)") }
            // the held policy must read every id of the run's tokenizer (a policy of an earlier run under this id may not)
            do {
                try task.validateGeneration(promptTokens: prompt, vocabularySize: model.vocabSize, contextLength: model.contextLength)
            } catch let error as WireError {
                return (version, .failure(error), 0)
            }
            let completions = model.sample(prompt: prompt, count: Int(task.groupSize), options: options)
            return (version, .success(completions), (ContinuousClock.now - generateStarted).milliseconds)
        }
        let completions: [SampledCompletion]
        switch result {
        case nil:
            try await delivery.nack(requeue: true)
            return
        case let .success(value): completions = value
        case let .failure(error):
            await fabric.deadLetter(delivery, reason: error.reason)
            return
        }
        var group = RolloutGroup()
        group.envelope = fabric.envelope()
        group.envelope.epoch = task.envelope.epoch  // the epoch of the task it serves
        group.task = task
        group.policyVersion = UInt64(version)
        group.promptTokens = prompt
        group.completions = completions.map { sample in
            Completion.with {
                $0.tokens = sample.tokens
                $0.logprobs = sample.logprobs
                $0.finishedWithEos = sample.finishedWithEOS
                $0.proof = Data(sample.proof)
            }
        }
        group.workerID = fabric.identity.instance
        group.taskRedelivered = delivery.redelivered
        group.timings = Timings.with {
            $0.checkpointFetchMs = fetchMs
            $0.generateMs = generateMs
        }
        try identity.sign(&group)
        try await records.written(.registration)
        try await records.written(.load(version: version))
        let publishStarted = ContinuousClock.now
        try await fabric.publish(group, exchange: Names.rolloutsExchange, routingKey: fabric.names.run)
        let published = ContinuousClock.now
        if let adaptive, let grown = adaptive.record(generateMs: generateMs, confirmMs: (published - publishStarted).milliseconds) {
            heldTasks.record(Double(grown))
            let means = adaptive.means
            let message = "holding \(grown) tasks at once (generation \(String(format: "%.1f", means.generateMs)) ms, "
                + "a publish confirmed in \(String(format: "%.0f", means.confirmMs)) ms)"
            context.logger.info("\(message)")
        }
        if !firsts.published.exchange(true, ordering: .relaxed), let age = Self.processAge() {
            let takenAt = age - (published - taken).seconds
            let message = "first group published \(String(format: "%.2f", age)) s after the process started (its task taken at "
                + "\(String(format: "%.2f", takenAt)) s, which waited \(String(format: "%.0f", fetchMs)) ms for a policy)"
            context.logger.info("\(message)")
        }
        // Acknowledged only once the group is safely with the broker.
        try await delivery.ack()
        let generated = completions.reduce(0) { $0 + $1.tokens.count }
        meter.record(generated)
        groups.increment()
        tokens.increment(by: generated)
        generateTime.recordNanoseconds(Int64(generateMs * 1e6))
        context.status.update { $0.throughput = meter.perSecond; $0.state = "waiting for tasks"; $0.detail = "" }
    }

    /// The run's format, read where checkpoints are read (a relay, or the checkpoint Redis, which holds a copy the
    /// broadcaster makes with each version); from the run's Redis, where the learner publishes it, when that copy is
    /// not there yet or the relay fails.
    func runFormat() async throws -> RunFormat? {
        let fabric = context.fabric
        if checkpointRedis !== fabric.redis {
            do {
                if let format = try await formats.usable(names: fabric.names, redis: checkpointRedis, logger: context.logger) { return format }
            } catch {
                context.logger.warning("run format unreadable from \(checkpointRedis.endpoint): \(error); reading \(fabric.redis.endpoint)")
            }
        }
        return try await formats.usable(names: fabric.names, redis: fabric.redis, logger: context.logger)
    }

    /// Seconds since this process started (Linux: its start time in /proc/self/stat against the uptime; an exec, like
    /// the BLAS relaunch, keeps it), for the log of a join.
    static func processAge() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }  // field 22, starttime, in clock ticks
        return ProcessInfo.processInfo.systemUptime - ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A worker that starts fetches the newest policy at once, without waiting for one if there is none yet (its first
    /// task then does); a failure here is left to that task, which looks again with every source.
    func warmUp() async throws {
        do {
            _ = try await policyLoads.serialized { try await ensurePolicy(minimum: 0, waitSeconds: 0) }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            context.logger.notice("no policy fetched at start (\(error)); the first task looks again")
        }
    }

    /// Loads the newest verified checkpoint if the held one is older than `minimum`; false if none is fresh enough in time.
    /// A relay is read first; the origin when the relay's copy does not verify, or when the relay stays behind the version
    /// the origin broker announced for `rollout.relay_lag_seconds` (a lagging or rolled-back `latest`).
    func ensurePolicy(minimum: Int, waitSeconds: Double? = nil) async throws -> Bool {
        if policy.version.load(ordering: .relaxed) >= minimum { return true }
        let deadline = ContinuousClock.now + .seconds(waitSeconds ?? versionWait)
        var relayBehindSince: ContinuousClock.Instant?
        while !context.stop.isStopping {
            // the stores to read, in order; `true` marks the origin
            var sources: [(store: CheckpointStore, isOrigin: Bool)] = [(store, false)]
            if let originStore {
                // a relay that errors is a relay that lags: the origin is read after the lag
                let relayLatest = ((try? await store.latest()) ?? nil).map { Int(clamping: $0) } ?? -1
                // counted once each time it goes back; while it stays behind, the lag rule below keeps the origin in use
                if relayLatest < policy.relayHighest.load(ordering: .relaxed) {
                    relayRollbacks.increment()
                    context.logger.error("the relay's latest went back to \(relayLatest) from \(policy.relayHighest.load(ordering: .relaxed)): reading the origin")
                    sources = [(originStore, true)]
                }
                policy.relayHighest.store(relayLatest, ordering: .relaxed)
                if relayLatest < minimum, policy.announcedVersion.current >= minimum {
                    let since = relayBehindSince ?? ContinuousClock.now
                    relayBehindSince = since
                    if ContinuousClock.now - since >= relayLag { sources = [(originStore, true)] }
                }
            }
            var refused = false
            var next = 0
            while next < sources.count {
                let (source, isOrigin) = sources[next]
                next += 1
                let newest: UInt64
                do {
                    guard let latest = try await source.latest(), Int(clamping: latest) >= minimum else { continue }
                    newest = latest
                } catch where !isOrigin {
                    if let originStore, !sources.contains(where: \.isOrigin) { sources.append((originStore, true)) }
                    continue
                }
                do {
                    try await load(version: newest, from: source, origin: isOrigin || checkpointRedis === context.fabric.checkpointRedis)
                    if isOrigin { originFetches.increment() }
                    return true
                } catch where error is CheckpointStoreError || !isOrigin {
                    // a relay or a writer served something that does not verify (or a relay failed to serve it at all):
                    // keep the held policy, count it, look elsewhere
                    refused = true
                    refusedCheckpoints.increment()
                    context.logger.error("refused checkpoint version \(newest): \(error); keeping version \(policy.version.load(ordering: .relaxed))")
                    context.status.set(state: "refused checkpoint", detail: "version \(newest): \(error)")
                    if let originStore, !sources.contains(where: \.isOrigin) { sources.append((originStore, true)) }
                }
            }
            if ContinuousClock.now > deadline { return false }
            if refused {
                try await Task.sleep(for: .seconds(1))
                continue
            }
            context.status.set(state: "waiting for policy", detail: "need version \(minimum)")
            try await waitForPolicy(minimum: minimum, until: deadline)
        }
        return false
    }

    /// Between two looks at `latest`: the announcement of a fresh enough version wakes the worker at once; without one it
    /// looks again after `announcementRecheck` anyway, as announcements sent while its exclusive queue was being
    /// redeclared (a reconnect) are lost. A version announced but not yet readable here (a relay still replicating it)
    /// is looked for again after `replicationRecheck`, until the relay has it or the lag rule reads the origin.
    func waitForPolicy(minimum: Int, until deadline: ContinuousClock.Instant) async throws {
        if policy.announcedVersion.current >= minimum {
            try await Task.sleep(until: min(ContinuousClock.now + Self.replicationRecheck, deadline), clock: .continuous)
        } else {
            _ = await policy.announcedVersion.wait(atLeast: minimum, until: min(ContinuousClock.now + Self.announcementRecheck, deadline))
            try Task.checkCancellation()
        }
    }

    static let announcementRecheck = Duration.milliseconds(500)
    static let replicationRecheck = Duration.milliseconds(100)

    /// Fetches a version (every shard verified against its manifest) and makes it the held policy.
    func load(version: UInt64, from source: CheckpointStore, origin: Bool = true) async throws {
        let fabric = context.fabric
        context.status.set(state: "fetching checkpoint", detail: "version \(version)")
        let started = ContinuousClock.now
        let (bytes, manifest) = try await source.read(version: version)
        // the origin broker announced this version with its SHA-256: a relay's copy must be that one
        if let pinned = policy.announced.withLock({ $0[version] }), pinned != manifest.sha256 {
            throw CheckpointStoreError.fileHashMismatch(version: version, expected: pinned, found: manifest.sha256)
        }
        let fetchedMs = (ContinuousClock.now - started).milliseconds
        let loaded = Int(clamping: version)
        // the version this worker's groups will claim: the scorer refuses a claim of a version it never recorded. The
        // record and the loads log go in one round trip, which the first publish with this version waits for, not the
        // generations (over a long link that round trip would hold every task in hand). Started before the swap: a
        // generation with these weights can run as soon as they are in, and its publish must find the record to wait for
        let (registry, key, redis) = (self.registry, identity.publicKey, fabric.redis)
        let record = registry.loadRecordCommand(key, version: version, sha256: manifest.sha256)
        let log = RedisConnection.xaddCommand(fabric.names.loadsLogKey, fields: [
            "worker": fabric.identity.instance, "version": String(version), "verified": "1", "shards": String(manifest.shards.count),
            "sha256": manifest.sha256, "source": origin ? "origin" : "relay", "loaded_ms": String(WallClock.nowMs()), "fetch_ms": String(format: "%.1f", fetchedMs)],
            maxLength: 100_000)
        records.start(.load(version: loaded), write: {
            for reply in try await redis.pipeline([record, log]) {
                if case let .error(message) = reply { throw RedisError.server(message: message, command: "recording the load of version \(version)") }
            }
        }, retry: { try await registry.recordLoad(key, version: version, sha256: manifest.sha256) })
        let policy = self.policy
        try await policy.compute.run {
            // weights and version change together, between two generations
            if let model = policy.model.value, (try? model.loadWeights(safetensors: bytes)) != nil {
                policy.version.store(loaded, ordering: .relaxed)
                return
            }
            policy.model.value = try Policies.fromSafetensors(bytes)  // whatever the architecture
            policy.version.store(loaded, ordering: .relaxed)
        }
        context.status.update { $0.policyVersion = loaded }
        loads.increment()
        fetchTime.recordNanoseconds(Int64(fetchedMs * 1e6))
        let first = firsts.loaded.exchange(true, ordering: .relaxed) ? nil : Self.processAge().map { String(format: ", %.2f s after the process started", $0) }
        context.logger.info("loaded version \(version) (\(manifest.shards.count) shards verified) in \(String(format: "%.0f", fetchedMs)) ms\(first ?? "")")
    }
}

/// The worker's policy: the model and its version, touched only on the compute queue; and the newest version
/// announced on the checkpoint fanout (one writer: the announcement listener), which wakes the tasks waiting for it.
final class PolicyHolder: Sendable {
    let compute = ComputeQueue(label: "rollout.model")
    let model = Confined<(any Policy)?>(nil)
    let version = Atomic<Int>(-1)
    let announcedVersion = AnnouncedVersion()
    /// The newest `latest` seen on the relay: a relay whose `latest` goes back has been rolled back.
    let relayHighest = Atomic<Int>(-1)
    /// SHA-256 of each recently announced version, as the broadcaster announced it through the broker.
    let announced = Mutex<[UInt64: String]>([:])
}

/// For the log of a join: whether the first load and the first group happened yet.
final class Firsts: Sendable {
    let loaded = Atomic<Bool>(false)
    let published = Atomic<Bool>(false)
}
