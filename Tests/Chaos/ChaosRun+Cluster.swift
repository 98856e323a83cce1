import Foundation
import TestSupport
import Wire

extension ChaosRun {
    /// Fault 14: kill -9 of the cluster node that holds the learner's AMQP connection (every client tries the list from
    /// its first node, so that node also holds the quorum queues' leaders, which the learner's declarations placed
    /// there). The fault is over at the kill; the checks say which node it was and how long until the learner held a
    /// connection to another node.
    func killLearnersNode(_ start: Injection) async throws -> Injection {
        var injection = start
        let brokers = harness.brokers
        let ports = brokers.clusterNodes.map(\.amqpPort)
        guard let learner = fleet.process("learner") else { throw ChaosError("fault 14: the learner is not running") }
        let held = try Self.brokerPorts(of: learner.pid, among: ports)
        guard let port = held.first, let node = brokers.clusterNodes.first(where: { $0.amqpPort == port }) else {
            throw ChaosError("fault 14: the learner (pid \(learner.pid)) holds no connection to a cluster node (AMQP ports \(ports))")
        }
        try brokers.killClusterNode(node)
        injection.endedMs = WallClock.nowMs()
        ChaosHarness.progress("\(names.run): killed RabbitMQ node \(node.name) (AMQP port \(port)), the learner's")
        injection.checks.append(ChaosCheck(name: "killed the learner's broker node", passed: true,
                                           detail: "\(node.name) (AMQP port \(port)) of \(brokers.clusterNodes.count)"))
        var now: [Int] = []
        do {
            try await waitUntil("the learner to reconnect to another cluster node", within: recipe.stallSeconds) {
                guard let process = self.fleet.process("learner") else { return false }
                now = (try? Self.brokerPorts(of: process.pid, among: ports)) ?? []
                return now.contains { $0 != port }
            }
            let seconds = Double(WallClock.nowMs() - injection.endedMs) / 1000
            injection.checks.append(ChaosCheck(name: "the learner reconnected to another node", passed: true,
                                               detail: "to AMQP port \(now.map(String.init).joined(separator: ",")) after \(String(format: "%.1f", seconds)) s"))
        } catch {
            injection.checks.append(ChaosCheck(name: "the learner reconnected to another node", passed: false, detail: "\(error)"))
        }
        try await restartAfterRecovery(node, killedMs: injection.endedMs, &injection)
        return injection
    }

    /// Once the learner stepped after the kill (or gave up waiting), the node is started again, as an operator would:
    /// until it is back, a quorum queue keeps the dead node's consumers as suspected down and counts them, so the end of
    /// the run could not tell when its consumers are gone. The run trains on meanwhile.
    func restartAfterRecovery(_ node: ClusterNode, killedMs: Int64, _ injection: inout Injection) async throws {
        let deadline = ContinuousClock.now + .seconds(recipe.stallSeconds)
        while await firstStepAfter(killedMs) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        let brokers = harness.brokers
        let members = try await offPool("restart-nodes") { try brokers.restartClusterNodes() }
        injection.checks.append(ChaosCheck(name: "the killed node rejoined its cluster", passed: members.contains(node.name),
                                           detail: "running members: \(members.split(whereSeparator: \.isWhitespace).joined())"))
    }

    /// The broker ports among `ports` that process `pid` holds established TCP connections to (from `ss -tnp`).
    static func brokerPorts(of pid: pid_t, among ports: [Int]) throws -> [Int] {
        let (status, output) = try runCommand(["ss", "-tnpH", "state", "established"])
        guard status == 0 else { throw ChaosError("ss -tnpH state established exited \(status): \(output)") }
        var found: [Int] = []
        for line in output.split(separator: "\n") where line.contains("pid=\(pid),") {
            // Recv-Q Send-Q Local:Port Peer:Port Process
            let fields = line.split(whereSeparator: \.isWhitespace)
            guard fields.count >= 4, let colon = fields[3].lastIndex(of: ":"), let port = Int(fields[3][fields[3].index(after: colon)...]) else { continue }
            if ports.contains(port), !found.contains(port) { found.append(port) }
        }
        return found
    }
}
