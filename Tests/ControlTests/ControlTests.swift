import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Messaging
import Store
@testable import Control
import Config
import Runtime
import TestSupport
import Testing

/// The control CLI's pure parts (Services/Control), and its read of the metrics stream against the real Redis.
@Suite("Control CLI")
struct ControlCLITests {
    // MARK: Sparkline

    @Test func sparklineMapsTheLowestAndHighestToTheEndLevels() {
        let line = Sparkline.render([0, 1, 2, 3, 4, 5, 6, 7], width: 60)
        #expect(line == "▁▂▃▄▅▆▇█")
        #expect(Sparkline.render([3, 1, 2]).first == "█")
        #expect(Sparkline.render([3, 1, 2]).dropFirst().first == "▁")
    }

    @Test func sparklineShowsGapsAndFlatSeries() {
        #expect(Sparkline.render([1, .nan, 2]) == "▁ █")
        #expect(Sparkline.render([0.5, 0.5, 0.5]) == "▁▁▁")
        #expect(Sparkline.render([]) == "")
        #expect(Sparkline.render([.nan, .nan]) == "  ")
    }

    @Test func sparklineWithAFixedRangeClampsOutliers() {
        #expect(Sparkline.render([-1, 0, 0.5, 1, 2], range: 0...1) == "▁▁▅██")
    }

    @Test func longSeriesAreAveragedDownToTheWidth() {
        let values = (0..<1000).map(Double.init)
        let line = Sparkline.render(values, width: 50)
        #expect(line.count == 50)
        #expect(line.first == "▁" && line.last == "█")
        let buckets = Sparkline.resample([1, 3, 5, 7], width: 2)
        #expect(buckets == [2, 6])
        #expect(Sparkline.resample([1, .nan, 5, 7], width: 2) == [1, 6])
    }

    // MARK: Plot

    func points(_ count: Int) -> [StepMetrics] {
        (0..<count).map { step in
            StepMetrics(step: step, version: step, rewardMean: Double(step) / Double(count), accuracy: Double(step) / Double(2 * count))
        }
    }

