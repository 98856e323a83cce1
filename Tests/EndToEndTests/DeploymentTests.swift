import Foundation
import Logging
import Messaging
import Checkpoints
import Config
@testable import Runtime
import Store
import Synchronization
import TestSupport
import Testing
import Wire

/// The deployment (compose/) checked against the code, without a Docker engine: the compose files, the commands and
/// environment they give each service, and the broker definitions and ACLs they load, on brokers of the test's own.
@Suite("Deployment", .serialized)
struct DeploymentTests {
    @Test(.timeLimit(.minutes(10)))
    func composeFilesAreValidAndEveryServiceAcceptsItsCommandAndEnvironment() throws {
        let binDir = try deploymentBinaryDirectory()
        // docker-compose config for every file, --dry-run of every service, env names against --help, runtime libraries, docs.
        let (status, output) = try runCommand([repositoryRoot.appendingPathComponent("scripts/deploy-check.sh").path, binDir])
        #expect(status == 0, "scripts/deploy-check.sh \(binDir) failed:\n\(output)")
        #expect(output.contains("all deployment checks passed"), "\(output)")
        #expect(output.contains("docker-compose config: compose/docker-compose.yml"), "the main compose file was not validated:\n\(output)")
        #expect(output.contains("docker-compose config: compose/docker-compose.remote.yml"), "the remote compose file was not validated:\n\(output)")
    }

    @Test(.timeLimit(.minutes(10)))
    func eachRoleCanDoWhatItNeedsAndNothingElse() async throws {
        let stack = try DeploymentStack.start()
        defer { stack.stop() }
        let names = Names(run: "acl-\(UUID().uuidString.prefix(8).lowercased())")
        try await checkMessaging(stack: stack, names: names)
        try await checkRedis(stack: stack, names: names)
    }

