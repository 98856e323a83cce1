import Foundation
import Store
import Testing

@Suite struct RedisConnectionTests {
    @Test func eightMebibyteBinaryValueWithZeroBytesRoundTrips() throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let redis = try fixture.connection()
        var value = [UInt8](repeating: 0, count: 8 << 20)
        var state: UInt32 = 7
        for i in stride(from: 0, to: value.count, by: 3) {  // every third byte stays zero
            state = state &* 1_664_525 &+ 1_013_904_223
            value[i + 1 < value.count ? i + 1 : i] = UInt8(truncatingIfNeeded: state >> 24)
        }
        #expect(value.contains(0))
        try redis.set(fixture.key("blob"), value)
        let back = try #require(try redis.get(fixture.key("blob")))
        #expect(back.count == value.count)
        #expect(back == value)
        #expect(try redis.integer(["STRLEN", fixture.key("blob")]) == 8 << 20)
    }

    @Test func missingKeyIsNil() throws {
        let fixture = try RedisFixture()
        let redis = try fixture.connection()
        #expect(try redis.get(fixture.key("absent")) == nil)
        #expect(try redis.command(["GET", fixture.key("absent")]) == .null)
    }

    @Test func pipelineReturnsEveryReplyInOrderWithErrorsInPlace() throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let redis = try fixture.connection()
        var commands: [[any RedisArgument]] = (0..<500).map { ["SET", fixture.key("p\($0)"), "value-\($0)"] }
        commands.append(["INCR", fixture.key("p0")])  // not an integer: an error reply in the middle
        commands += (0..<500).map { ["GET", fixture.key("p\($0)")] }
        let replies = try redis.pipeline(commands)
        #expect(replies.count == 1001)
        #expect(replies[0..<500].allSatisfy { $0 == .status("OK") })
        #expect(replies[500].errorMessage?.contains("not an integer") == true)
        for i in 0..<500 { #expect(replies[501 + i].string == "value-\(i)") }
        #expect(try redis.command(["PING"]) == .status("PONG"))  // the connection is still in step
    }

    @Test func serverErrorIsTypedAndNamesTheCommand() throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let redis = try fixture.connection()
        try redis.set(fixture.key("text"), "abc")
        let error = try #require(throws: RedisError.self) { try redis.incr(fixture.key("text")) }
        guard case .server(let message, let command) = error else { Issue.record("expected .server, got \(error)"); return }
        #expect(message.contains("not an integer"))
        #expect(command == "INCRBY \(fixture.key("text"))")
    }

    @Test func closedPortIsConnectionRefusedNamingHostAndPort() throws {
        // Port 1 (tcpmux) is privileged and unused here.
        let endpoint = RedisEndpoint(host: "127.0.0.1", port: 1)
        let error = try #require(throws: RedisError.self) { try RedisConnection(endpoint: endpoint) }
        #expect(error == .connectionRefused(host: "127.0.0.1", port: 1))
        #expect(error.description.contains("127.0.0.1:1"))
    }

    @Test func wrongCredentialsAreATypedAuthenticationError() throws {
        let fixture = try RedisFixture()
        let admin = try fixture.connection()
        let user = "tributary-test-\(UUID().uuidString.prefix(8))"
        try admin.command(["ACL", "SETUSER", user, "on", ">right-password", "~\(fixture.prefix)*", "+@all"])
        defer { _ = try? admin.command(["ACL", "DELUSER", user]) }

        var endpoint = fixture.endpoint
        endpoint.user = user
        endpoint.password = "wrong-password"
        let error = try #require(throws: RedisError.self) { try RedisConnection(endpoint: endpoint) }
        guard case .authenticationFailed(let failedUser, let message) = error else {
            Issue.record("expected .authenticationFailed, got \(error)"); return
        }
        #expect(failedUser == user)
        #expect(message.contains("WRONGPASS"))

        endpoint.password = "right-password"
        let allowed = try RedisConnection(endpoint: endpoint)
        #expect(try allowed.command(["ACL", "WHOAMI"]).string == user)
    }

    @Test func selectedDatabaseIsSeparate() throws {
        let fixture = try RedisFixture()
        var endpoint = fixture.endpoint
        endpoint.database = 3
        let db3 = try RedisConnection(endpoint: endpoint)
        defer { _ = try? db3.del(fixture.key("db")) }
        try db3.set(fixture.key("db"), "three")
        #expect(try db3.get(fixture.key("db")) == Array("three".utf8))
        #expect(try fixture.connection().get(fixture.key("db")) == nil)
    }

    @Test func blockingReadTimesOutThenTheConnectionRecovers() throws {
        let fixture = try RedisFixture()
        // Every command's round trip must fit in the timeout (the block time is added for blocking ones), even on a
        // loaded 2-core machine: 2 s, while the test waits it out only once, for the BLPOP that never returns.
        let redis = try fixture.connection { $0.commandTimeout = .seconds(2) }
        // BLPOP ... 0 blocks forever on the server: only the client's read timeout ends it.
        let error = try #require(throws: RedisError.self) {
            try redis.command(["BLPOP", fixture.key("never"), 0])
        }
        #expect(error == .timeout(host: fixture.endpoint.host, port: fixture.endpoint.port, command: "BLPOP \(fixture.key("never"))"))
        #expect(!redis.isConnected)
        try redis.ping()
        #expect(redis.connectCount == 2)
        // A server-side block shorter than the read timeout is no error: nil.
        #expect(try redis.blpop([fixture.key("never")], block: .milliseconds(50)) == nil)
        #expect(try redis.xread([(fixture.key("stream"), "$")], block: .milliseconds(50)).isEmpty)
    }

    @Test func perCommandTimeoutOverridesTheDefault() throws {
        let fixture = try RedisFixture()
        let redis = try fixture.connection()  // 30 s default
        let error = try #require(throws: RedisError.self) {
            try redis.command(["BLPOP", fixture.key("never"), 0], timeout: .milliseconds(100))
        }
        guard case .timeout = error else { Issue.record("expected .timeout, got \(error)"); return }
    }

    @Test func reconnectsAfterClientKill() throws {
        let fixture = try RedisFixture()
        let admin = try fixture.connection()
        let victim = try fixture.connection()
        let id = try #require(try victim.command(["CLIENT", "ID"]).int)
        #expect(try admin.command(["CLIENT", "KILL", "ID", id]) == .integer(1))

        // Without retry the command that meets the dead socket fails, typed; the next one reconnects.
        let error = try #require(throws: RedisError.self) { try victim.ping() }
        guard case .io(let host, let port, _, _) = error else { Issue.record("expected .io, got \(error)"); return }
        #expect(host == fixture.endpoint.host && port == fixture.endpoint.port)
        try victim.ping()
        #expect(victim.connectCount == 2)

        // With retryAfterConnectionLoss the caller never sees the loss.
        let retrying = try fixture.connection { $0.retryAfterConnectionLoss = true }
        let retryingID = try #require(try retrying.command(["CLIENT", "ID"]).int)
        try admin.command(["CLIENT", "KILL", "ID", retryingID])
        #expect(try retrying.command(["CLIENT", "ID"]).int != retryingID)
        #expect(retrying.connectCount == 2)
    }

    @Test func hashStreamTTLAndScanHelpers() throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let redis = try fixture.connection()

        #expect(try redis.hset(fixture.key("h"), fields: ["a": [UInt8]([0, 1, 2]), "b": "text"]) == 2)
        #expect(try redis.hgetall(fixture.key("h")) == ["a": [0, 1, 2], "b": Array("text".utf8)])
        #expect(try redis.hget(fixture.key("h"), field: "b") == Array("text".utf8))

        let first = try redis.xadd(fixture.key("s"), fields: ["step": 1, "loss": "2.5"])
        let second = try redis.xadd(fixture.key("s"), fields: ["step": 2], maxLength: 1000)
        #expect(try redis.xrange(fixture.key("s")).map(\.id) == [first, second])
        let newest = try redis.xrevrange(fixture.key("s"), count: 1)
        #expect(newest == [RedisStreamEntry(id: second, fields: ["step": Array("2".utf8)])])
        let read = try redis.xread([(fixture.key("s"), first)])
        #expect(read[fixture.key("s")]?.map(\.id) == [second])

        try redis.set(fixture.key("ttl"), "x", ttl: .seconds(100))
        let pttl = try #require(try redis.command(["PTTL", fixture.key("ttl")]).int)
        #expect(pttl > 0 && pttl <= 100_000)
        #expect(try redis.set(fixture.key("ttl"), "y", onlyIfAbsent: true) == false)
        #expect(try redis.expire(fixture.key("h"), after: .seconds(50)))
        #expect(try redis.expire(fixture.key("absent"), after: .seconds(50)) == false)

        #expect(try redis.incr(fixture.key("n")) == 1)
        #expect(try redis.incr(fixture.key("n"), by: 41) == 42)
        #expect(Set(try redis.scanKeys(matching: fixture.prefix + "*")) == Set(["h", "s", "ttl", "n"].map(fixture.key)))
        #expect(try redis.del(fixture.key("n"), fixture.key("absent")) == 1)
        #expect(try redis.wait(numReplicas: 0, timeoutMs: 10) >= 0)
    }
}

extension RedisConnection {
    func integer(_ arguments: [any RedisArgument]) throws -> Int64? { try command(arguments).int }
}
