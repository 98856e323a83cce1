import Foundation
import SwiftProtobuf

extension RolloutGroup {
    /// What a worker signs and a scorer verifies: the group's deterministic serialization with `signature` empty.
    /// Every field is covered, the proofs of later versions included, without listing them here.
    public func signingPayload() throws -> [UInt8] {
        var unsigned = self
        unsigned.signature = Data()
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return try unsigned.serializedBytes(options: options)
    }
}
