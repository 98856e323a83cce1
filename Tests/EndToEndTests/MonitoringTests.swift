import Foundation
import Runtime
import TestSupport
import Testing

/// Prometheus from Debian's package, on compose/prometheus's configuration made local, scraping a real run: every
/// role's /metrics is a target Prometheus finds up, and the series each role exports are in its database.
@Suite("Monitoring end to end", .serialized)
struct MonitoringTests {
    /// compose/prometheus/prometheus.yml, the configuration the compose deployment loads.
    static let composeConfiguration = repositoryRoot.appendingPathComponent("compose/prometheus/prometheus.yml")

    /// For each role, series it exports that a few steps of a run make positive (histograms by their `_count`).
    static let namedSeries: [String: [String]] = [
        "learner": ["tributary_step", "tributary_learner_step_seconds_count"],
        "broadcaster": ["tributary_checkpoints_broadcast_total", "tributary_checkpoint_broadcast_seconds_count"],
        "rollout": ["tributary_rollout_groups_total", "tributary_generated_tokens_total"],
        "reward": ["tributary_scored_groups_total"],
        "validator": ["tributary_validation_groups_total"],
    ]

    @Test(.enabled(if: PrometheusServer.isInstalled, "Debian's prometheus package is not installed (scripts/install-deps.sh installs it)"),
          .timeLimit(.minutes(6)))
    func prometheusScrapesEveryRoleAndHasTheirSeries() async throws {
        let compose = try String(contentsOf: Self.composeConfiguration, encoding: .utf8)
        let roles = try Self.composeRoles(in: compose)
        #expect(Set(roles) == Set(Self.namedSeries.keys), "compose scrapes \(roles); the test names series for \(Self.namedSeries.keys.sorted())")
        // A validating run, so that every role has a part in it; two rollout workers, as a scaled role.
        let cluster = try await Cluster(run: "e2e-prom", overrides: ["--run.steps", String(Cluster.endlessSteps), "--validation.enabled", "true"])
        let folder = cluster.directory.appendingPathComponent("prometheus")
        let targetsFile = folder.appendingPathComponent("targets.json")
        var prometheus: PrometheusServer?
        do {
            // Prometheus starts with no target while the fleet starts; it reads the targets file again when it changes.
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data("[]".utf8).write(to: targetsFile)
            let server = try PrometheusServer(configuration: try Self.localConfiguration(from: compose, targetsFile: targetsFile.lastPathComponent),
                                              directory: folder)
            prometheus = server
            try cluster.launch("validator")
            try await cluster.startAll(rollouts: 2)

            // Every process's metrics port (any free one, metrics.port = 0), from its heartbeat, as service=<role> targets.
            var targets: [(role: String, port: Int)] = []
            try await cluster.waitFor("every process's metrics port in its heartbeat", within: 120) {
                targets = try await Self.metricsTargets(of: cluster)
                return targets.count == cluster.processes.count
            }
            try Self.targetsFileContents(targets).write(to: targetsFile, options: .atomic)

            // Prometheus scrapes each of them, healthy.
            var scraped: [PrometheusServer.ScrapeTarget] = []
            do {
                try await cluster.waitFor("Prometheus to scrape every target up", within: 120) {
                    try server.checkRunning()
                    scraped = try server.activeTargets().filter { $0.labels["job"] == "tributary" }
                    return scraped.count == targets.count && scraped.allSatisfy { $0.health == "up" }
                }
            } catch {
                throw EndToEndFailure(description: "\(error)\nPrometheus's targets: \(scraped.map { "\($0.scrapeURL) \($0.health) \($0.lastError)" })")
            }
            #expect(Set(scraped.compactMap { $0.labels["service"] }) == Set(roles))
            #expect(Set(scraped.map(\.scrapeURL)) == Set(targets.map { "http://127.0.0.1:\($0.port)/metrics" }), "\(scraped.map(\.scrapeURL))")
            #expect(scraped.filter { $0.labels["service"] == "rollout" }.count == 2, "both rollout workers are targets")
            let up = try server.query(#"up{job="tributary"}"#)
            #expect(up.count == targets.count && up.allSatisfy { $0.value == 1 }, "\(up)")

            // Each role's named series: in Prometheus under its service label, positive, from processes of that role.
            for (role, series) in Self.namedSeries.sorted(by: { $0.key < $1.key }) {
                for name in series {
                    let query = "\(name){job=\"tributary\",service=\"\(role)\"}"
                    try await cluster.waitFor("\(query) > 0 in Prometheus", within: 120) {
                        try server.checkRunning()
                        return try server.query(query).contains { $0.value > 0 }
                    }
                    let samples = try server.query(query)
                    #expect(samples.allSatisfy { $0.labels["role"] == role && $0.labels["run"] == cluster.run }, "\(query): \(samples)")
                }
            }

            server.stop()
            #expect(server.process.poll() == 0, "prometheus exited with \(server.process.poll().map(String.init) ?? "nothing"): \(server.process.logTail())")
            let codes = try await cluster.terminateAll()
            for (role, code) in codes { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            prometheus?.stop()
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }

    /// The roles compose's `tributary` job discovers: its `names: [...]` of compose services.
    static func composeRoles(in compose: String) throws -> [String] {
        guard let line = compose.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("- names:") }),
              let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]") else {
            throw EndToEndFailure(description: "no `- names: [...]` in \(composeConfiguration.path)")
        }
        return line[line.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// compose/prometheus/prometheus.yml for a run on this machine: its global settings (scrape interval and all) as
    /// they are; its `tributary` job with the targets in `targetsFile` (file discovery) in place of docker's DNS, each
    /// labelled service=<role> as the relabelling of the DNS name does there. Its `rabbitmq` job is left out: the test
    /// brokers run without the rabbitmq_prometheus plugin.
    static func localConfiguration(from compose: String, targetsFile: String) throws -> String {
        guard let scrapeConfigs = compose.range(of: "\nscrape_configs:"), compose[..<scrapeConfigs.lowerBound].contains("\nglobal:") else {
            throw EndToEndFailure(description: "no global settings before scrape_configs in \(composeConfiguration.path)")
        }
        return String(compose[..<scrapeConfigs.lowerBound]) + """

            scrape_configs:
              - job_name: tributary
                file_sd_configs:
                  - files: [\(targetsFile)]

            """
    }

    /// Each live process of the run and the port of its /metrics, from the heartbeats that carry one.
    static func metricsTargets(of cluster: Cluster) async throws -> [(role: String, port: Int)] {
        var targets: [(role: String, port: Int)] = []
        for process in cluster.processes where process.poll() == nil {
            guard let beat = try await cluster.redis.get(cluster.names.heartbeatKey(role: process.role, instance: process.name)) else { continue }
            let port = try JSONDecoder().decode(StatusBoard.Snapshot.self, from: Data(beat)).metricsPort
            if port > 0 { targets.append((process.role, port)) }
        }
        return targets
    }

    /// A file_sd file: one group per target, labelled with its role as `service`.
    static func targetsFileContents(_ targets: [(role: String, port: Int)]) throws -> Data {
        let groups = targets.map { ["targets": ["127.0.0.1:\($0.port)"], "labels": ["service": $0.role]] }
        return try JSONSerialization.data(withJSONObject: groups, options: [.prettyPrinted, .sortedKeys])
    }
}

extension PrometheusServer {
    /// Throws with its log's tail if Prometheus has exited.
    func checkRunning() throws {
        if let code = process.poll() { throw EndToEndFailure(description: "prometheus exited with \(code):\n\(process.logTail())") }
    }
}