    /// `tributary users create RUN`: each role's user narrowed to one run, on the broker and in Redis; `users delete`.
    @Test(.timeLimit(.minutes(10)))
    func perRunUsersReachTheirRunOnly() async throws {
        let stack = try DeploymentStack.start()
        defer { stack.stop() }
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let mine = Names(run: "mine-\(suffix)"), other = Names(run: "other-\(suffix)")
        let cli = try deploymentBinaryDirectory() + "/tributary"
        let admin = ["--admin-amqp-url", stack.adminAMQPURL, "--management-url", "http://127.0.0.1:\(stack.managementPort)",
                     "--admin-redis-url", stack.adminRedisURL]
        let (status, output) = try runCommand([cli, "users", "create", mine.run, "--json"] + admin)
        #expect(status == 0, "tributary users create failed:\n\(output)")
        let created = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        var amqpURLs: [String: String] = [:], redisURLs: [String: String] = [:]
        for user in created?["users"] as? [[String: String]] ?? [] {
            amqpURLs[user["role"] ?? ""] = user["amqp_url"]
            redisURLs[user["role"] ?? ""] = user["redis_url"]
        }
        #expect(Set(amqpURLs.keys) == Set(RunUser.roles), "\(output)")

        // The rights are compose's, with the run in place of "any run": definitions.json and users.acl say the same.
        let definitions = try JSONSerialization.jsonObject(with: Data(contentsOf: repositoryRoot.appendingPathComponent("compose/rabbitmq/definitions.json"))) as? [String: Any]
        let permissions = definitions?["permissions"] as? [[String: String]] ?? []
        let topicPermissions = definitions?["topic_permissions"] as? [[String: String]] ?? []
        let acl = try String(contentsOf: repositoryRoot.appendingPathComponent("compose/redis/users.acl"), encoding: .utf8).split(separator: "\n")
        for user in RunUser.all(run: mine.run) {
            let narrowed = { (pattern: String) in pattern.replacingOccurrences(of: "[A-Za-z0-9_-]+", with: mine.run) }
            let shared = permissions.first { $0["user"] == user.role }
            #expect([user.configure, user.write, user.read] == [shared?["configure"], shared?["write"], shared?["read"]].map { narrowed($0 ?? "") },
                    "\(user.name)'s broker permissions differ from the \(user.role) user's in definitions.json")
            #expect(user.deadLetterKeys == topicPermissions.first { $0["user"] == user.role && $0["exchange"] == Names.deadExchange }.map { narrowed($0["write"] ?? "") },
                    "\(user.name)'s dead-letter keys differ from definitions.json's topic permission")
            #expect(user.controlKeys == topicPermissions.first { $0["user"] == user.role && $0["exchange"] == Names.controlExchange }.map { narrowed($0["write"] ?? "") },
                    "\(user.name)'s control keys differ from definitions.json's topic permission")
            let line = acl.first { $0.hasPrefix("user \(user.role) on ") }.map(String.init) ?? ""
            let rules = aclRules(line).dropFirst(4).map {
                $0.replacingOccurrences(of: "tributary:*:", with: "tributary:\(mine.run):").replacingOccurrences(of: "~tributary:*", with: "~tributary:\(mine.run):*")
            }
            #expect(user.redisRules == rules, "\(user.name)'s Redis rules differ from users.acl's \(user.role) line")
        }

        let learner = stack.amqp("learner", names: mine)
        try await learner.connect()
        try await learner.declare(other.topology(queueType: .classic))
        for names in [mine, other] {
            try await learner.publish(exchange: Names.tasksExchange, routingKey: names.run, body: Array("task".utf8), messageID: "task-\(names.run)")
            try await learner.publish(exchange: Names.controlExchange, routingKey: names.policyRoutingKey, body: Array("policy".utf8))
        }
        let user = { (role: String, names: Names) in
            stack.amqp(url: amqpURLs[role] ?? "", name: "\(role)-\(names.run)", topology: DeploymentStack.topology(role: role, names: names))
        }
        // Its own run: what the role needs.
        let rollout = user("rollout", mine)
        try await rollout.connect()
        let task = try await DeliveryInbox(rollout.consume(queue: mine.tasksQueue, prefetch: 1)).first("a task of its run")
        #expect(task.messageID == "task-\(mine.run)")
        try await task.ack()
        try await rollout.publish(exchange: Names.rolloutsExchange, routingKey: mine.run, body: Array("group".utf8), messageID: "group-1")
        let reward = user("reward", mine)
        try await reward.connect()
        #expect(try await DeliveryInbox(reward.consume(queue: mine.rolloutsQueue, prefetch: 1)).first("a group").userID == "\(mine.run).rollout")
        try await rollout.publish(exchange: Names.deadExchange, routingKey: mine.tasksQueue, body: Array("bad".utf8), messageID: "dead-1")
        let broadcaster = user("broadcaster", mine)
        try await broadcaster.connect()
        #expect(try await DeliveryInbox(broadcaster.consume(queue: mine.policiesQueue, prefetch: 1)).first("a policy").body == Array("policy".utf8))
        let control = user("control", mine)
        try await control.connect()
        #expect(try await DeliveryInbox(control.consume(queue: mine.deadLettersQueue, prefetch: 1)).first("a dead letter").messageID == "dead-1")
        // The other run: nothing.
        for (role, queue) in [("rollout", other.tasksQueue), ("reward", other.rolloutsQueue), ("broadcaster", other.policiesQueue),
                              ("control", other.deadLettersQueue)] {
            let code = await refusedConsumeCode(user(role, mine), queue: queue, names: mine)
            #expect(code == 403, "\(mine.run).\(role) consuming \(queue): expected 403, got \(code.map(String.init) ?? "deliveries")")
        }
        let code = await refusedPublishCode(user("rollout", mine), exchange: Names.deadExchange, routingKey: other.tasksQueue)
        #expect(code == 403, "\(mine.run).rollout dead-lettering into \(other.run): expected 403, got \(code.map(String.init) ?? "success")")
        #expect(await refusalCode { try await rollout.delete(queue: mine.tasksQueue) } == 403)
        // The work exchanges are shared, so the broker lets it publish with the other run's routing key; the other run's
        // consumer (ServiceContext.consume) reads the broker-checked user_id and dead-letters it instead of handling it.
        try await rollout.publish(exchange: Names.rolloutsExchange, routingKey: other.run, body: Array("foreign".utf8), messageID: "foreign-1")
        let scorerSettings = try Settings.load(role: "reward", abstract: "", specs: Fabric.settings, arguments: [
            "--amqp.url", stack.amqpURL("reward"), "--redis.url", stack.redisURL("reward")], environment: [:])
        let scorer = try Fabric(settings: scorerSettings, role: "reward", runID: other.run, logger: Logger(label: "deploy-scorer"))
        try await scorer.connect(timeoutSeconds: 60)
        let context = ServiceContext(settings: scorerSettings, fabric: scorer, status: StatusBoard(identity: scorer.identity, throughputUnit: "groups/s"),
                                     stop: StopRequest(), logger: scorer.logger, control: AsyncStream { $0.finish() })
        let handled = SeenMessages()
        let consuming = Task {
            try await context.consume(queue: other.rolloutsQueue, prefetch: 1) { delivery in
                handled.add(delivery.messageID ?? "?")
                try await delivery.ack()
            }
        }
        let sharedRollout = stack.amqp("rollout", names: other)
        try await sharedRollout.connect()
        try await sharedRollout.publish(exchange: Names.rolloutsExchange, routingKey: other.run, body: Array("own".utf8), messageID: "own-1")
        try await waitUntil("the other run's scorer to handle its own run's group") { handled.ids.contains("own-1") }
        let adminClient = stack.amqp(url: stack.adminAMQPURL, name: "deploy-admin", topology: Topology())
        try await adminClient.connect()
        let foreign = try await DeliveryInbox(adminClient.consume(queue: other.deadLettersQueue, prefetch: 1)).first("the foreign group, dead-lettered")
        #expect(foreign.messageID == "foreign-1")
        #expect((foreign.headers["x-tributary-reason"] ?? "").contains("a user of run \(mine.run)"), "\(foreign.headers)")
        #expect(!handled.ids.contains("foreign-1"), "a scorer handled a group another run's user published")
        consuming.cancel()
        for client in [sharedRollout, adminClient] { await client.close() }
        await scorer.close()

        // Redis: its run's keys, as the shared user's, and no other run's.
        let owner = try await stack.redis("learner")
        for names in [mine, other] {
            _ = try await owner.hset(names.stateKey, fields: ["status": "running"])
            for command in try TaskLedger(names: names, redis: owner).recordCommands([(RolloutTask.with { $0.taskID = "task-1"; $0.answer = "42" }, 0)]) {
                _ = try await owner.command(command)
            }
        }
        let redisRollout = RedisClient(endpoint: try RedisEndpoint(url: redisURLs["rollout"] ?? ""))
        try await redisRollout.connect()
        #expect(try await redisRollout.hgetall(mine.stateKey)["status"] == Array("running".utf8))
        try await expectNoPermission(redisRollout, ["HGETALL", other.stateKey], "\(mine.run).rollout reading \(other.run)'s state")
        try await expectNoPermission(redisRollout, ["SET", mine.checkpoints.latest, "9"], "\(mine.run).rollout moving its run's ckpt:latest")
        try await expectNoPermission(redisRollout, ["HGET", mine.ledgerKey, "task-1"], "\(mine.run).rollout reading its run's ledger")
        let redisReward = RedisClient(endpoint: try RedisEndpoint(url: redisURLs["reward"] ?? ""))
        try await redisReward.connect()
        #expect(try await TaskLedger(names: mine, redis: redisReward).lookup("task-1") != .unknown)
        try await expectNoPermission(redisReward, ["HGET", other.ledgerKey, "task-1"], "\(mine.run).reward reading \(other.run)'s ledger")
        let redisControl = RedisClient(endpoint: try RedisEndpoint(url: redisURLs["control"] ?? ""))
        try await redisControl.connect()
        _ = try await redisControl.hgetall(mine.stateKey)
        try await expectNoPermission(redisControl, ["HGETALL", other.stateKey], "\(mine.run).control reading \(other.run)'s state")
        for client in [redisRollout, redisReward, redisControl, owner] { client.close() }
        for client in [learner, rollout, reward, broadcaster, control] { await client.close() }

        // Deleted: neither logs in any more.
        let (deleteStatus, deleteOutput) = try runCommand([cli, "users", "delete", mine.run] + admin)
        #expect(deleteStatus == 0, "tributary users delete failed:\n\(deleteOutput)")
        await #expect(throws: AMQPError.self, "a deleted user logs in to the broker") { try await user("rollout", mine).connect() }
        let deleted = RedisClient(endpoint: try RedisEndpoint(url: redisURLs["rollout"] ?? ""))
        await #expect(throws: RedisError.self, "a deleted user logs in to Redis") {
            try await deleted.connect()
            _ = try await deleted.command(["PING"])
        }
        deleted.close()
    }

    /// The checkpoint Redis (compose's `checkpoints`, checkpoints-users.acl): the broadcaster writes checkpoints and the
    /// run's format there; every other role only reads what it needs; relays replicate it as user `replica`, which reads
    /// nothing, and workers read the relay (relay.conf, relay-users.acl) as the remote compose file sets them up.
    @Test(.timeLimit(.minutes(10)))
    func checkpointRedisUsersDoWhatTheyNeedAndNothingElse() async throws {
        let stack = try DeploymentStack.start()
        defer { stack.stop() }
        let names = Names(run: "ckpt-\(UUID().uuidString.prefix(8).lowercased())")
        let policy = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 17 &+ 3) }
        let admin = try await stack.checkpointRedis("admin")
        #expect(try await admin.command(["PING"]).string == "PONG", "the healthcheck's ping as admin")

        // The run's format, as the learner publishes it in the run's Redis (a byte tokenizer: the fields only).
        let learnerRun = try await stack.redis("learner")
        _ = try await learnerRun.hset(names.stateKey, fields: [
            "status": "running", RunFormat.Field.template: "", RunFormat.Field.system: "", RunFormat.Field.tokenizerSHA256: "",
            RunFormat.Field.eosToken: "0", RunFormat.Field.vocabSize: "256"])

        // broadcaster: a version's manifest and shards, `latest`, the format copy; deletes a version; WAITs.
        let broadcaster = try await stack.checkpointRedis("broadcaster")
        let broadcasterRun = try await stack.redis("broadcaster")
        let store = CheckpointStore(names: names, redis: broadcaster)
        let manifest = try await store.write(version: 1, safetensors: policy, shardBytes: 4096)
        #expect(manifest.shards.count > 1)
        try await store.setLatest(1)
        try await RunFormat.mirror(names: names, from: broadcasterRun, to: broadcaster)
        #expect(try await broadcaster.hget(names.stateKey, field: RunFormat.Field.vocabSize) == Array("256".utf8), "the format copied")
        _ = try await broadcaster.command(["SET", names.tokenizerKey, "{\"model\": {}}"])
        // a run with a tokenizer.json: the copy reads it from the run's Redis as the broadcaster
        _ = try await learnerRun.command(["SET", names.tokenizerKey, "{\"model\": {}}"])
        #expect(try await broadcasterRun.get(names.tokenizerKey) == Array("{\"model\": {}}".utf8), "the broadcaster reads the run's tokenizer to copy it")
        _ = try await store.write(version: 2, safetensors: policy, shardBytes: 4096)
        try await store.delete(version: 2)
        #expect(try await store.versions() == [1])
        #expect(try await broadcaster.wait(numReplicas: 0, timeoutMs: 0) == 0)
        try await expectNoPermission(broadcaster, ["SET", names.learnerStateKey, "x"], "broadcaster writing the learner's state into the checkpoint Redis")
        try await expectNoPermission(broadcaster, ["SET", names.checkpoints.staging(version: 3), "x"], "broadcaster staging a policy in the checkpoint Redis")
        try await expectNoPermission(broadcaster, ["SET", names.heartbeatKey(role: "broadcaster", instance: "x"), "{}"], "broadcaster writing a heartbeat there")
        try await expectNoPermission(broadcaster, ["FLUSHALL"], "broadcaster flushing the checkpoint Redis")
        try await expectNoPermission(broadcaster, ["KEYS", "*"], "broadcaster running KEYS")

        // rollout: reads checkpoints and the format; writes nothing.
        let rollout = try await stack.checkpointRedis("rollout")
        let rolloutStore = CheckpointStore(names: names, redis: rollout)
        #expect(try await rolloutStore.latest() == 1)
        #expect(try await rolloutStore.read(version: 1).bytes == policy, "a rollout worker reads and verifies a checkpoint")
        #expect(try await RunFormatCache().format(names: names, redis: rollout)?.vocabSize == 256, "a rollout worker reads the run's format copy")
        #expect(try await rollout.get(names.tokenizerKey) != nil, "a rollout worker reads the tokenizer copy")
        for (command, what) in [(["SET", names.checkpoints.manifest(version: 2), "forged"], "writing a manifest"),
                                (["SET", names.checkpoints.shard(version: 1, index: 0), "forged"], "overwriting a shard"),
                                (["SET", names.checkpoints.latest, "99"], "moving ckpt:latest"),
                                (["DEL", names.checkpoints.manifest(version: 1)], "deleting a manifest"),
                                (["DEL", names.checkpoints.shard(version: 1, index: 0)], "deleting a shard"),
                                (["HSET", names.stateKey, RunFormat.Field.vocabSize, "9"], "changing the format copy"),
                                (["SET", names.tokenizerKey, "forged"], "replacing the tokenizer copy"),
                                (["SET", names.heartbeatKey(role: "rollout", instance: "x"), "{}"], "writing a heartbeat there"),
                                (["HSETNX", names.workersKey, "key-1", "{}"], "registering there"),
                                (["FLUSHALL"], "flushing the checkpoint Redis"), (["KEYS", "*"], "running KEYS"),
                                (["EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", names.checkpoints.latest], "writing ckpt:latest from a script")] {
            try await expectNoPermission(rollout, command, "rollout \(what)")
        }
        await #expect(throws: RedisError.self, "a rollout worker's CheckpointStore cannot publish a version") {
            _ = try await rolloutStore.write(version: 3, safetensors: policy, shardBytes: 4096)
        }

        // reward and learner: the latest version only.
        for role in ["reward", "learner"] {
            let client = try await stack.checkpointRedis(role)
            #expect(try await CheckpointStore(names: names, redis: client).latest() == 1, "\(role) reads ckpt:latest")
            try await expectNoPermission(client, ["GET", names.checkpoints.manifest(version: 1)], "\(role) reading a manifest")
            try await expectNoPermission(client, ["HGETALL", names.stateKey], "\(role) reading the format copy")
            try await expectNoPermission(client, ["SET", names.checkpoints.latest, "5"], "\(role) moving ckpt:latest")
            try await expectNoPermission(client, ["DEL", names.checkpoints.manifest(version: 1)], "\(role) deleting a manifest")
            client.close()
        }
        // validator: checkpoints, read-only.
        let validator = try await stack.checkpointRedis("validator")
        #expect(try await CheckpointStore(names: names, redis: validator).read(version: 1).bytes == policy, "a validator reads a checkpoint")
        try await expectNoPermission(validator, ["SET", names.checkpoints.latest, "5"], "validator moving ckpt:latest")
        try await expectNoPermission(validator, ["DEL", names.checkpoints.shard(version: 1, index: 0)], "validator deleting a shard")
        try await expectNoPermission(validator, ["HGETALL", names.stateKey], "validator reading the format copy")
        // control: reads everything of the run (checkpoint list, export, status), writes nothing.
        let control = try await stack.checkpointRedis("control")
        #expect(try await CheckpointStore(names: names, redis: control).versions() == [1])
        #expect(try await CheckpointStore(names: names, redis: control).read(version: 1).bytes == policy)
        _ = try await control.hgetall(names.stateKey)
        try await expectNoPermission(control, ["SET", names.checkpoints.latest, "5"], "control moving ckpt:latest")
        try await expectNoPermission(control, ["DEL", names.checkpoints.manifest(version: 1)], "control deleting a manifest")

        // replica: replication only, no key.
        let replica = try await stack.checkpointRedis("replica")
        _ = try await replica.command(["PING"])
        try await expectNoPermission(replica, ["GET", names.checkpoints.latest], "replica reading ckpt:latest")
        try await expectNoPermission(replica, ["GET", names.checkpoints.manifest(version: 1)], "replica reading a manifest")
        try await expectNoPermission(replica, ["SET", names.checkpoints.latest, "5"], "replica moving ckpt:latest")
        let anonymous = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: stack.checkpointsPort))
        await #expect(throws: RedisError.self, "the default user is off") { _ = try await anonymous.get(names.checkpoints.latest) }
        anonymous.close()

        // A relay of the remote compose file replicates it as `replica`; the broadcaster's WAIT counts it, and a worker
        // reads the checkpoint and the format from it as the relay's rollout user.
        let relayPort = try freeLoopbackPorts(1)[0]
        try stack.startRelay(port: relayPort)
        let relayAdmin = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: relayPort, user: "admin", password: stack.secrets["REDIS_ADMIN_PASSWORD"]))
        try await waitUntil("the relay to link to the checkpoint Redis as user replica") {
            guard let info = try? await relayAdmin.command(["INFO", "replication"]).string else { return false }
            return info.contains("master_link_status:up")
        }
        try await store.setLatest(1)
        #expect(try await broadcaster.wait(numReplicas: 1, timeoutMs: 30_000) == 1, "the broadcaster's WAIT counts the relay")
        let relay = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: relayPort, user: "rollout", password: stack.secrets["CHECKPOINTS_ROLLOUT_PASSWORD"]))
        try await relay.connect()
        let relayStore = CheckpointStore(names: names, redis: relay)
        #expect(try await relayStore.latest() == 1)
        #expect(try await relayStore.read(version: 1).bytes == policy, "a worker reads the checkpoint from the relay")
        #expect(try await RunFormatCache().format(names: names, redis: relay)?.vocabSize == 256, "a worker reads the format from the relay")
        try await expectNoPermission(relay, ["SET", names.checkpoints.latest, "99"], "rollout writing into the relay")
        for client in [admin, learnerRun, broadcaster, broadcasterRun, rollout, validator, control, replica, relayAdmin, relay] { client.close() }
    }

    // MARK: RabbitMQ

    private func checkMessaging(stack: DeploymentStack, names: Names) async throws {
        let run = names.run
        // Only the learner creates a run's queues: before it has, the others' passive check finds nothing (a 404, which
        // Fabric.connect retries), and a worker that tries to declare them itself is refused.
        let early = stack.amqp("rollout", names: names)
        do {
            try await early.connect()
            Issue.record("a rollout worker's passive check passed before the run's queues existed")
        } catch AMQPError.declarationFailed(_, let code, _) {
            #expect(code == 404)
        }
        await early.close()
        #expect(await refusalCode { try await stack.amqp("rollout", names: names, topology: names.topology(queueType: .classic)).connect() } == 403,
                "a rollout worker declared the run's topology")
        // A worker's Fabric waits for the learner: it retries the 404 (and says which queue it waits for) until the
        // learner has declared the run, then connects.
        let waits = LogLines()
        let worker = try Fabric(settings: try Settings.load(role: "rollout", abstract: "", specs: Fabric.settings, arguments: [
            "--amqp.url", stack.amqpURL("rollout"), "--redis.url", stack.redisURL("rollout")], environment: [:]),
                                role: "rollout", runID: run, logger: Logger(label: "deploy-worker") { _ in waits })
        let workerConnects = Task { try await worker.connect(timeoutSeconds: 600) }
        try await waitUntil("the worker's Fabric to wait for the run's queues") {
            waits.lines.contains { $0.contains("waiting for the run's learner") && $0.contains("404") }
        }

        let learner = stack.amqp("learner", names: names)
        try await learner.connect()
        try await workerConnects.value
        await worker.close()
        try await learner.publish(exchange: Names.tasksExchange, routingKey: run, body: Array("task".utf8), messageID: "task-1")

        let rollout = stack.amqp("rollout", names: names)
        try await rollout.connect()
        let announcements = DeliveryInbox(rollout.consume(queue: "", prefetch: 8, declare: .exclusiveTemporary,
                                                          bindings: [BindingSpec(queue: "", exchange: Names.checkpointsExchange)]))
        let rolloutControl = DeliveryInbox(rollout.consume(queue: "", prefetch: 8, declare: .exclusiveTemporary,
                                                           bindings: [BindingSpec(queue: "", exchange: Names.controlExchange, routingKey: "all")]))
        let task = try await DeliveryInbox(rollout.consume(queue: names.tasksQueue, prefetch: 1)).first("a task")
        #expect(task.messageID == "task-1")
        #expect(task.userID == "learner", "the broker-checked publisher of a task")
        try await task.ack()
        try await rollout.publish(exchange: Names.rolloutsExchange, routingKey: run, body: Array("group".utf8), messageID: "group-1")
        try await rollout.publish(exchange: Names.deadExchange, routingKey: names.tasksQueue, body: Array("bad task".utf8), messageID: "dead-1",
                                  headers: ["x-tributary-reason": .string("test")])

        let reward = stack.amqp("reward", names: names)
        try await reward.connect()
        let group = try await DeliveryInbox(reward.consume(queue: names.rolloutsQueue, prefetch: 1)).first("a rollout group")
        #expect(group.messageID == "group-1")
        #expect(group.userID == "rollout")
        try await group.ack()
        try await reward.publish(exchange: Names.scoredExchange, routingKey: run, body: Array("scored".utf8), messageID: "scored-1")

        let scored = try await DeliveryInbox(learner.consume(queue: names.scoredQueue, prefetch: 1)).first("a scored group")
        #expect(scored.messageID == "scored-1")
        #expect(scored.userID == "reward")
        try await scored.ack()
        // A validating run: the validator takes the scored group and passes it on; the learner reads its output, and it
        // may send the learner a ban on the run's own control key only.
        try await reward.publish(exchange: Names.scoredExchange, routingKey: run, body: Array("scored".utf8), messageID: "scored-2")
        let validator = stack.amqp("validator", names: names)
        try await validator.connect()
        let toCheck = try await DeliveryInbox(validator.consume(queue: names.scoredQueue, prefetch: 1)).first("a scored group to validate")
        #expect(toCheck.messageID == "scored-2" && toCheck.userID == "reward")
        try await validator.publish(exchange: Names.validatedExchange, routingKey: run, body: toCheck.body, messageID: "scored-2")
        try await toCheck.ack()
        let validated = try await DeliveryInbox(learner.consume(queue: names.validatedQueue, prefetch: 1)).first("a validated group")
        #expect(validated.messageID == "scored-2" && validated.userID == "validator")
        try await validated.ack()
        try await validator.publish(exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: run),
                                    body: Array("ban".utf8), messageID: "ban-1", mandatory: false)
        try await learner.publish(exchange: Names.controlExchange, routingKey: names.policyRoutingKey, body: Array("saved".utf8), messageID: "policy-1")
        _ = try await learner.purge(queue: names.tasksQueue)

        let broadcaster = stack.amqp("broadcaster", names: names)
        try await broadcaster.connect()
        let policy = try await DeliveryInbox(broadcaster.consume(queue: names.policiesQueue, prefetch: 1)).first("a saved policy")
        #expect(policy.messageID == "policy-1")
        try await policy.ack()
        try await broadcaster.publish(exchange: Names.checkpointsExchange, routingKey: "", body: Array("announce".utf8), messageID: "ckpt-1",
                                      mandatory: false)
        #expect(try await announcements.first("a checkpoint announcement").messageID == "ckpt-1")

        let control = stack.amqp("control", names: names)
        try await control.connect()
        try await control.publish(exchange: Names.controlExchange, routingKey: "all", body: Array("drain".utf8), messageID: "command-1",
                                  mandatory: false)
        #expect(try await rolloutControl.first("a control command").messageID == "command-1")
        // status reads queue depths by passive declares, which need no permission
        #expect(try await control.inspect(queue: names.deadLettersQueue).messages == 1)
        let dead = try await DeliveryInbox(control.consume(queue: names.deadLettersQueue, prefetch: 1)).first("a dead letter")
        #expect(dead.messageID == "dead-1")
        #expect(dead.routingKey == names.tasksQueue && dead.userID == "rollout")
        // a replay goes back through the work queue's exchange
        try await control.publish(exchange: Names.tasksExchange, routingKey: run, body: dead.body, messageID: "dead-1")
        try await dead.ack()

        // What each role must not do: publish where another role publishes, or read another role's queue.
        for (role, exchange) in [("rollout", Names.scoredExchange), ("rollout", Names.checkpointsExchange), ("rollout", Names.controlExchange),
                                 ("rollout", Names.tasksExchange), ("reward", Names.tasksExchange), ("reward", Names.checkpointsExchange),
                                 ("broadcaster", Names.scoredExchange), ("learner", Names.checkpointsExchange),
                                 ("learner", Names.scoredExchange), ("control", Names.checkpointsExchange), ("control", Names.deadExchange),
                                 ("rollout", Names.validatedExchange), ("reward", Names.validatedExchange), ("learner", Names.validatedExchange),
                                 ("validator", Names.scoredExchange), ("validator", Names.tasksExchange), ("validator", Names.checkpointsExchange)] {
            let code = await refusedPublishCode(stack.amqp(role, names: names), exchange: exchange, routingKey: run)
            #expect(code == 403, "\(role) publishing to \(exchange): expected a 403 channel error, got \(code.map(String.init) ?? "success")")
        }
        for (role, queue) in [("rollout", names.scoredQueue), ("rollout", names.rolloutsQueue), ("rollout", names.policiesQueue),
                              ("rollout", names.deadLettersQueue), ("reward", names.scoredQueue), ("reward", names.tasksQueue),
                              ("broadcaster", names.scoredQueue), ("control", names.tasksQueue), ("control", names.scoredQueue),
                              ("rollout", names.validatedQueue), ("reward", names.validatedQueue), ("validator", names.tasksQueue),
                              ("validator", names.rolloutsQueue), ("validator", names.validatedQueue)] {
            let code = await refusedConsumeCode(stack.amqp(role, names: names), queue: queue, names: names)
            #expect(code == 403, "\(role) consuming \(queue): expected 403, got \(code.map(String.init) ?? "deliveries")")
        }
        // A dead letter names its queue by its routing key; each role's is its own queue's (a topic permission).
        for (role, key) in [("rollout", names.scoredQueue), ("rollout", names.rolloutsQueue), ("reward", names.scoredQueue),
                            ("broadcaster", names.tasksQueue), ("validator", names.rolloutsQueue)] {
            let code = await refusedPublishCode(stack.amqp(role, names: names), exchange: Names.deadExchange, routingKey: key)
            #expect(code == 403, "\(role) dead-lettering as if from \(key): expected 403, got \(code.map(String.init) ?? "success")")
        }
        // Nothing but the learner (and the admin) creates, changes or deletes the run's topology.
        // a validator's control commands go to its run's learner only (a topic permission): never to every role
        let broadcastByValidator = await refusedPublishCode(stack.amqp("validator", names: names), exchange: Names.controlExchange, routingKey: "all")
        #expect(broadcastByValidator == 403, "validator publishing a command to all: expected 403, got \(broadcastByValidator.map(String.init) ?? "success")")
        for role in ["rollout", "reward", "broadcaster", "validator", "control"] {
            let client = stack.amqp(role, names: names)
            try await client.connect()
            let attempts: [(String, @Sendable () async throws -> Void)] = [
                ("binding the run's scored queue to the rollouts exchange (forged scored groups)",
                 { try await client.declare(Topology(bindings: [BindingSpec(queue: names.scoredQueue, exchange: Names.rolloutsExchange, routingKey: run)])) }),
                ("binding the run's tasks queue to the rollouts exchange",
                 { try await client.declare(Topology(bindings: [BindingSpec(queue: names.tasksQueue, exchange: Names.rolloutsExchange, routingKey: "x")])) }),
                ("deleting the run's tasks queue", { try await client.delete(queue: names.tasksQueue) }),
                ("deleting the run's scored queue", { try await client.delete(queue: names.scoredQueue) }),
                ("declaring the run's tasks queue", { try await client.declare(Topology(queues: [QueueSpec(names.tasksQueue)])) }),
                ("declaring a new queue of the run", { try await client.declare(Topology(queues: [QueueSpec("tributary.\(run).extra")])) }),
                ("declaring the rollouts exchange", { try await client.declare(Topology(exchanges: [ExchangeSpec(Names.rolloutsExchange, kind: .direct)])) }),
                ("declaring a new exchange", { try await client.declare(Topology(exchanges: [ExchangeSpec("tributary.extra", kind: .fanout)])) }),
                ("binding the run's dead-letter queue to the scored exchange",
                 { try await client.declare(Topology(bindings: [BindingSpec(queue: names.deadLettersQueue, exchange: Names.scoredExchange, routingKey: run)])) }),
            ]
            for (what, attempt) in attempts {
                let code = await refusalCode(attempt)
                #expect(code == 403, "\(role) \(what): expected 403, got \(code.map(String.init) ?? "success")")
            }
            await client.close()
        }
        // A private queue bound to an exchange a role may not read would let it read (or copy) another role's messages.
        for (role, exchange) in [("rollout", Names.rolloutsExchange), ("rollout", Names.scoredExchange), ("rollout", Names.tasksExchange),
                                 ("reward", Names.scoredExchange)] {
            let client = stack.amqp(role, names: names)
            let code = await refusalCode {
                try await client.connect()
                try await self.consumerEnd(client.consume(queue: "", prefetch: 1, declare: .exclusiveTemporary,
                                                          bindings: [BindingSpec(queue: "", exchange: exchange, routingKey: run)]),
                                           on: client, names: names)
            }
            await client.close()
            #expect(code == 403, "\(role) binding a private queue to \(exchange): expected 403, got \(code.map(String.init) ?? "success")")
        }
        // Every publish carries its user as user_id, and the broker checks it: nobody publishes as another.
        for (role, exchange, forged) in [("rollout", Names.rolloutsExchange, "reward"), ("reward", Names.scoredExchange, "learner"),
                                         ("control", Names.controlExchange, "admin")] {
            let client = stack.amqp(role, names: names)
            let code = await refusalCode {
                try await client.connect()
                try await client.publish(exchange: exchange, routingKey: run, body: Array("forged".utf8), mandatory: false, userID: forged)
            }
            await client.close()
            #expect(code == 406, "\(role) publishing as user \(forged): expected 406 PRECONDITION_FAILED, got \(code.map(String.init) ?? "success")")
        }
        for client in [learner, rollout, reward, validator, broadcaster, control] { await client.close() }
    }

    /// The broker's reply code when `attempt` is refused (on the declaration or the work channel), nil when it succeeds.
    private func refusalCode(_ attempt: () async throws -> Void) async -> Int? {
        do {
            try await attempt()
            return nil
        } catch AMQPError.declarationFailed(_, let code, _) {
            return code
        } catch AMQPError.channelClosed(let code, _) {
            return code
        } catch {
            return -1
        }
    }

    /// The broker's reply code when `client` publishes to `exchange`, nil if the publish was confirmed.
    private func refusedPublishCode(_ client: AMQPClient, exchange: String, routingKey: String) async -> Int? {
        defer { Task { await client.close() } }
        do {
            try await client.connect()
            try await client.publish(exchange: exchange, routingKey: routingKey, body: Array("forbidden".utf8), mandatory: false)
            return nil
        } catch AMQPError.channelClosed(let code, _) {
            return code
        } catch {
            return -1
        }
    }

    private func refusedConsumeCode(_ client: AMQPClient, queue: String, names: Names) async -> Int? {
        defer { Task { await client.close() } }
        return await refusalCode {
            try await client.connect()
            try await consumerEnd(client.consume(queue: queue, prefetch: 1), on: client, names: names)
        }
    }

    /// Throws the error a consumer was refused with; returns if the broker let it run. The client's thread handles
    /// commands in order, so once a later query is answered (or failed, while the client reconnects after a refusal on
    /// the work channel) the consume has been answered too.
    private func consumerEnd(_ stream: AsyncThrowingStream<Delivery, Error>, on client: AMQPClient, names: Names) async throws {
        let reader = Task {
            for try await delivery in stream {
                try? await delivery.nack(requeue: true)
                return
            }
        }
        _ = try? await client.inspect(queue: names.tasksQueue)
        reader.cancel()
        try await reader.value
    }

    // MARK: Redis

    private func checkRedis(stack: DeploymentStack, names: Names) async throws {
        let policy = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

        let learner = try await stack.redis("learner")
        let learnerStore = CheckpointStore(names: names, redis: learner)
        let staged = try await learnerStore.stage(version: 1, safetensors: policy)
        _ = try await learner.hset(names.stateKey, fields: ["status": "running", "step": "1"])
        _ = try await learner.command(["XADD", names.metricsKey, "*", "step", "1"])
        _ = try await learner.hset(names.learnerStateKey, fields: ["step": "1"])
        _ = try await learner.command(["SADD", names.appliedGroupsKey, "group-1"])
        _ = try await learner.command(["XADD", names.batchesLogKey, "*", "step", "0"])
        // the task ledger, answers included, written as the learner writes it: fenced by its lease (a Lua script)
        let lease = LearnerLease(names: names, instance: "learner-acl", redis: learner, ttl: .seconds(30))
        _ = try #require(try await lease.tryAcquire())
        let ledger = TaskLedger(names: names, redis: learner)
        let task = RolloutTask.with { $0.taskID = "task-1"; $0.answer = "42" }
        try await lease.exec(try ledger.recordCommands([(task, 0)]) + ledger.closeCommands([task], .trained, step: 0) + ledger.recordCommands([(task, 0)]))
        try await ledger.prune(below: 0)
        try await ledger.extendDeadlines(byMs: 1)
        await lease.release()
        // the run's tokenizer.json and its format fields, published in one transaction as the learner does
        let replies = try await learner.pipeline([["MULTI"], ["SET", names.tokenizerKey, "{\"model\": {}}"],
                                                 ["HSET", names.stateKey, "tokenizer_sha256", "x"], ["EXEC"]])
        #expect(replies.allSatisfy { $0.errorMessage == nil } && (replies.last?.array ?? []).allSatisfy { $0.errorMessage == nil })
        try await expectAllowedRoleBasics(learner, role: "learner", names: names)
        try await expectNoPermission(learner, ["SET", names.checkpoints.manifest(version: 1), "x"], "learner writing a checkpoint")
        try await expectNoPermission(learner, ["SET", names.heartbeatKey(role: "rollout", instance: "x"), "x"], "learner writing a rollout heartbeat")

        let broadcaster = try await stack.redis("broadcaster")
        let broadcasterStore = CheckpointStore(names: names, redis: broadcaster)
        #expect(try await broadcasterStore.readStaged(key: staged.key, expectedSHA256: staged.sha256, version: 1) == policy)
        _ = try await broadcasterStore.write(version: 1, safetensors: policy, shardBytes: 4096)
        try await broadcasterStore.setLatest(1)
        _ = try await broadcaster.del([staged.key])
        _ = try await broadcaster.command(["XADD", names.broadcastLogKey, "*", "version", "1"])
        #expect(try await broadcaster.wait(numReplicas: 0, timeoutMs: 0) == 0)
        #expect(try await broadcasterStore.versions().contains(1))
        try await expectAllowedRoleBasics(broadcaster, role: "broadcaster", names: names)
        try await expectNoPermission(broadcaster, ["HSET", names.stateKey, "status", "stopped"], "broadcaster changing the run state")
        try await expectNoPermission(broadcaster, ["XADD", names.metricsKey, "*", "step", "9"], "broadcaster writing learner metrics")

        let rollout = try await stack.redis("rollout")
        let rolloutStore = CheckpointStore(names: names, redis: rollout)
        #expect(try await rolloutStore.latest() == 1)
        let (loaded, _) = try await rolloutStore.read(version: 1)
        #expect(loaded == policy, "a rollout worker reads and verifies a checkpoint")
        _ = try await rollout.hgetall(names.stateKey)
        _ = try await rollout.command(["XADD", names.loadsLogKey, "MAXLEN", "~", "100000", "*", "worker", "w", "version", "1"])
        try await expectAllowedRoleBasics(rollout, role: "rollout", names: names)
        // The rollout worker cannot write checkpoint keys, nor anything else that is not its own.
        try await expectNoPermission(rollout, ["SET", names.checkpoints.manifest(version: 2), "forged"], "rollout writing a checkpoint manifest")
        try await expectNoPermission(rollout, ["SET", names.checkpoints.shard(version: 1, index: 0), "forged"], "rollout overwriting a shard")
        try await expectNoPermission(rollout, ["SET", names.checkpoints.latest, "99"], "rollout moving ckpt:latest")
        try await expectNoPermission(rollout, ["DEL", names.checkpoints.manifest(version: 1)], "rollout deleting a checkpoint")
        try await expectNoPermission(rollout, ["HSET", names.stateKey, "status", "stopped"], "rollout changing the run state")
        #expect(try await rollout.get(names.tokenizerKey) != nil, "a rollout worker reads the run's tokenizer")
        try await expectNoPermission(rollout, ["SET", names.tokenizerKey, "forged"], "rollout replacing the run's tokenizer")
        try await expectNoPermission(rollout, ["SET", names.heartbeatKey(role: "learner", instance: "x"), "x"], "rollout forging a learner heartbeat")
        try await expectNoPermission(rollout, ["GET", names.checkpoints.staging(version: 1)], "rollout reading staged policies")
        try await expectNoPermission(rollout, ["HGET", names.ledgerKey, "task-1"], "rollout reading the task ledger (answers)")
        // a worker adds its registration and its loads, and can change or remove nobody's (its own included)
        #expect(try await rollout.command(["HSETNX", names.workersKey, "key-1", "{}"]).int == 1)
        #expect(try await rollout.command(["HSETNX", names.workerLoadsKey, "key-1:1", "sha"]).int == 1)
        try await expectNoPermission(rollout, ["HSET", names.workersKey, "key-1", "replaced"], "rollout overwriting a registration")
        try await expectNoPermission(rollout, ["HDEL", names.workersKey, "key-1"], "rollout deleting a registration")
        try await expectNoPermission(rollout, ["DEL", names.workerLoadsKey], "rollout deleting the workers' loads")
        try await expectNoPermission(rollout, ["HINCRBY", names.workerStatsKey, "key-1.accepted", "9"], "rollout counting its own groups accepted")
        try await expectNoPermission(rollout, ["HDEL", names.workerBansKey, "key-1"], "rollout lifting a ban")
        try await expectNoPermission(rollout, ["FLUSHALL"], "rollout flushing Redis")
        try await expectNoPermission(rollout, ["KEYS", "*"], "rollout running KEYS")
        try await expectNoPermission(rollout, ["EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", names.checkpoints.latest],
                                     "rollout writing ckpt:latest from a script")
        await #expect(throws: RedisError.self, "a rollout worker's CheckpointStore cannot publish a version") {
            _ = try await rolloutStore.write(version: 2, safetensors: policy, shardBytes: 4096)
        }

        let reward = try await stack.redis("reward")
        _ = try await reward.hget(names.stateKey, field: "config")
        #expect(try await CheckpointStore(names: names, redis: reward).latest() == 1)
        _ = try await reward.command(["XADD", names.scoredLogKey, "MAXLEN", "~", "100000", "*", "task", "t"])
        try await expectAllowedRoleBasics(reward, role: "reward", names: names)
        try await expectNoPermission(reward, ["SET", names.checkpoints.latest, "5"], "reward moving ckpt:latest")
        try await expectNoPermission(reward, ["GET", names.checkpoints.manifest(version: 1)], "reward reading checkpoints")
        #expect(try await reward.get(names.tokenizerKey) != nil, "a reward scorer reads the run's tokenizer")
        try await expectNoPermission(reward, ["DEL", names.tokenizerKey], "reward deleting the run's tokenizer")
        #expect(try await TaskLedger(names: names, redis: reward).lookup("task-1") != .unknown, "a reward scorer reads the task ledger")
        try await expectNoPermission(reward, ["HSET", names.ledgerKey, "task-1", "forged"], "reward rewriting the task ledger")
        let rewardWorkers = WorkerRegistry(names: names, redis: reward)
        #expect(try await rewardWorkers.registration(of: "key-1") == nil, "reads registrations (this one is not JSON)")
        #expect(try await rewardWorkers.hasLoaded("key-1", version: 1))
        try await rewardWorkers.count("key-1", "accepted")
        #expect(try await rewardWorkers.banReason(of: "key-1") == nil)
        try await expectNoPermission(reward, ["HSET", names.workerBansKey, "key-1", "x"], "reward banning a worker")
        let learnerWorkers = WorkerRegistry(names: names, redis: learner)
        try await learnerWorkers.ban("key-2", reason: "test")
        try await learnerWorkers.unban("key-2")
        try await learnerWorkers.countTrained(["key-1"])

        let control = try await stack.redis("control")
        #expect(try await control.hgetall(names.stateKey)["status"] == Array("running".utf8))
        #expect(try await control.scanKeys(matching: names.heartbeatPattern).count >= 4)
        _ = try await control.hgetall(names.countersKey)
        _ = try await control.command(["XREVRANGE", names.metricsKey, "+", "-", "COUNT", "10"])
        try await expectNoPermission(control, ["HSET", names.stateKey, "status", "stopped"], "control writing the run state")

        let anonymous = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: stack.redisPort))
        defer { anonymous.close() }
        await #expect(throws: RedisError.self, "the default user is off") { _ = try await anonymous.get(names.stateKey) }
        for client in [learner, broadcaster, rollout, reward, control] { client.close() }
    }

    /// Heartbeat, counters and a ping: what ServiceRuntime and Fabric do for every role.
    private func expectAllowedRoleBasics(_ redis: RedisClient, role: String, names: Names) async throws {
        let key = names.heartbeatKey(role: role, instance: "\(role)-test")
        // A TTL no slow machine can outlast before the control role counts the heartbeats (the stack dies with the test).
        _ = try await redis.command(["SET", key, "{}", "EX", "3600"])
        #expect(try await redis.exists(key))
        _ = try await redis.command(["HINCRBY", names.countersKey, "dead_lettered", "1"])
        _ = try await redis.hgetall(names.countersKey)
        _ = try await redis.command(["PING"])
    }

    private func expectNoPermission(_ redis: RedisClient, _ command: [String], _ what: String) async throws {
        let outcome: String
        do {
            outcome = "allowed (reply \(try await redis.command(command.map { $0 as any RedisArgument })))"
        } catch {
            if case let .server(message, _) = error, message.hasPrefix("NOPERM") { return }
            outcome = "\(error)"
        }
        Issue.record("\(what): expected a NOPERM error, got \(outcome)")
    }
}

