import Testing
import Wire

/// One validation rule under test: how a valid message is broken in one field, and the refusal that must follow.
struct Breakage<Message: Sendable>: Sendable, CustomTestStringConvertible {
    var field: String
    var reason: String
    var rule: String
    var breakIt: @Sendable (inout Message) -> Void

    init(_ rule: String, field: String, reason: String, _ breakIt: @escaping @Sendable (inout Message) -> Void) {
        self.rule = rule
        self.field = field
        self.reason = reason
        self.breakIt = breakIt
    }

    var testDescription: String { "\(rule) -> \(field)" }
}

/// A change that stays within the rules (the edge of a range): the message must still pass.
struct Edge<Message: Sendable>: Sendable, CustomTestStringConvertible {
    var rule: String
    var change: @Sendable (inout Message) -> Void

    init(_ rule: String, _ change: @escaping @Sendable (inout Message) -> Void) {
        self.rule = rule
        self.change = change
    }

    var testDescription: String { rule }
}

/// The error `body` throws, or nil if it throws none (a test expecting a refusal then fails on the comparison).
func refusal(_ body: () throws -> Void) -> WireError? {
    do {
        try body()
        return nil
    } catch let error as WireError {
        return error
    } catch {
        Issue.record("not a WireError: \(error)")
        return nil
    }
}

let maxUInt64Text = "18446744073709551615"
