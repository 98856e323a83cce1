import Testing
import Wire

@Suite("Wire format")
struct WireTests {
    func sampleGroup() -> RolloutGroup {
        RolloutGroup.with {
            $0.envelope = Envelope(runID: "run-1", role: "rollout", instance: "w1", messageID: "g-1")
            $0.task = RolloutTask.with { $0.taskID = "t-1"; $0.step = 3; $0.prompt = "1+2="; $0.groupSize = 2 }
            $0.policyVersion = 2
            $0.promptTokens = [256, 49, 43, 50, 61]
            $0.completions = [Completion.with { $0.tokens = [51, 257]; $0.logprobs = [-0.1, -0.2]; $0.finishedWithEos = true }]
        }
    }

    @Test func roundTripKeepsEveryField() throws {
        let group = sampleGroup()
        let decoded = try RolloutGroup.decode(try group.encoded(), deliveredID: "g-1")
        #expect(decoded == group)
        #expect(decoded.envelope.sender.role == "rollout")
        #expect(decoded.envelope.schemaVersion == WireSchema.version)
    }

    @Test func garbageIsUndecodableNamingTheMessage() {
        #expect(throws: WireError.self) { try RolloutGroup.decode([0xFF, 0xFF, 0xFF, 0x07], deliveredID: "bad-1") }
        do {
            _ = try RolloutGroup.decode([0xFF, 0xFF, 0xFF, 0x07], deliveredID: "bad-1")
        } catch let error as WireError {
            guard case let .undecodable(type, id, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(type == "tributary.v1.RolloutGroup")
            #expect(id == "bad-1")
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func missingEnvelopeAndWrongSchemaAreRefused() throws {
        var group = sampleGroup()
        group.clearEnvelope()
        #expect(throws: WireError.missingEnvelope(type: "tributary.v1.RolloutGroup", messageID: "x")) {
            try RolloutGroup.decode(try group.encoded(), deliveredID: "x")
        }
        group = sampleGroup()
        group.envelope.schemaVersion = 99
        #expect(throws: WireError.unsupportedSchema(messageID: "g-1", found: 99, supported: WireSchema.version)) {
            try RolloutGroup.decode(try group.encoded())
        }
    }
}
