import ServiceKit
import Testing

@Suite("ServiceKit pieces")
struct ServiceKitTests {
    @Test func sha256MatchesKnownVectors() {
        #expect(sha256Hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha256Hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(sha256Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // A million 'a's, fed in uneven pieces, checks the buffering across blocks.
        var hasher = SHA256Hasher()
        let chunk = [UInt8](repeating: 0x61, count: 999)
        var fed = 0
        while fed < 1_000_000 {
            let n = min(chunk.count, 1_000_000 - fed)
            hasher.update(chunk.prefix(n))
            fed += n
        }
        let hex = hasher.finalize().map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        #expect(hex == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

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
}
