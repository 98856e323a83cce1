/// Why a chat template could not be parsed, naming the line (1-based) and what was wrong on it.
public enum ChatTemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    case badLine(line: Int, why: String)
    case unknownKey(line: Int, key: String)
    case duplicateKey(line: Int, key: String)
    case unknownPlaceholder(line: Int, placeholder: String)
    case missingKey(String)

    public var description: String {
        switch self {
        case let .badLine(l, why): "chat template line \(l): \(why)"
        case let .unknownKey(l, k): "chat template line \(l): unknown key \(k) (begin, message, message.ROLE, default_system, generation)"
        case let .duplicateKey(l, k): "chat template line \(l): \(k) set twice"
        case let .unknownPlaceholder(l, p): "chat template line \(l): unknown placeholder {\(p)} ({role}, {content}, {content|trim})"
        case let .missingKey(k): "chat template lacks \(k)"
        }
    }
}