// MARK: A stack of the test's own, from compose's definitions and ACL files

/// RabbitMQ (scripts/brokers.sh on other ports) with compose/rabbitmq/definitions.json imported, Redis with
/// compose/redis/redis.conf and users.acl, and the checkpoint Redis (service `checkpoints`) with redis.conf and
/// checkpoints-users.acl; all rendered with the passwords of compose/.env.example.
/// Ports are the kernel's free picks, so a second checkout testing at the same time cannot clash with this one; the
/// state folder is this checkout's own, and keeps the ports (RecordedPorts) so that the next run stops what an
/// interrupted one left.
private struct DeploymentStack {
    static let state = repositoryRoot.appendingPathComponent(".state/deployment-test")
    static let nodeName = "tributary-deploy@localhost"
    let amqpPort: Int, redisPort: Int, epmdPort: Int, distPort: Int
    /// The management HTTP API (`tributary users`), as compose enables it.
    let managementPort: Int
    /// The checkpoint Redis (compose's `checkpoints`).
    let checkpointsPort: Int
    let secrets: [String: String]

    init(secrets: [String: String], ports: [Int], managementPort: Int, checkpointsPort: Int) {
        (amqpPort, redisPort, epmdPort, distPort) = (ports[0], ports[1], ports[2], ports[3])
        self.managementPort = managementPort
        self.checkpointsPort = checkpointsPort
        self.secrets = secrets
    }

