/// Why a tokenizer.json could not be loaded, naming the JSON field (a path such as `pre_tokenizer.pretokenizers[0].pattern.Regex`).
public enum TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(path: String, why: String)
    case missingField(String)
    case badField(field: String, why: String)
    /// A valid tokenizer.json feature this implementation does not have (a WordPiece model, an unknown regex, ...).
    case unsupported(field: String, value: String)

    /// The JSON field at fault, if the error is about one.
    public var field: String? {
        switch self {
        case .unreadable: nil
        case let .missingField(f): f
        case let .badField(f, _): f
        case let .unsupported(f, _): f
        }
    }

    public var description: String {
        switch self {
        case let .unreadable(p, why): "tokenizer file \(p) unreadable: \(why)"
        case let .missingField(f): "tokenizer.json lacks \(f)"
        case let .badField(f, why): "tokenizer.json \(f) is invalid: \(why)"
        case let .unsupported(f, v): "tokenizer.json \(f) = \(v) is not supported (byte-level BPE only)"
        }
    }
}
