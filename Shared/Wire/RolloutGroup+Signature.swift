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

extension RolloutTask {
    /// What a worker must echo back unchanged in its group, as bytes: prompt, group size and sampling settings.
    public func echoedBytes() throws -> [UInt8] {
        var echoed = RolloutTask()
        echoed.prompt = prompt
        echoed.groupSize = groupSize
        echoed.sampling = sampling
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return try echoed.serializedBytes(options: options)
    }
}
