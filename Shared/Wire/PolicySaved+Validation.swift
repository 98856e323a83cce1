extension PolicySaved {
    /// What the broadcaster accepts from the learner.
    public struct Limits: Sendable, Equatable {
        public var run: String

        public init(run: String) {
            self.run = run
        }
    }

    /// Refuses a saved policy the broadcaster must not publish, naming the first field that is wrong.
    public func validate(_ limits: Limits) throws {
        let bad = FieldRefusal(type: "PolicySaved", messageID: messageID)
        // tributary-broadcaster's rule, with its reason
        guard envelope.runID == limits.run else { throw bad("envelope.run_id", "is '\(envelope.runID)', not this run") }

        // the broadcaster reports the version as an Int
        guard version <= largestIntVersion else { throw bad("version", "\(version) does not fit in Int") }
        guard !stagingKey.isEmpty else { throw bad("staging_key", "is empty") }
        guard !sha256.isEmpty else { throw bad("sha256", "is empty") }
    }
}