    var recorded: [String: String] {
        ["AMQP_PORT": String(amqpPort), "REDIS_PORT": String(redisPort), "EPMD_PORT": String(epmdPort), "DIST_PORT": String(distPort),
         "MANAGEMENT_PORT": String(managementPort), "CHECKPOINTS_PORT": String(checkpointsPort)]
    }

    /// The Redis servers this stack runs (the run's, the checkpoint Redis, a test's relay), by the folder of each.
    static let redisFolders = ["redis", "checkpoints", "relay"]

    var rabbitEnvironment: [String: String] {
        ["TRIBUTARY_AMQP_PORT": String(amqpPort), "TRIBUTARY_EPMD_PORT": String(epmdPort), "TRIBUTARY_AMQP_DIST_PORT": String(distPort),
         "TRIBUTARY_AMQP_NODENAME": Self.nodeName, "TRIBUTARY_STATE_DIR": Self.state.path,
         "TRIBUTARY_AMQP_MANAGEMENT_PORT": String(managementPort)]
    }

    static func start() throws -> DeploymentStack {
        let secrets = try parseEnvFile(repositoryRoot.appendingPathComponent("compose/.env.example"))
        // whatever an interrupted earlier run of this checkout left, on the ports it recorded
        if let old = RecordedPorts.read(in: state) {
            let ports = ["AMQP_PORT", "REDIS_PORT", "EPMD_PORT", "DIST_PORT"].compactMap { old[$0].flatMap(Int.init) }
            if ports.count == 4 {
                DeploymentStack(secrets: secrets, ports: ports, managementPort: old["MANAGEMENT_PORT"].flatMap(Int.init) ?? 0,
                                checkpointsPort: old["CHECKPOINTS_PORT"].flatMap(Int.init) ?? 0).stop()
            }
        }
        try? FileManager.default.removeItem(at: state)
        for folder in redisFolders {
            try FileManager.default.createDirectory(at: state.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        let ports = try freeLoopbackPorts(6)
        let stack = DeploymentStack(secrets: secrets, ports: Array(ports.prefix(4)), managementPort: ports[4], checkpointsPort: ports[5])
        try RecordedPorts.write(stack.recorded, in: state)
        let definitions = state.appendingPathComponent("definitions.json").path
        let acl = state.appendingPathComponent("users.acl").path
        let checkpointsACL = state.appendingPathComponent("checkpoints-users.acl").path
        try stack.must([compose("render-secrets.sh"), compose("rabbitmq/definitions.json"), definitions, compose("redis/users.acl"), acl,
                        compose("redis/checkpoints-users.acl"), checkpointsACL],
                       environment: secrets)

        for (folder, port, users) in [("redis", stack.redisPort, acl), ("checkpoints", stack.checkpointsPort, checkpointsACL)] {
            try stack.must(["redis-server", compose("redis/redis.conf"), "--port", String(port), "--bind", "127.0.0.1",
                            "--dir", state.appendingPathComponent(folder).path, "--aclfile", users, "--daemonize", "yes",
                            "--pidfile", state.appendingPathComponent("\(folder)/redis.pid").path,
                            "--logfile", state.appendingPathComponent("\(folder)/redis.log").path])
        }
        try stack.must([repositoryRoot.appendingPathComponent("scripts/brokers.sh").path, "start", "rabbitmq"], environment: stack.rabbitEnvironment)
        try stack.must(["/usr/lib/rabbitmq/bin/rabbitmqctl", "import_definitions", definitions], environment: stack.rabbitctlEnvironment)
        // The import is asynchronous: wait until the last role's login works (the deadline only bounds a failure).
        let deadline = ContinuousClock.now + .seconds(120)
        while (try runCommand(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-q", "authenticate_user", "control", secrets["AMQP_CONTROL_PASSWORD"] ?? ""],
                              environment: stack.rabbitctlEnvironment)).status != 0 {
            guard ContinuousClock.now < deadline else { throw DeploymentError(what: "the definitions were not imported within 120 s") }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return stack
    }

    var rabbitctlEnvironment: [String: String] {
        // As scripts/brokers.sh runs the node: its cookie lives in the state folder, epmd on a private port.
        ["HOME": Self.state.appendingPathComponent("rabbitmq").path, "RABBITMQ_NODENAME": Self.nodeName, "ERL_EPMD_PORT": String(epmdPort)]
    }

    /// Stops this stack's servers. brokers.sh also kills whatever listens on the RabbitMQ ports, so it only runs while
    /// the node of this state folder is alive: recorded ports of a dead node may belong to someone else by now.
    func stop() {
        let rabbitPID = Self.state.appendingPathComponent("rabbitmq/rabbitmq.pid")
        if runningProcess(pidFile: rabbitPID) != nil {
            _ = try? runCommand([repositoryRoot.appendingPathComponent("scripts/brokers.sh").path, "stop", "rabbitmq"], environment: rabbitEnvironment)
        }
        for folder in Self.redisFolders {
            Self.stopRedis(pidFile: Self.state.appendingPathComponent("\(folder)/redis.pid"))
        }
    }

    static func stopRedis(pidFile: URL) {
        guard let number = runningProcess(pidFile: pidFile) else { return }
        kill(number, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(30)
        while kill(number, 0) == 0 && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
    }

    /// A role's client of the checkpoint Redis, as compose's TRIBUTARY_CHECKPOINTS_REDIS_URL logs it in.
    func checkpointRedis(_ role: String) async throws -> RedisClient {
        let client = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: checkpointsPort, user: role,
                                                         password: secrets["CHECKPOINTS_\(role.uppercased())_PASSWORD"]))
        try await client.connect()
        return client
    }

    /// A relay as compose/docker-compose.remote.yml runs it (compose/redis/relay.conf and relay-users.acl, with the
    /// environment that file gives the relay), replicating this stack's checkpoint Redis on `port`; stopped by `stop()`.
    func startRelay(port: Int) throws {
        let folder = Self.state.appendingPathComponent("relay")
        let environment = ["CENTRAL_HOST": "127.0.0.1", "CENTRAL_REDIS_PORT": String(checkpointsPort),
                           "REDIS_REPLICA_PASSWORD": secrets["CHECKPOINTS_REPLICA_PASSWORD"] ?? "",
                           "REDIS_ROLLOUT_PASSWORD": secrets["CHECKPOINTS_ROLLOUT_PASSWORD"] ?? "",
                           "REDIS_ADMIN_PASSWORD": secrets["REDIS_ADMIN_PASSWORD"] ?? ""]
        let conf = folder.appendingPathComponent("relay.conf"), users = folder.appendingPathComponent("users.acl")
        try must([compose("render-secrets.sh"), compose("redis/relay.conf"), conf.path, compose("redis/relay-users.acl"), users.path],
                 environment: environment)
        // the container mounts redis.conf at /etc/tributary/redis.conf; here it is the repository's
        let text = try String(contentsOf: conf, encoding: .utf8)
            .replacingOccurrences(of: "include /etc/tributary/redis.conf", with: "include \(compose("redis/redis.conf"))")
        try text.write(to: conf, atomically: true, encoding: .utf8)
        try must(["redis-server", conf.path, "--port", String(port), "--bind", "127.0.0.1", "--dir", folder.path, "--aclfile", users.path,
                  "--daemonize", "yes", "--pidfile", folder.appendingPathComponent("redis.pid").path,
                  "--logfile", folder.appendingPathComponent("redis.log").path])
    }

    /// A role's client with what the role declares on connect: the learner (and the admin) the run's whole topology, the
    /// other services a passive check of it (Fabric), the CLI nothing (ControlSession).
    func amqp(_ role: String, names: Names, topology: Topology? = nil) -> AMQPClient {
        amqp(url: amqpURL(role), name: "deploy-\(role)", topology: topology ?? Self.topology(role: role, names: names))
    }

    func amqpURL(_ role: String) -> String {
        "amqp://\(role):\(secrets["AMQP_\(role.uppercased())_PASSWORD"] ?? "")@127.0.0.1:\(amqpPort)/tributary"
    }

    func redisURL(_ role: String) -> String {
        "redis://\(role):\(secrets["REDIS_\(role.uppercased())_PASSWORD"] ?? "")@127.0.0.1:\(redisPort)"
    }

    func amqp(url: String, name: String, topology: Topology) -> AMQPClient {
        AMQPClient(endpoint: try! AMQPEndpoint(url: url), topology: topology, name: name)
    }

    static func topology(role: String, names: Names) -> Topology {
        let whole = names.topology(queueType: .classic)
        switch role {
        case "learner", "admin": return whole
        case "control": return Topology()
        default: return whole.passive
        }
    }

    var adminAMQPURL: String { "amqp://admin:\(secrets["AMQP_ADMIN_PASSWORD"] ?? "")@127.0.0.1:\(amqpPort)/tributary" }
    var adminRedisURL: String { "redis://admin:\(secrets["REDIS_ADMIN_PASSWORD"] ?? "")@127.0.0.1:\(redisPort)" }

    func redis(_ role: String) async throws -> RedisClient {
        let client = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: redisPort, user: role,
                                                         password: secrets["REDIS_\(role.uppercased())_PASSWORD"]))
        try await client.connect()
        return client
    }

