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

    /// The message a bad value gets, whichever way it came in.
    func problem(_ body: () throws -> Void) -> String {
        do { try body() } catch let error as SettingsError { return error.problem } catch { return "\(error)" }
        return ""
    }

    /// Bad values for several kinds of setting, each with the range its error must name.
    static let badValues: [(key: String, value: String, range: String)] = [
        ("trainer.learning_rate", "nan", "(0, 1]"), ("trainer.learning_rate", "inf", "(0, 1]"), ("trainer.learning_rate", "-1", "(0, 1]"),
        ("trainer.learning_rate", "0", "(0, 1]"), ("trainer.learning_rate", "2", "(0, 1]"),
        ("inference.temperature", "inf", "[0, 100]"), ("inference.temperature", "-inf", "[0, 100]"), ("inference.temperature", "-1", "[0, 100]"),
        ("inference.top_p", "nan", "(0, 1]"), ("inference.top_p", "1.5", "(0, 1]"),
        ("trainer.epsilon_high", "-0.1", "[0, 10]"), ("trainer.adam_beta2", "1", "[0, 1)"), ("trainer.kl_coefficient", "nan", "[0, 100]"),
        ("run.steps", "-1", "[1, 1000000]"), ("run.steps", "2000000", "[1, 1000000]"), ("run.async_level", "65", "[0, 64]"),
        ("inference.group_size", "1", "[2, 256]"),
    ]

    @Test func everyBadValueIsRefusedNamingTheKeyTheValueAndTheRange() throws {
        for (key, value, range) in Self.badValues {
            let message = problem { _ = try Settings.load(role: "t", abstract: "", specs: RunConfig.settings, arguments: ["--\(key)", value], environment: [:]) }
            #expect(message.contains("'\(key)'") && message.contains("= \(value)") && message.contains(range), "\(key) = \(value): \(message)")
        }
        #expect(problem { _ = try Settings.load(role: "t", abstract: "", specs: RunConfig.settings, arguments: ["--trainer.learning_rate=nan"], environment: [:]) }
            == "setting 'trainer.learning_rate' = nan (from flag) is not a finite number in (0, 1]")
        #expect(problem { _ = try Settings.load(role: "t", abstract: "", specs: RunConfig.settings, arguments: [], environment: ["TRIBUTARY_RUN_STEPS": "0"]) }
            == "setting 'run.steps' = 0 (from env) is outside [1, 1000000]")
        #expect(problem { _ = try Settings.load(role: "t", abstract: "", specs: RunConfig.settings, arguments: ["--run.steps", "2.5"], environment: [:]) }
            == "setting 'run.steps' = 2.5 (from flag) is not an integer in [1, 1000000]")
    }

    @Test func aRunFileWithABadValueIsRefusedWhereverItIsRead() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).toml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        for (key, value, range) in Self.badValues {
            let parts = key.split(separator: ".")
            let text = "[\(parts[0])]\n\(parts[1]) = \(Double(value) == nil || value.contains("inf") ? "\"\(value)\"" : value)\n"
            // what `tributary run start` and the learner's StartRun read
            let started = problem { _ = try RunConfig(Settings.fromTOML(text, specs: RunConfig.settings, source: "run.toml")) }
            #expect(started.contains("'\(key)'") && started.contains(value) && started.contains(range) && started.contains("run.toml"), "\(text): \(started)")
            // a process started with --config
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let loaded = problem { _ = try Settings.load(role: "t", abstract: "", specs: SettingsCatalog.learner, arguments: ["--config", path], environment: [:]) }
            #expect(loaded.contains("'\(key)'") && loaded.contains(range) && loaded.contains(path), "\(text): \(loaded)")
        }
        // TOML's own nan and inf, unquoted
        #expect(problem { _ = try Settings.fromTOML("[trainer]\nlearning_rate = nan\n", specs: RunConfig.settings, source: "run.toml") }
            == "setting 'trainer.learning_rate' = nan (from run.toml) is not a finite number in (0, 1]")
        #expect(problem { _ = try Settings.fromTOML("[inference]\ntemperature = -inf\n", specs: RunConfig.settings, source: "run.toml") }
            .contains("'inference.temperature' = -inf"))
        // another role's section in the same file is checked by that role's range, even by a process that does not take it
        try "[rollout]\nversion_wait_seconds = -1\n".write(toFile: path, atomically: true, encoding: .utf8)
        let other = problem { _ = try Settings.load(role: "t", abstract: "", specs: [Setting("run.id", "default", "")], arguments: ["--config", path], environment: [:]) }
        #expect(other.contains("'rollout.version_wait_seconds' = -1") && other.contains("[0, 86400]"), "\(other)")
    }

    @Test func validValuesStillPassAtTheirBounds() throws {
        let settings = try Settings.load(role: "t", abstract: "", specs: RunConfig.settings,
                                         arguments: ["--trainer.learning_rate", "1", "--inference.temperature", "0", "--inference.top_p", "1e-3",
                                                     "--trainer.adam_beta2", "0", "--run.async_level", "64", "--trainer.epsilon_low", "1"], environment: [:])
        let config = try RunConfig(settings)
        #expect(config.learningRate == 1 && config.temperature == 0 && config.topP == 0.001 && config.adamBeta2 == 0 && config.asyncLevel == 64)
        #expect(try RunConfig(Settings.fromTOML("[trainer]\nlearning_rate = 5e-6\n[inference]\ntemperature = 0.7\n", specs: RunConfig.settings, source: "t"))
            .learningRate == 5e-6)
        // a tiny nonzero temperature would overflow the logits: refused with what to use instead
        #expect(problem { _ = try RunConfig(Settings.fromTOML("[inference]\ntemperature = 1e-30\n", specs: RunConfig.settings, source: "t")) }
            .contains("0 samples greedily"))
    }

    @Test func setRefusesABadValueAndKeepsTheOldOne() throws {
        var settings = try Settings.fromTOML("", specs: RunConfig.settings, source: "defaults")
        for (key, value, range) in Self.badValues {
            let message = problem { try settings.set(key, value, origin: "set m1") }
            #expect(message.contains("'\(key)' = \(value) (from set m1)") && message.contains(range), "\(message)")
        }
        #expect(settings["trainer.learning_rate"] == "0.001" && settings["run.steps"] == "40")
        try settings.set("trainer.learning_rate", "0.0005", origin: "set m2")
        #expect(try RunConfig(settings).learningRate == 0.0005)
    }

    @Test func everyNumericSettingOfEveryRoleDeclaresARangeThatHoldsItsDefault() throws {
        let specs = SettingsCatalog.rollout + SettingsCatalog.reward + SettingsCatalog.learner + SettingsCatalog.broadcaster + SettingsCatalog.validator
        for spec in specs where !spec.isBoolean && Double(spec.defaultValue) != nil {
            let range = try #require(spec.range, "\(spec.key) is numeric and has no range")
            #expect(throws: Never.self, "\(spec.key)") { try spec.check(spec.defaultValue, origin: "default") }
            #expect(!range.contains(.nan) && !range.contains(.infinity) && !range.contains(-.infinity))
        }
        for spec in specs where spec.range != nil { #expect(Double(spec.defaultValue) != nil, "\(spec.key) has a range and a default that is no number") }
    }

    @Test func helpShowsEachRange() {
        let help = Settings.helpText(role: "tributary-learner", abstract: "", specs: SettingsCatalog.learner)
        let line = help.split(separator: "\n").first { $0.contains("--trainer.learning_rate ") }
        #expect(line?.contains("(default: 0.001, in (0, 1]; env TRIBUTARY_TRAINER_LEARNING_RATE)") == true, "\(line ?? "")")
        #expect(help.contains("in [2, 256]") && help.contains("in [0, 1)"))
    }

    @Test func rangesPrintInIntervalNotation() {
        #expect(SettingRange.integers(1...4096).description == "[1, 4096]")
        #expect(SettingRange.reals(above: 0, through: 1).description == "(0, 1]")
        #expect(SettingRange.reals(from: 0, below: 1).description == "[0, 1)")
        #expect(SettingRange.reals(0...0.5).description == "[0, 0.5]")
        #expect(SettingRange.integers(-1...65535).contains(-1) && !SettingRange.integers(0...10).contains(2.5))
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
