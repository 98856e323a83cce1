import Testing
import Wire

@Suite("PolicySaved validation")
struct PolicySavedValidationTests {
    static let limits = PolicySaved.Limits(run: "run-1")

    static func validSaved() -> PolicySaved {
        PolicySaved.with {
            $0.envelope = Envelope(runID: "run-1", role: "learner", instance: "l1", messageID: "saved-1")
            $0.version = 3
            $0.stagingKey = "tributary:run-1:staging:3"
            $0.bytes = 1 << 20
            $0.sha256 = String(repeating: "ab", count: 32)
            $0.savedAtUnixMs = 1_800_000_000_000
        }
    }

    static let breakages: [Breakage<PolicySaved>] = [
        Breakage("another run", field: "envelope.run_id", reason: "is 'run-2', not this run") { $0.envelope.runID = "run-2" },
        Breakage("version 2^64-1", field: "version", reason: "\(maxUInt64Text) does not fit in Int") { $0.version = .max },
        Breakage("empty staging key", field: "staging_key", reason: "is empty") { $0.stagingKey = "" },
        Breakage("empty checksum", field: "sha256", reason: "is empty") { $0.sha256 = "" },
    ]

    @Test func validSavedPolicyPasses() throws {
        try Self.validSaved().validate(Self.limits)
        var first = Self.validSaved()
        first.version = 0
        try first.validate(Self.limits)
    }

    @Test(arguments: breakages)
    func refusalNamesTheBrokenField(_ breakage: Breakage<PolicySaved>) {
        var saved = Self.validSaved()
        breakage.breakIt(&saved)
        #expect(refusal { try saved.validate(Self.limits) }
                == .invalidField(type: "PolicySaved", messageID: "saved-1", field: breakage.field, reason: breakage.reason))
    }
}
