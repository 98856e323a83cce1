import Foundation
import Store
import Testing

@Suite struct RedisClientTests {
    @Test func commandsPipelinesAndHelpersRunOnTheClientThread() async throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let client = RedisClient(endpoint: fixture.endpoint)
        defer { client.close() }
        try await client.connect()

        let bytes: [UInt8] = [0, 255, 0, 1]
        #expect(try await client.command(["SET", fixture.key("a"), bytes]) == .status("OK"))
        #expect(try await client.get(fixture.key("a")) == bytes)
        let replies = try await client.pipeline([["INCR", fixture.key("n")], ["INCR", fixture.key("n")], ["GET", fixture.key("n")]])
        #expect(replies == [.integer(1), .integer(2), .string(Array("2".utf8))])
        // Every body runs on the same dedicated thread.
        var threads: Set<UInt> = []
        for _ in 0..<3 { threads.insert(try await client.withConnection { _ in UInt(bitPattern: Int(bitPattern: pthread_self())) }) }
        #expect(threads.count == 1)
    }

    @Test func connectReportsRefusedPort() async throws {
        let client = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: 1))
        defer { client.close() }
        await #expect(throws: RedisError.connectionRefused(host: "127.0.0.1", port: 1)) { try await client.connect() }
    }

    @Test func closedClientRefusesWork() async throws {
        let fixture = try RedisFixture()
        let client = RedisClient(endpoint: fixture.endpoint)
        try await client.connect()
        client.close()
        await #expect(throws: RedisError.closed(host: fixture.endpoint.host, port: fixture.endpoint.port)) {
            try await client.command(["PING"])
        }
    }

    @Test func blockingClientWaitsWhileAnotherServes() async throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let blocking = RedisClient(endpoint: fixture.endpoint)
        let client = RedisClient(endpoint: fixture.endpoint)
        defer { blocking.close(); client.close() }
        try await blocking.connect()

        async let popped = blocking.blpop([fixture.key("queue")], block: .seconds(20))
        // Push once the BLPOP is parked on the server (a blocked client shows in CLIENT LIST as cmd=blpop).
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let list = try await client.command(["CLIENT", "LIST"]).string ?? ""
            if list.contains("cmd=blpop") { break }
        }
        try await client.command(["RPUSH", fixture.key("queue"), [UInt8]([9, 0, 9])])
        let result = try await popped
        #expect(result?.key == fixture.key("queue"))
        #expect(result?.value == [9, 0, 9])
    }

    @Test func clientRecoversFromClientKill() async throws {
        let fixture = try RedisFixture()
        var options = RedisConnection.Options()
        options.retryAfterConnectionLoss = true
        let client = RedisClient(endpoint: fixture.endpoint, options: options)
        defer { client.close() }
        let id = try #require(try await client.command(["CLIENT", "ID"]).int)
        try fixture.connection().command(["CLIENT", "KILL", "ID", id])
        let newID = try #require(try await client.command(["CLIENT", "ID"]).int)
        #expect(newID != id)
    }
}
