/// Builds the refusals of one message: its type and id are named once, each rule names its field.
struct FieldRefusal {
    let type: String
    let messageID: String

    func callAsFunction(_ field: String, _ reason: String) -> WireError {
        WireError.invalidField(type: type, messageID: messageID, field: field, reason: reason)
    }
}

/// Policy versions a service turns into Int (steps, staleness, status) must fit in one; compared as UInt64, never converted.
let largestIntVersion = UInt64(Int.max)