    @Test func plotIsWellFormedSVGWithBothPanelsAndTheHeldOutLines() throws {
        let svg = RunPlot.svg(points: points(40), title: "run <a&b>", accuracyBefore: 0.17, accuracyAfter: 0.63)
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "SVG does not parse: \(String(describing: parser.parserError))")
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.contains("run &lt;a&amp;b&gt;"))
        #expect(svg.contains("held-out before 17.0%") && svg.contains("held-out after 63.0%"))
        // reward, its moving average, batch accuracy, held-out before and after
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 5)
        #expect(!svg.contains("nan") && !svg.contains("inf"))
    }

    @Test func plotOfAnEmptyRunSaysSo() {
        let svg = RunPlot.svg(points: [], title: "empty")
        #expect(XMLParser(data: Data(svg.utf8)).parse())
        #expect(svg.contains("no data yet"))
        #expect(!svg.contains("<polyline"))
    }

    @Test func plotPointsStayInsideTheirPanel() throws {
        let svg = RunPlot.render(title: "t", xLabel: "x", panels: [
            RunPlot.Panel(title: "p", yLabel: "y", series: [RunPlot.Series(name: "s", color: "#000", points: [(0, -5), (10, 5), (20, 2)])], yRange: nil),
        ], width: 900, panelHeight: 260)
        let polyline = try #require(svg.split(separator: "\n").first { $0.contains("<polyline") })
        let coordinates = try #require(polyline.split(separator: "\"").first { $0.contains(",") && !$0.contains("=") })
        for pair in coordinates.split(separator: " ") {
            let xy = pair.split(separator: ",").compactMap { Double($0) }
            #expect(xy.count == 2)
            #expect(xy[0] >= 70 && xy[0] <= 900 - 200)
            #expect(xy[1] >= 50 && xy[1] <= 50 + 260)
        }
    }

    @Test func ticksAreRoundAndCoverTheRange() {
        #expect(RunPlot.ticks(0, 1).count == 6)
        #expect(zip(RunPlot.ticks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]).allSatisfy { abs($0 - $1) < 1e-9 })
        let ticks = RunPlot.ticks(3, 97)
        #expect(ticks.first! <= 3 && ticks.last! >= 97)
        #expect(ticks == [0, 20, 40, 60, 80, 100])
        #expect(RunPlot.movingAverage([(0, 1), (1, 3), (2, 5)], window: 2).map(\.y) == [1, 2, 4])
    }

    // MARK: Metrics entries

    @Test func stepMetricsRoundTripThroughStreamFields() throws {
        let metrics = StepMetrics(step: 7, version: 7, rewardMean: 0.425, accuracy: 0.3, loss: -0.0123, kl: 0.002, waitSeconds: 1.5, groups: 8,
                                  staleDropped: 2, staleness: ["0": 5, "2": 3], asyncLevel: 2)
        let fields = metrics.streamFields
        // the stream keeps its field names, so dashboards and older readers still find them
        #expect(fields["reward_mean"] == "0.425" && fields["wait_s"] == "1.5" && fields["stale_dropped"] == "2")
        #expect(fields["staleness"] == #"{"0":5,"2":3}"#)
        #expect(StepMetrics(fields: fields) == metrics)
        #expect(metrics.stalenessMean == 0.75)
    }

    @Test func stepMetricsRefuseEntriesThatAreNotWholeSteps() {
        #expect(StepMetrics(fields: ["counter": "1"]) == nil)
        var fields = StepMetrics(step: 1, version: 1).streamFields
        fields["loss"] = "x"
        #expect(StepMetrics(fields: fields) == nil)
        fields.removeValue(forKey: "loss")
        #expect(StepMetrics(fields: fields) == nil)
    }

    @Test func metricsAreReadOldestFirstFromTheRealRedis() async throws {
        let names = Names(run: "control-test-\(UUID().uuidString.prefix(8))")
        let redis = RedisClient(endpoint: try RedisEndpoint.fromEnvironment())
        try await redis.connect()
        defer { redis.close() }
        for step in 1...5 {
            try await RunMetrics.append(StepMetrics(step: step, version: step, rewardMean: Double(step) / 10), to: redis, names: names)
        }
        let all = try await RunMetrics.read(redis, names: names)
        let lastTwo = try await RunMetrics.read(redis, names: names, count: 2)
        _ = try await redis.del([names.metricsKey])
        #expect(all.map(\.step) == [1, 2, 3, 4, 5])
        #expect(lastTwo.map(\.step) == [4, 5])
        #expect(all.last?.rewardMean == 0.5)
        #expect(all.last == StepMetrics(step: 5, version: 5, rewardMean: 0.5))
    }

    // MARK: Run files, live settings, targets

    @Test func runFileTakesItsRunIDOrTheFallback() throws {
        let named = try RunFile(text: "[run]\nid = \"alpha\"\nsteps = 3\n", source: "a.toml", fallbackRunID: "other")
        #expect(named.config.runID == "alpha" && named.namesRunID)
        #expect(named.startText == "[run]\nid = \"alpha\"\nsteps = 3\n")
        let unnamed = try RunFile(text: "[run]\nsteps = 3\n", source: "b.toml", fallbackRunID: "beta")
        #expect(unnamed.config.runID == "beta" && !unnamed.namesRunID)
        // What the learner gets must name the run, or it would refuse the StartRun.
        let reparsed = try RunConfig(Settings.fromTOML(unnamed.startText, specs: RunConfig.settings, source: "start"))
        #expect(reparsed == unnamed.config)
    }

    @Test func runFileRefusesTyposAndBadValuesNamingTheKey() throws {
        #expect(throws: SettingsError.self) { try RunFile(text: "[trainer]\nlearning_rat = 0.1\n", source: "t.toml", fallbackRunID: "r") }
        do {
            _ = try RunFile(text: "[trainer]\nlearning_rat = 0.1\n", source: "t.toml", fallbackRunID: "r")
        } catch {
            #expect("\(error)".contains("trainer.learning_rat") && "\(error)".contains("trainer.learning_rate"))
        }
        do {
            _ = try RunFile(text: "[run]\nasync_level = 99\n", source: "t.toml", fallbackRunID: "r")
            Issue.record("async_level 99 was accepted")
        } catch {
            #expect("\(error)".contains("run.async_level"))
        }
        // Other roles' sections, and every process's connection and logging settings, ride along in the same run file.
        #expect(try RunFile(text: "[reward]\nprefetch = 8\n[log]\nlevel = \"debug\"\n[blas]\nthreads = 2\n", source: "t.toml", fallbackRunID: "r").config.runID == "r")
        let file = try RunFile(text: "[rollout]\nmax_group_size = 4\n[learner]\nautostart = true\n", source: "t.toml", fallbackRunID: "r")
        #expect(file.config.runID == "r")
    }

    @Test func liveSettingsAreCheckedBeforeTheyAreSent() throws {
        let base = try Settings.fromTOML("[run]\nid = \"r\"\n", specs: RunConfig.settings, source: "base")
        #expect(try LiveSetting.validate(key: "trainer.learning_rate", value: "0.005", base: base).learningRate == 0.005)
        #expect(try LiveSetting.validate(key: "run.async_level", value: "0", base: base).asyncLevel == 0)
        #expect(throws: SettingsError.self) { try LiveSetting.validate(key: "trainer.epsilon_low", value: "0.1", base: base) }
        #expect(throws: SettingsError.self) { try LiveSetting.validate(key: "nope", value: "1", base: base) }
        #expect(throws: SettingsError.self) { try LiveSetting.validate(key: "trainer.learning_rate", value: "fast", base: base) }
        #expect(throws: SettingsError.self) { try LiveSetting.validate(key: "inference.group_size", value: "1", base: base) }
    }

    @Test func liveSettingsRefuseNonFiniteNegativeAndOutOfRangeValuesWithTheRange() throws {
        let base = try Settings.fromTOML("[run]\nid = \"r\"\n", specs: RunConfig.settings, source: "base")
        for (key, value, range) in [("trainer.learning_rate", "nan", "(0, 1]"), ("trainer.learning_rate", "inf", "(0, 1]"),
                                    ("trainer.learning_rate", "-1", "(0, 1]"), ("trainer.learning_rate", "1.5", "(0, 1]"),
                                    ("run.async_level", "-1", "[0, 64]"), ("run.async_level", "1000", "[0, 64]"),
                                    ("inference.group_size", "nan", "[2, 256]"), ("inference.group_size", "257", "[2, 256]")] {
            do {
                try LiveSetting.validate(key: key, value: value, base: base)
                Issue.record("set \(key) \(value) was accepted")
            } catch {
                #expect("\(error)".contains("setting '\(key)' = \(value)") && "\(error)".contains(range), "\(error)")
            }
        }
        // the command line refuses it before anything connects
        #expect(throws: (any Error).self) { try SetCommand.parse(["trainer.learning_rate", "nan"]) }
        #expect(throws: (any Error).self) { try SetCommand.parse(["trainer.learning_rate", "-1"]) }
        #expect(throws: (any Error).self) { try SetCommand.parse(["trainer.learning_rate", "0.1", "--forse"]) }
        #expect(throws: (any Error).self) { try SetCommand.parse(["trainer.learning_rate"]) }
        #expect(try SetCommand.parse(["trainer.learning_rate", "0.0005"]).value == "0.0005")
        #expect(try SetCommand.parse(["--force", "run.async_level", "1", "--run.id", "r"]).value == "1")
    }

    @Test func everyProcessSettingThatIsANumberDeclaresARange() throws {
        for spec in Fabric.settings where Double(spec.defaultValue) != nil {
            #expect(spec.range != nil, "\(spec.key)")
            try spec.check(spec.defaultValue, origin: "default")
        }
        #expect(throws: SettingsError.self) { try Settings.load(role: "t", abstract: "", specs: Fabric.settings, arguments: ["--service.connect_timeout", "nan"], environment: [:]) }
        #expect(throws: SettingsError.self) { try Settings.load(role: "t", abstract: "", specs: Fabric.settings, arguments: ["--metrics.port", "-2"], environment: [:]) }
        #expect(throws: SettingsError.self) { try Settings.load(role: "t", abstract: "", specs: Fabric.settings, arguments: ["--blas.threads", "0"], environment: [:]) }
        #expect(try Settings.load(role: "t", abstract: "", specs: Fabric.settings, arguments: ["--metrics.port", "-1"], environment: [:]).int("metrics.port") == -1)
    }

    /// `tributary set` itself, against the real broker: a queue bound where the run's learner listens sees what it sends.
    @Test(.timeLimit(.minutes(2)))
    func theSetCommandSendsAValidValueAndRefusesABadOneBeforePublishing() async throws {
        let names = Names(run: "set-test-\(UUID().uuidString.prefix(8))")
        let queue = "\(names.run).learner-control"
        let amqp = AMQPClient(endpoint: try AMQPEndpoint.fromEnvironment(), name: "set-test")
        try await amqp.connect()
        try await amqp.declare(Topology(exchanges: [ExchangeSpec(Names.controlExchange, kind: .topic)], queues: [QueueSpec(queue, durable: false)],
                                        bindings: [BindingSpec(queue: queue, exchange: Names.controlExchange, routingKey: Names.runRoutingKey(role: "learner", run: names.run))]))
        func cli(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await runCommandOffPool([binaryDirectory.appendingPathComponent("tributary").path, "set"] + arguments + ["--run.id", names.run, "--force"])
        }
        for (value, range) in [("nan", "(0, 1]"), ("inf", "(0, 1]"), ("-1", "(0, 1]"), ("3", "(0, 1]")] {
            let refused = try await cli(["trainer.learning_rate", value])
            #expect(refused.status != 0 && refused.output.contains("setting 'trainer.learning_rate' = \(value)") && refused.output.contains(range), "\(refused.output)")
        }
        let refusedGroups = try await cli(["inference.group_size", "-4"])
        #expect(refusedGroups.status != 0 && refusedGroups.output.contains("[2, 256]"), "\(refusedGroups.output)")
        // every refusal exited before it published (a publish is confirmed, so it would be in the queue by now)
        #expect(try await amqp.inspect(queue: queue).messages == 0)
        let sent = try await cli(["trainer.learning_rate", "0.0005"])
        #expect(sent.status == 0, "\(sent.output)")
        #expect(try await amqp.inspect(queue: queue).messages == 1)
        try await amqp.delete(queue: queue)
        await amqp.close()
    }

    @Test func controlTargetsBecomeRoutingKeys() throws {
        #expect(try ControlTarget(parsing: "all").routingKey == "all")
        #expect(try ControlTarget(parsing: "rollout").routingKey == "rollout")
        let one = try ControlTarget(parsing: "rollout.rollout-host.example-42")
        #expect(one.routingKey == "rollout.rollout-host.example-42")
        #expect(one.role == "rollout" && one.instance == "rollout-host.example-42")
        #expect(one.matches(role: "rollout", instance: "rollout-host.example-42"))
        #expect(!one.matches(role: "rollout", instance: "rollout-other"))
        #expect(try ControlTarget(parsing: "reward").matches(role: "reward", instance: "any"))
        #expect(try ControlTarget(parsing: "all").matches(role: "learner", instance: "x"))
        #expect(throws: SettingsError.self) { try ControlTarget(parsing: "trainer") }
        #expect(throws: SettingsError.self) { try ControlTarget(parsing: "rollout.") }
        #expect(throws: SettingsError.self) { try ControlTarget(parsing: "rollout.#") }
    }

    @Test func deadLettersReplayOnlyToTheRunsOwnWorkQueues() {
        let names = Names(run: "r1")
        #expect(DeadLetter.replayTarget(queue: names.scoredQueue, names: names)! == (Names.scoredExchange, "r1"))
        #expect(DeadLetter.replayTarget(queue: names.policiesQueue, names: names)! == (Names.controlExchange, names.policyRoutingKey))
        // another run's queue, the dead-letter queue itself, or a made-up name: not replayed
        for queue in [Names(run: "r2").tasksQueue, names.deadLettersQueue, "amq.gen-x", ""] {
            #expect(DeadLetter.replayTarget(queue: queue, names: names) == nil)
        }
    }

    @Test func deadLettersReplayWithoutForceOnlyWhenAReplayCanHelp() {
        // the broker's dead letters, and handling that kept failing: replayable
        #expect(DeadLetter.isReplayable(headers: ["x-first-death-reason": "delivery_limit"]))
        #expect(DeadLetter.isReplayable(headers: ["x-tributary-reason": "failed 5 times; last: Redis at 127.0.0.1:6389 lost"]))
        // refused by a service as invalid, or no reason at all: not without --force
        #expect(!DeadLetter.isReplayable(headers: ["x-tributary-reason": "RolloutGroup m1: field signature: does not verify"]))
        #expect(!DeadLetter.isReplayable(headers: ["x-tributary-reason": "RolloutGroup m1: field signature: does not verify",
                                                   "x-first-death-reason": "rejected"]))
        #expect(!DeadLetter.isReplayable(headers: [:]))
    }
}
