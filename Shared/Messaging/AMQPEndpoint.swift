import Foundation

/// Where and how to reach a RabbitMQ broker: `amqp://user:password@host:port/vhost`.
public struct AMQPEndpoint: Sendable, Equatable, CustomStringConvertible {
    public static let defaultURL = "amqp://guest:guest@127.0.0.1:5682/"
    public static let environmentVariable = "TRIBUTARY_AMQP_URL"

    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String
    /// Seconds; librabbitmq sends and checks heartbeats only inside its calls, which the owning thread makes continually.
    public var heartbeatSeconds: Int = 10

    public init(host: String = "127.0.0.1", port: Int = 5682, user: String = "guest", password: String = "guest", vhost: String = "/") {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost
    }

    /// Parses `amqp://[user[:password]@]host[:port][/vhost]`; an empty path means vhost `/`, `%2f` is decoded.
    public init(url: String) throws {
        guard let components = URLComponents(string: url) else { throw AMQPError.invalidURL(url, reason: "not a URL") }
        guard components.scheme == "amqp" else {
            throw AMQPError.invalidURL(url, reason: "scheme must be amqp, found \(components.scheme ?? "none")")
        }
        guard let host = components.host, !host.isEmpty else { throw AMQPError.invalidURL(url, reason: "missing host") }
        self.init(host: host, port: components.port ?? 5672,
                  user: components.user?.removingPercentEncoding ?? "guest",
                  password: components.password?.removingPercentEncoding ?? "guest")
        let path = components.percentEncodedPath
        if path.isEmpty || path == "/" {
            vhost = "/"
        } else {
            vhost = String(path.dropFirst()).removingPercentEncoding ?? String(path.dropFirst())
        }
    }

    /// `TRIBUTARY_AMQP_URL` when set, else the private broker of scripts/brokers.sh.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AMQPEndpoint {
        try AMQPEndpoint(url: environment[environmentVariable] ?? defaultURL)
    }

    public var description: String { "amqp://\(user)@\(host):\(port)/\(vhost == "/" ? "" : vhost)" }
}
