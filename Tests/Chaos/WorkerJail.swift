import Foundation
import TestSupport

/// A network namespace joined to the host by its own veth pair, for a rollout worker that the harness can cut off from
/// both brokers (the host end's link down: packets vanish, no reset, as when a cable is pulled) and reconnect.
/// Names carry the harness's pid, so a later harness removes what a killed one left. Needs root.
public final class WorkerJail: Sendable {
    public let namespace: String
    let hostLink: String
    /// The host end's address: the brokers listen there too (ChaosBrokers).
    public let hostAddress: String
    let jailAddress: String
    static let prefix = "trib-chaos-"

    init(owner: pid_t, subnet: Int) {
        namespace = "\(Self.prefix)\(owner)"
        hostLink = "tch\(owner)"
        let base = (subnet % 64) * 4
        hostAddress = "10.213.\(owner % 250).\(base + 1)"
        jailAddress = "10.213.\(owner % 250).\(base + 2)"
    }

    /// `ip netns exec NAMESPACE`: what the jailed worker is launched with.
    public var wrapper: [String] { ["/usr/sbin/ip", "netns", "exec", namespace] }

    public static func create() throws -> WorkerJail {
        removeAbandoned()
        let existing = (try? runCommand(["ip", "-4", "addr"]))?.output ?? ""
        guard let jail = (0..<64).lazy.map({ WorkerJail(owner: getpid(), subnet: $0) }).first(where: { !existing.contains("inet \($0.hostAddress)/") }) else {
            throw ChaosError("no free /30 for the worker jail in 10.213.\(getpid() % 250).0/24")
        }
        jail.remove()
        let inside = ["ip", "netns", "exec", jail.namespace]
        let jailLink = "tcn\(getpid())"
        for command in [["ip", "netns", "add", jail.namespace],
                        ["ip", "link", "add", jail.hostLink, "type", "veth", "peer", "name", jailLink],
                        ["ip", "link", "set", jailLink, "netns", jail.namespace],
                        ["ip", "addr", "add", "\(jail.hostAddress)/30", "dev", jail.hostLink],
                        ["ip", "link", "set", jail.hostLink, "up"],
                        inside + ["ip", "addr", "add", "\(jail.jailAddress)/30", "dev", jailLink],
                        inside + ["ip", "link", "set", jailLink, "up"],
                        inside + ["ip", "link", "set", "lo", "up"]] {
            let (status, output) = try runCommand(command)
            guard status == 0 else {
                jail.remove()
                throw ChaosError("\(command.joined(separator: " ")) exited \(status): \(output)")
            }
        }
        return jail
    }

    /// Cuts the jail off: the host end of its veth goes down.
    public func cut() throws { try link("down") }

    public func reconnect() throws { try link("up") }

    private func link(_ state: String) throws {
        let (status, output) = try runCommand(["ip", "link", "set", hostLink, state])
        guard status == 0 else { throw ChaosError("ip link set \(hostLink) \(state): \(output)") }
    }

    /// Deletes the namespace (which deletes its veth end, and with it the pair).
    public func remove() {
        _ = try? runCommand(["ip", "netns", "delete", namespace])
        _ = try? runCommand(["ip", "link", "delete", hostLink])
    }

    /// Jails of harnesses that are no longer running.
    static func removeAbandoned() {
        let listed = (try? runCommand(["ip", "netns", "list"]))?.output ?? ""
        for line in listed.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix), let owner = pid_t(name.dropFirst(prefix.count)), owner != getpid(), kill(owner, 0) != 0 else { continue }
            _ = try? runCommand(["ip", "netns", "delete", name])
            _ = try? runCommand(["ip", "link", "delete", "tch\(owner)"])
        }
    }
}
