import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The RabbitMQ management plugin's HTTP API, as an administrator: users and their permissions. HTTP rather than
/// rabbitmqctl because it works from wherever the CLI runs (rabbitmqctl needs the broker's host and Erlang cookie).
struct RabbitMQManagement {
    var base: URL
    var user: String
    var password: String

    func put(_ path: [String], _ body: [String: String]) async throws {
        _ = try await send("PUT", path, body: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
    }

    /// Deletes; a missing resource (404) is fine when `allowMissing`. Returns whether there was one.
    @discardableResult
    func delete(_ path: [String], allowMissing: Bool = true) async throws -> Bool {
        do {
            _ = try await send("DELETE", path, body: nil)
            return true
        } catch let error as ManagementError where allowMissing && error.status == 404 {
            return false
        }
    }

    private func send(_ method: String, _ path: [String], body: Data?) async throws -> Data {
        // Each segment escaped on its own: the default vhost is "/" (%2F).
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        let segments = path.map { $0.addingPercentEncoding(withAllowedCharacters: unreserved) ?? $0 }
        let text = base.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/api/" + segments.joined(separator: "/")
        guard let url = URL(string: text) else { throw ManagementError(what: "\(method) \(text)", status: 0, detail: "not a URL") }
        var request = URLRequest(url: url, timeoutInterval: 30)
        request.httpMethod = method
        request.setValue("Basic " + Data("\(user):\(password)".utf8).base64EncodedString(), forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = body
        }
        let what = "\(method) \(base.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")))/api/\(segments.joined(separator: "/"))"
        let data: Data, response: URLResponse
        do { (data, response) = try await URLSession.shared.data(for: request) } catch {
            throw ManagementError(what: what, status: 0, detail: "\(error.localizedDescription) (is the rabbitmq_management plugin on, and --management-url right?)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            throw ManagementError(what: what, status: status, detail: String(decoding: data.prefix(500), as: UTF8.self))
        }
        return data
    }
}

/// A management API request that failed: which, the HTTP status (0: no answer) and the broker's words.
struct ManagementError: Error, CustomStringConvertible {
    var what: String
    var status: Int
    var detail: String
    var description: String { "RabbitMQ management \(what): \(status == 0 ? "no answer" : "HTTP \(status)"): \(detail)" }
}