    private static func compose(_ path: String) -> String { repositoryRoot.appendingPathComponent("compose/\(path)").path }
    private func must(_ argv: [String], environment: [String: String] = [:]) throws {
        let (status, output) = try runCommand(argv, environment: environment)
        guard status == 0 else { throw DeploymentError(what: "\(argv.joined(separator: " ")) exited \(status):\n\(output)") }
    }
    private func compose(_ path: String) -> String { Self.compose(path) }
}

/// Deliveries of one consumer, awaited with a deadline.
private final class DeliveryInbox: Sendable {
    private let iterator: Task<Delivery?, Error>

    init(_ stream: AsyncThrowingStream<Delivery, Error>) {
        iterator = Task {
            for try await delivery in stream { return delivery }
            return nil
        }
    }

    /// The deadline only bounds a failing test; it is set for a 2-core machine running the whole suite at once.
    func first(_ what: String, within seconds: Double = 60) async throws -> Delivery {
        let iterator = self.iterator
        let timeout = Task {
            try await Task.sleep(for: .seconds(seconds))
            iterator.cancel()
        }
        defer { timeout.cancel() }
        guard let delivery = try await iterator.value else { throw DeploymentError(what: "no \(what) within \(seconds) s") }
        return delivery
    }
}

final class SeenMessages: Sendable {
    private let stored = Mutex<[String]>([])
    func add(_ id: String) { stored.withLock { $0.append(id) } }
    var ids: [String] { stored.withLock { $0 } }
}

