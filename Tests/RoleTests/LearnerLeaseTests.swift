import Runtime
import Store
import Testing

/// One learner per run, against the real Redis: the lease, its fencing token, and writes refused to a learner that lost it.
@Suite("Learner lease")
struct LearnerLeaseTests {
    func client() async throws -> RedisClient {
        let redis = try RedisClient()
        try await redis.connect()
        return redis
    }

    @Test func aSecondLearnerWaitsAndAnOldHolderCannotWriteAfterTakeover() async throws {
        let redis = try await client()
        let names = Names(run: RoleHarness.newRun("lease"))
        defer { Task { _ = try? await redis.del([names.learnerLeaseKey, names.learnerFenceKey, names.stateKey]); redis.close() } }
        let first = LearnerLease(names: names, instance: "learner-a", redis: redis, ttl: .seconds(30))
        let second = LearnerLease(names: names, instance: "learner-b", redis: redis, ttl: .seconds(30))

        let token = try #require(try await first.tryAcquire())
        #expect(try await second.tryAcquire() == nil, "a second learner must wait while the lease is held")
        try await first.exec([["HSET", names.stateKey, "step", "1"]])
        #expect(try await first.renew())

        // the first learner stalls (SIGSTOP, a frozen VM) past its TTL: the lease lapses, the standby takes it
        _ = try await redis.del([names.learnerLeaseKey])
        let newer = try #require(try await second.tryAcquire())
        #expect(newer > token, "every acquisition gets a larger fencing token")
        #expect(try await LearnerLease.holder(names: names, redis: redis)?.instance == "learner-b")

        // the old holder wakes up: its write is refused whole and changes nothing; it cannot renew its way back
        await #expect(throws: LeaseLost.self) {
            try await first.exec([["HSET", names.stateKey, "step", "99"], ["HSET", names.stateKey, "status", "failed"]])
        }
        #expect(try await redis.hget(names.stateKey, field: "step") == Array("1".utf8))
        #expect(try await redis.hget(names.stateKey, field: "status") == nil)
        #expect(try await !first.renew())
        try await second.exec([["HSET", names.stateKey, "step", "2"]])
        #expect(try await redis.hget(names.stateKey, field: "step") == Array("2".utf8))
    }

    @Test func aLapsedLeaseNobodyTookIsTakenBackWithTheSameToken() async throws {
        let redis = try await client()
        let names = Names(run: RoleHarness.newRun("lease-back"))
        defer { Task { _ = try? await redis.del([names.learnerLeaseKey, names.learnerFenceKey]); redis.close() } }
        let lease = LearnerLease(names: names, instance: "learner-a", redis: redis, ttl: .seconds(30))
        let token = try #require(try await lease.tryAcquire())
        _ = try await redis.del([names.learnerLeaseKey])
        // nobody acquired in between (the fence did not move): no one else can have written
        #expect(try await lease.renew())
        #expect(try await LearnerLease.holder(names: names, redis: redis)?.token == token)
        await lease.release()
        #expect(try await LearnerLease.holder(names: names, redis: redis) == nil)
    }
}
