#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a Redis lives and how to log in: `redis://[user:password@]host:port[/db]`.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public static let defaultURL = "redis://127.0.0.1:6389"
    public static let environmentVariable = "TRIBUTARY_REDIS_URL"

    public var host: String
    public var port: Int
    /// ACL user for `AUTH user password`; nil means password-only AUTH (or none).
    public var user: String?
    public var password: String?
    public var database: Int

    public init(host: String = "127.0.0.1", port: Int = 6389, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host; self.port = port; self.user = user; self.password = password; self.database = database
    }

    /// `TRIBUTARY_REDIS_URL` when set and not empty, else `redis://127.0.0.1:6389`.
    public static func fromEnvironment() throws(RedisError) -> RedisEndpoint {
        if let url = getenv(environmentVariable).map({ String(cString: $0) }), !url.isEmpty {
            return try RedisEndpoint(url: url)
        }
        return try RedisEndpoint(url: defaultURL)
    }

    /// Parses `redis://[user:password@]host[:port][/db]`; user and password may be %-encoded.
    public init(url: String) throws(RedisError) {
        func bad(_ part: String, _ reason: String) -> RedisError { .invalidURL(url: url, part: part, reason: reason) }
        let scheme = "redis://"
        guard url.hasPrefix(scheme) else { throw bad("scheme", "must start with \(scheme)") }
        var rest = Substring(url.dropFirst(scheme.count))

        var user: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let u = credentials[..<colon], p = credentials[credentials.index(after: colon)...]
                guard let du = Self.percentDecoded(u) else { throw bad("user", "bad %-escape") }
                guard let dp = Self.percentDecoded(p) else { throw bad("password", "bad %-escape") }
                user = du.isEmpty ? nil : du
                password = dp
            } else {
                guard let dp = Self.percentDecoded(credentials) else { throw bad("password", "bad %-escape") }
                password = dp  // redis://secret@host is a password without a user, as redis-cli reads it
            }
        }

        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else { throw bad("database", "'\(path)' is not a database number") }
                database = db
            }
        }

        var host = rest, port = 6379
        if rest.hasPrefix("[") {  // [::1]:6379
            guard let close = rest.firstIndex(of: "]") else { throw bad("host", "unclosed '['") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw bad("port", "expected ':' after ']'") }
                rest = rest.dropFirst()
                guard let p = Int(rest), (1...65535).contains(p) else { throw bad("port", "'\(rest)' is not a port number") }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            let portText = rest[rest.index(after: colon)...]
            guard let p = Int(portText), (1...65535).contains(p) else { throw bad("port", "'\(portText)' is not a port number") }
            port = p
        }
        guard !host.isEmpty else { throw bad("host", "missing") }
        self.init(host: String(host), port: port, user: user, password: password, database: database)
    }

    /// The URL without the password.
    public var description: String {
        let credentials = user.map { "\($0):***@" } ?? (password == nil ? "" : ":***@")
        let h = host.contains(":") ? "[\(host)]" : host
        return "redis://\(credentials)\(h):\(port)" + (database == 0 ? "" : "/\(database)")
    }

    private static func percentDecoded(_ s: Substring) -> String? {
        var out: [UInt8] = []
        var bytes = s.utf8.makeIterator()
        while let b = bytes.next() {
            if b == UInt8(ascii: "%") {
                guard let h = bytes.next(), let l = bytes.next(),
                      let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