/// Every line logged through it, for a test to wait on what a service says.
private final class LogLines: LogHandler, @unchecked Sendable {
    private let stored = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    var lines: [String] { stored.withLock { $0 } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        stored.withLock { $0.append("\(event.message)") }
    }
}

private struct DeploymentError: Error, CustomStringConvertible {
    var what: String
    var description: String { what }
}


/// The words of an ACL file line, a selector in parentheses kept whole (ACL SETUSER takes it as one argument).
private func aclRules(_ line: String) -> [String] {
    var rules: [String] = []
    for word in line.split(separator: " ").map(String.init) {
        if let last = rules.last, last.hasPrefix("("), !last.hasSuffix(")") {
            rules[rules.count - 1] += " " + word
        } else {
            rules.append(word)
        }
    }
    return rules
}

/// The built executables: TRIBUTARY_BIN_DIR, else beside this test binary (same build configuration), else .build/release.
private func deploymentBinaryDirectory() throws -> String {
    var candidates: [String] = []
    if let dir = ProcessInfo.processInfo.environment["TRIBUTARY_BIN_DIR"] { candidates.append(dir) }
    if let executable = Bundle.main.executablePath {
        var url = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        // Inside an .xctest bundle on some platforms: walk up to the build folder.
        while url.path.contains(".xctest") { url.deleteLastPathComponent() }
        candidates.append(url.path)
    }
    candidates.append(repositoryRoot.appendingPathComponent(".build/release").path)
    let products = ["tributary-learner", "tributary-broadcaster", "tributary-reward", "tributary-rollout", "tributary"]
    for dir in candidates where products.allSatisfy({ FileManager.default.isExecutableFile(atPath: "\(dir)/\($0)") }) {
        return dir
    }
    throw DeploymentError(what: "the executables are not built in any of \(candidates) (swift build -c release, or set TRIBUTARY_BIN_DIR)")
}

/// KEY=VALUE lines of an env file (comments and blank lines skipped).
private func parseEnvFile(_ url: URL) throws -> [String: String] {
    var values: [String: String] = [:]
    for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
        let text = line.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty, !text.hasPrefix("#"), let equals = text.firstIndex(of: "=") else { continue }
        values[String(text[..<equals])] = String(text[text.index(after: equals)...])
    }
    return values
}

