import Store
import Testing

@Suite struct RedisEndpointTests {
    @Test func parsesFullURL() throws {
        let e = try RedisEndpoint(url: "redis://learner:s%40cret@redis.example:6400/2")
        #expect(e == RedisEndpoint(host: "redis.example", port: 6400, user: "learner", password: "s@cret", database: 2))
        #expect(e.description == "redis://learner:***@redis.example:6400/2")
    }

    @Test func parsesDefaultsAndShortForms() throws {
        #expect(try RedisEndpoint(url: RedisEndpoint.defaultURL) == RedisEndpoint(host: "127.0.0.1", port: 6389))
        #expect(try RedisEndpoint(url: "redis://cache") == RedisEndpoint(host: "cache", port: 6379))
        #expect(try RedisEndpoint(url: "redis://:pw@h:1/") == RedisEndpoint(host: "h", port: 1, password: "pw"))
        #expect(try RedisEndpoint(url: "redis://[::1]:7000") == RedisEndpoint(host: "::1", port: 7000))
    }

    @Test(arguments: [
        ("http://h:1", "scheme"), ("redis://h:notaport", "port"), ("redis://h:70000", "port"),
        ("redis://h:1/x", "database"), ("redis://:1", "host"), ("redis://u:%zz@h", "password"),
    ])
    func badURLNamesThePart(url: String, part: String) {
        #expect {
            try RedisEndpoint(url: url)
        } throws: { error in
            guard case .invalidURL(let badURL, let badPart, _) = error as? RedisError else { return false }
            return badURL == url && badPart == part
        }
    }
}
