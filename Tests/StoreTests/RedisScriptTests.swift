import Foundation
import Store
import Testing

@Suite struct RedisScriptTests {
    @Test func sha1MatchesKnownVectorsAndRedis() throws {
        #expect(RedisScript("abc").sha1 == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(RedisScript("").sha1 == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        let long = RedisScript(String(repeating: "-- padding to span several SHA-1 blocks\n", count: 50) + "return 1")
        let fixture = try RedisFixture()
        #expect(try fixture.connection().load(long) == long.sha1)
    }

    /// Bumps the version, then writes the related key and the log under that version, all in one step.
    static func versionBump(_ tag: String) -> RedisScript {
        RedisScript("""
            -- \(tag): unique source, so the first EVALSHA meets NOSCRIPT and falls back to EVAL
            local v = redis.call('INCR', KEYS[1])
            redis.call('SET', KEYS[2], ARGV[1] .. ':' .. v)
            redis.call('RPUSH', KEYS[3], v)
            return v
            """)
    }

    @Test func evalFallsBackToSourceOnNoScript() throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let redis = try fixture.connection()
        let script = Self.versionBump(fixture.prefix)
        #expect(try redis.command(["SCRIPT", "EXISTS", script.sha1]) == .array([.integer(0)]))
        let keys = ["version", "latest", "log"].map(fixture.key)
        #expect(try redis.eval(script, keys: keys, args: ["a"]) == .integer(1))
        #expect(try redis.command(["SCRIPT", "EXISTS", script.sha1]) == .array([.integer(1)]))
        #expect(try redis.eval(script, keys: keys, args: ["a"]) == .integer(2))
    }

    @Test func versionBumpIsAtomicUnderConcurrentCallers() async throws {
        let fixture = try RedisFixture()
        defer { fixture.cleanUp() }
        let script = Self.versionBump(fixture.prefix)
        let keys = ["version", "latest", "log"].map(fixture.key)
        let clients = (0..<4).map { _ in RedisClient(endpoint: fixture.endpoint) }
        let perCaller = 40

        // 4 clients (4 threads, 4 connections) × 3 tasks each, every task bumping in a loop.
        let versions = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for (c, client) in clients.enumerated() {
                for t in 0..<3 {
                    group.addTask {
                        var seen: [Int64] = []
                        for _ in 0..<perCaller {
                            let reply = try await client.eval(script, keys: keys, args: ["writer-\(c)-\(t)"])
                            seen.append(try #require(reply.int))
                        }
                        return seen
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let total = 4 * 3 * perCaller
        #expect(versions.sorted() == (1...Int64(total)).map { $0 })  // every caller got a distinct version

        let redis = try fixture.connection()
        #expect(try redis.get(keys[0]).map { String(decoding: $0, as: UTF8.self) } == "\(total)")
        let latest = try #require(try redis.get(keys[1]).map { String(decoding: $0, as: UTF8.self) })
        #expect(latest.hasSuffix(":\(total)"))
        let log = try redis.command(["LRANGE", keys[2], 0, -1]).array?.compactMap(\.int)
        #expect(log == (1...Int64(total)).map { $0 })  // written in version order: no interleaving
        clients.forEach { $0.close() }
    }
}
