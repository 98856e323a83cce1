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
    /// One URL: a comma separates the URLs of a list (`list(_:)`), so a comma in a password is written `%2C`.
    public init(url: String) throws {
        guard !url.contains(",") else {
            throw AMQPError.invalidURL(url, reason: "a comma separates the URLs of a list, and one URL is expected here (write a comma in a password as %2C)")
        }
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

    /// Parses `amqp.url`: one URL, or the URLs of a cluster's nodes separated by commas
    /// (`amqp://u:p@10.0.0.1:5672/,amqp://u:p@10.0.0.2:5672/`; blanks around a comma are ignored). A client tries them
    /// in order on connect and on every reconnect. Every URL of a list must log in as the same user on the same vhost
    /// (they are one cluster, and RabbitMQ checks a message's user_id against the login), and none may repeat another.
    /// A bad list is refused naming the bad entry.
    public static func list(_ text: String) throws -> [AMQPEndpoint] {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        var endpoints: [AMQPEndpoint] = []
        for (index, entry) in entries.enumerated() {
            func refuse(_ reason: String) -> AMQPError {
                .invalidURLList(entry: index + 1, of: entries.count, url: entry, reason: reason)
            }
            guard !entry.isEmpty else { throw refuse("empty (a stray comma?)") }
            let endpoint: AMQPEndpoint
            do {
                endpoint = try AMQPEndpoint(url: entry)
            } catch let AMQPError.invalidURL(_, reason) {
                throw refuse(reason)
            }
            if let first = endpoints.first, (endpoint.user, endpoint.vhost) != (first.user, first.vhost) {
                throw refuse("logs in as '\(endpoint.user)' on vhost '\(endpoint.vhost)', entry 1 as '\(first.user)' on '\(first.vhost)': "
                             + "every broker of a list must take the same user and vhost")
            }
            if let earlier = endpoints.firstIndex(where: { ($0.host, $0.port) == (endpoint.host, endpoint.port) }) {
                throw refuse("repeats entry \(earlier + 1) (\(endpoint.host):\(endpoint.port))")
            }
            endpoints.append(endpoint)
        }
        return endpoints
    }

    /// `TRIBUTARY_AMQP_URL` when set, else the private broker of scripts/brokers.sh.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AMQPEndpoint {
        try AMQPEndpoint(url: environment[environmentVariable] ?? defaultURL)
    }

    public var description: String { "amqp://\(user)@\(host):\(port)/\(vhost == "/" ? "" : vhost)" }

    /// A list as `amqp.url` shows it, without passwords.
    public static func describe(_ endpoints: [AMQPEndpoint]) -> String { endpoints.map(\.description).joined(separator: ",") }
}
