import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Counters and gauges of one process, in Prometheus text format.
public final class MetricsRegistry: Sendable {
    private struct Metric {
        var help: String
        var kind: String
        var value: Double
    }

    private let metrics = Mutex<[String: Metric]>([:])
    private let labels: String

    public init(labels: [String: String]) {
        self.labels = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",")
    }

    public func increment(_ name: String, by amount: Double = 1, help: String = "") {
        metrics.withLock { $0[name, default: Metric(help: help, kind: "counter", value: 0)].value += amount }
    }

    public func set(_ name: String, _ value: Double, help: String = "") {
        metrics.withLock { $0[name] = Metric(help: help, kind: "gauge", value: value) }
    }

    public func value(_ name: String) -> Double { metrics.withLock { $0[name]?.value ?? 0 } }

    public func render() -> String {
        metrics.withLock { metrics in
            metrics.keys.sorted().map { name in
                let metric = metrics[name]!
                let full = "tributary_\(name)"
                return "# HELP \(full) \(metric.help.isEmpty ? name : metric.help)\n# TYPE \(full) \(metric.kind)\n\(full){\(labels)} \(metric.value)\n"
            }.joined()
        }
    }
}

/// A tiny HTTP server for `GET /metrics`, on a thread of its own (blocking accept never touches the cooperative pool).
public final class MetricsServer: Sendable {
    public let port: Int
    private let socketDescriptor: Int32

    /// Port 0 takes any free port; the chosen one is in `port`.
    public init(port requested: Int, registry: MetricsRegistry) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SettingsError(problem: "metrics: socket() failed, errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(requested).bigEndian)
        address.sin_addr = in_addr(s_addr: INADDR_ANY)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw SettingsError(problem: "metrics: cannot listen on port \(requested): \(String(cString: strerror(code)))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: actual.sin_port))
        socketDescriptor = fd
        let thread = Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { if errno == EINTR { continue } else { return } }
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = read(client, &buffer, buffer.count)
                let request = String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
                let body: String
                let status: String
                if request.hasPrefix("GET /metrics") || request.hasPrefix("GET / ") {
                    status = "200 OK"
                    body = registry.render()
                } else {
                    status = "404 Not Found"
                    body = "try /metrics\n"
                }
                let response = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
                _ = response.withCString { send(client, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                Glibc.close(client)
            }
        }
        thread.name = "metrics-http"
        thread.start()
    }

    public func close() { shutdown(socketDescriptor, Int32(SHUT_RDWR)) }
}
