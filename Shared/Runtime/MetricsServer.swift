import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP server for `GET /metrics`, on a thread of its own (blocking accept never touches the cooperative pool).
public final class MetricsServer: Sendable {
    public let port: Int
    private let socketDescriptor: Int32

    /// Port 0 takes any free port; the chosen one is in `port`.
    public init(port requested: Int, render: @escaping @Sendable () -> [UInt8]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MetricsEndpointError(port: requested, problem: "socket() failed, errno \(errno)") }
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
            throw MetricsEndpointError(port: requested, problem: String(cString: strerror(code)))
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
                // a client that connects and sends nothing may hold the thread for at most 2 s
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = read(client, &buffer, buffer.count)
                let request = String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
                let body: [UInt8]
                let status: String
                if request.hasPrefix("GET /metrics") || request.hasPrefix("GET / ") {
                    status = "200 OK"
                    body = render()
                } else {
                    status = "404 Not Found"
                    body = Array("try /metrics\n".utf8)
                }
                let response = Array("HTTP/1.1 \(status)\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
                var sent = 0
                while sent < response.count {
                    let n = response[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    sent += n
                }
                Glibc.close(client)
            }
        }
        thread.name = "metrics-http"
        thread.start()
    }

    public func close() { shutdown(socketDescriptor, Int32(SHUT_RDWR)) }
}

public struct MetricsEndpointError: Error, CustomStringConvertible {
    public var port: Int
    public var problem: String
    public var description: String { "metrics endpoint on port \(port): \(problem)" }
}
