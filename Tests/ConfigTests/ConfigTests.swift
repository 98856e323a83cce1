import Config
import Foundation
import Testing

@Suite("Config: TOML, settings, run config")
struct ConfigTests {
    @Test func tomlParsesRunFilesAndNamesTheBadLine() throws {
        let values = try TOML.parse("""
        # a run
        [run]
        id = "r1"   # trailing comment
        steps = 1_000
        [trainer]
        learning_rate = 1e-3
        flags = [1, 2, "x"]
        on = true
        """, source: "run.toml")
        #expect(values["run.id"] == .string("r1"))
        #expect(values["run.steps"] == .integer(1000))
        #expect(values["trainer.learning_rate"] == .float(0.001))
        #expect(values["trainer.flags"] == .array([.integer(1), .integer(2), .string("x")]))
        #expect(values["trainer.on"] == .boolean(true))
        #expect(throws: TOMLError(source: "run.toml", line: 2, problem: "'bare' is not a TOML value (strings need quotes)")) {
            try TOML.parse("[run]\nid = bare\n", source: "run.toml")
        }
        #expect(throws: TOMLError.self) { try TOML.parse("[run]\nid = \"a\"\nid = \"b\"\n") }
    }

    @Test func settingsLayerFileEnvironmentAndFlagsAndNameBadValues() throws {
        let specs = [Setting("run.id", "default", ""), Setting("run.steps", "40", "")]
        let settings = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--run.steps", "7"],
                                         environment: ["TRIBUTARY_RUN_ID": "from-env"])
        #expect(settings["run.id"] == "from-env")
        #expect(try settings.int("run.steps") == 7)
        #expect(throws: SettingsError.self) { try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--run.stpes", "7"], environment: [:]) }
        let bad = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--run.steps=seven"], environment: [:])
        do {
            _ = try bad.int("run.steps")
            Issue.record("expected an error")
        } catch let error as SettingsError {
            #expect(error.problem.contains("run.steps") && error.problem.contains("seven") && error.problem.contains("flag"))
        }
    }

    @Test func runConfigRefusesBadValuesByKey() throws {
        let good = try Settings.fromTOML("[run]\nid = \"ok\"\n", specs: RunConfig.settings, source: "t")
        #expect(try RunConfig(good).asyncLevel == 2)
        let badID = try Settings.fromTOML("[run]\nid = \"no spaces\"\n", specs: RunConfig.settings, source: "t")
        #expect(throws: SettingsError.self) { try RunConfig(badID) }
        let badHeads = try Settings.fromTOML("[model]\nheads = 3\nchannels = 32\n", specs: RunConfig.settings, source: "t")
        #expect(throws: (any Error).self) { try RunConfig(badHeads) }
    }

    @Test func tomlRenderingRoundTripsControlCharactersAndQuotes() throws {
        let values = ["reward.length_instruction": "Think for {target} tokens.\n", "prompt.system": "say \"hi\"\tthen\\stop\r"]
        let parsed = try TOML.parse(TOML.render(values), source: "rendered")
        #expect(parsed.mapValues(\.description) == values)
    }

    @Test func unknownKeysAreRefusedEverywhereWithTheNearestKnownOne() throws {
        let specs = [Setting("run.id", "default", ""), Setting("rollout.max_group_size", "256", "")]
        func problem(_ body: () throws -> Void) -> String {
            do { try body() } catch let error as SettingsError { return error.problem } catch { return "\(error)" }
            return ""
        }
        // a flag
        #expect(problem { _ = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--rollout.max_grup_size", "4"], environment: [:]) }
            .contains("did you mean --rollout.max_group_size"))
        // a run file given with --config: a typo in any section, this role's or another's
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("typo-\(UUID().uuidString).toml").path
        try "[trainer]\nlearning_rat = 0.1\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fromFile = problem { _ = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--config", path], environment: [:]) }
        #expect(fromFile.contains("trainer.learning_rat") && fromFile.contains("did you mean 'trainer.learning_rate'"))
        // another role's keys in a shared run file are passed over
        try "[trainer]\nlearning_rate = 0.1\n[broadcaster]\nreplicas = 1\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--config", path], environment: [:])["run.id"] == "default")
        // a StartRun's text, and the learner's own autostart settings
        #expect(problem { _ = try Settings.fromTOML("[run]\nasync_levle = 1\n", specs: RunConfig.settings, source: "StartRun") }
            .contains("did you mean 'run.async_level'"))
        #expect(problem { _ = try Settings.load(role: "l", abstract: "", specs: SettingsCatalog.learner, arguments: ["--learner.autostrat"], environment: [:]) }
            .contains("did you mean --learner.autostart"))
    }

    @Test func booleanSettingsWorkAsBareFlags() throws {
        let specs = [Setting("learner.autostart", "false", ""), Setting("run.steps", "40", "")]
        let bare = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--learner.autostart", "--run.steps", "3"], environment: [:])
        #expect(try bare.bool("learner.autostart") && bare.int("run.steps") == 3)
        let last = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--learner.autostart"], environment: [:])
        #expect(try last.bool("learner.autostart"))
        let explicit = try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--learner.autostart", "false"], environment: [:])
        #expect(try !explicit.bool("learner.autostart"))
        // a setting that is not a boolean still needs its value
        #expect(throws: SettingsError.self) { try Settings.load(role: "t", abstract: "", specs: specs, arguments: ["--run.steps"], environment: [:]) }
    }

    @Test func numbersMustBeFiniteAndLearningKnobsInRange() throws {
        func config(_ toml: String) throws -> RunConfig { try RunConfig(Settings.fromTOML(toml, specs: RunConfig.settings, source: "t")) }
        for bad in ["[trainer]\nlearning_rate = \"nan\"\n", "[inference]\ntemperature = \"inf\"\n", "[trainer]\nadam_beta1 = 1\n",
                    "[trainer]\nweight_decay = -0.1\n", "[inference]\ntop_p = 0\n", "[reward]\ntarget_lengths = \"10, x\"\n"] {
            #expect(throws: SettingsError.self, "\(bad)") { try config(bad) }
        }
        let knobs = try config("[trainer]\nadam_beta2 = 0.95\nweight_decay = 0.01\nmax_grad_norm = 0\n[reward]\ntarget_lengths = \"4, 8\"\nmean_only = true\nformat_weight = 0.2\n")
        #expect(knobs.adamBeta2 == 0.95 && knobs.weightDecay == 0.01 && knobs.maxGradNorm == 0)
        #expect(knobs.rewardShaping.targetLengths == [4, 8] && knobs.rewardShaping.formatWeight == 0.2 && knobs.meanOnlyAdvantages)
    }

    @Test func liveChangesThatWouldBreakRecordedLogprobsAreRefusedByName() throws {
        for key in ["inference.temperature", "inference.top_p", "inference.top_k"] {
            do {
                try RunConfig.checkLive(key: key)
                Issue.record("\(key) was accepted as live")
            } catch let error as SettingsError {
                #expect(error.problem.contains(key) && error.problem.contains("sampled"))
            }
        }
        try RunConfig.checkLive(key: "trainer.learning_rate")
        #expect(throws: SettingsError.self) { try RunConfig.checkLive(key: "trainer.epsilon_low") }
    }
}
