import Foundation

/// A Prometheus server (Debian's `prometheus` package) run as a child of the test: on a free loopback port, with a
/// configuration and a TSDB in a folder of the test's own, never as the system service. Read through its HTTP API.
public final class PrometheusServer: Sendable {
    /// Where Debian's package puts the executable.
    public static let executable = URL(fileURLWithPath: "/usr/bin/prometheus")
    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: executable.path) }

    public let port: Int
    public let directory: URL
    public let process: LaunchedProcess

    /// Writes `configuration` to `directory/prometheus.yml` and starts Prometheus on it, logging to
    /// `directory/prometheus.log`; relative paths in the configuration (file_sd files) resolve against `directory`.
    public init(configuration: String, directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configFile = directory.appendingPathComponent("prometheus.yml")
        try Data(configuration.utf8).write(to: configFile)
        port = try freeLoopbackPorts(1)[0]
        self.directory = directory
        process = try LaunchedProcess(Self.executable.lastPathComponent, in: Self.executable.deletingLastPathComponent(),
                                      arguments: ["--config.file=\(configFile.path)", "--web.listen-address=127.0.0.1:\(port)",
                                                  "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)"],
                                      logPath: directory.appendingPathComponent("prometheus.log").path, name: "prometheus")
    }

    deinit { stop() }

    /// SIGTERM, then SIGKILL if it is still running 10 s later. Blocks the thread.
    public func stop() {
        process.signal(SIGTERM)
        if process.blockingWaitForExit(within: 10) == nil {
            process.signal(SIGKILL)
            _ = process.blockingWaitForExit(within: 10)
        }
    }

    /// `GET /api/v1/targets`: the active targets, each with its labels and `health` ("up", "down", "unknown").
    public func activeTargets() throws -> [ScrapeTarget] {
        let data = try api("/api/v1/targets?state=active")["activeTargets"] as? [[String: Any]] ?? []
        return data.map { target in
            ScrapeTarget(labels: target["labels"] as? [String: String] ?? [:], scrapeURL: target["scrapeUrl"] as? String ?? "",
                         health: target["health"] as? String ?? "", lastError: target["lastError"] as? String ?? "")
        }
    }

    /// `GET /api/v1/query`: an instant query's vector, each sample's labels and value.
    public func query(_ promQL: String) throws -> [Sample] {
        let data = try api("/api/v1/query?query=\(Self.percentEncoded(promQL))")
        let result = data["result"] as? [[String: Any]] ?? []
        return result.compactMap { sample in
            guard let pair = sample["value"] as? [Any], pair.count == 2, let text = pair[1] as? String, let value = Double(text) else { return nil }
            return Sample(labels: sample["metric"] as? [String: String] ?? [:], value: value)
        }
    }

    /// The `data` of an API answer whose `status` is "success"; throws with Prometheus's error otherwise.
    func api(_ path: String) throws -> [String: Any] {
        let body = try Self.body(of: httpGet(port: port, path: path))
        guard let answer = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw HTTPGetFailed(problem: "prometheus \(path): not a JSON object: \(body.prefix(200))")
        }
        guard answer["status"] as? String == "success", let data = answer["data"] as? [String: Any] else {
            throw HTTPGetFailed(problem: "prometheus \(path): \(answer["error"] ?? body.prefix(200))")
        }
        return data
    }

    /// The body of an HTTP/1.1 response, its chunks joined when it came chunked (Go's server chunks answers over 2 KB).
    static func body(of response: String) throws -> String {
        let bytes = Array(response.utf8)
        guard let headEnd = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else {
            throw HTTPGetFailed(problem: "no HTTP response: \(response.prefix(200))")
        }
        let head = String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self).lowercased()
        var rest = bytes[headEnd.upperBound...]
        guard head.contains("transfer-encoding: chunked") else { return String(decoding: rest, as: UTF8.self) }
        var body: [UInt8] = []
        // each chunk: its size in hex (maybe with extensions after ';'), CRLF, the bytes, CRLF; size 0 ends the body
        while let line = rest.firstRange(of: Array("\r\n".utf8)),
              let sizeField = String(decoding: rest[..<line.lowerBound], as: UTF8.self).split(separator: ";").first,
              let size = Int(sizeField.trimmingCharacters(in: .whitespaces), radix: 16), size > 0,
              line.upperBound + size <= rest.endIndex {
            body += rest[line.upperBound..<line.upperBound + size]
            rest = rest[(line.upperBound + size)...].dropFirst(2)
        }
        return String(decoding: body, as: UTF8.self)
    }

    /// Everything but unreserved characters percent-encoded (PromQL's `{`, `"`, `=`, `+` included).
    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? text
    }

    /// One target Prometheus scrapes.
    public struct ScrapeTarget: Sendable {
        public var labels: [String: String]
        public var scrapeURL: String
        public var health: String
        public var lastError: String
    }

    /// One sample of an instant query.
    public struct Sample: Sendable {
        public var labels: [String: String]
        public var value: Double
    }
}
