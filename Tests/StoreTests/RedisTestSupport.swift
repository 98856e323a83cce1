import Foundation
import Store

/// A connection to the test Redis (scripts/brokers.sh, or TRIBUTARY_REDIS_URL) and a key prefix of its own.
struct RedisFixture {
    let endpoint: RedisEndpoint
    let prefix: String

    init() throws {
        endpoint = try RedisEndpoint.fromEnvironment()
        prefix = "tributary-test:\(UUID().uuidString.prefix(8)):"
    }

    func key(_ name: String) -> String { prefix + name }

    func connection(_ configure: (inout RedisConnection.Options) -> Void = { _ in }) throws -> RedisConnection {
        var options = RedisConnection.Options()
        configure(&options)
        return try RedisConnection(endpoint: endpoint, options: options)
    }

    /// Deletes every key under the prefix.
    func cleanUp() {
        guard let connection = try? connection() else { return }
        if let keys = try? connection.scanKeys(matching: prefix + "*") { _ = try? connection.del(keys) }
    }
}
