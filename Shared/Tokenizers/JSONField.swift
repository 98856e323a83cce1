import Foundation

/// A JSON object read with JSONSerialization that knows its path in the file, so that every error names its field.
struct JSONField {
    let value: [String: Any]
    let path: String

    init(_ value: [String: Any], path: String) {
        self.value = value
        self.path = path
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Absent or null. (The type is compared rather than cast: on Linux `is NSNull` bridges a whole vocabulary first.)
    func isNull(_ key: String) -> Bool {
        guard let found = value[key] else { return true }
        return type(of: found) == NSNull.self
    }

    func object(_ key: String) throws -> JSONField {
        guard !isNull(key) else { throw TokenizerError.missingField(name(key)) }
        guard let object = value[key] as? [String: Any] else { throw TokenizerError.badField(field: name(key), why: "not an object") }
        return JSONField(object, path: name(key))
    }

    func optionalObject(_ key: String) throws -> JSONField? { isNull(key) ? nil : try object(key) }

    func string(_ key: String) throws -> String {
        guard !isNull(key) else { throw TokenizerError.missingField(name(key)) }
        guard let s = value[key] as? String else { throw TokenizerError.badField(field: name(key), why: "not a string") }
        return s
    }

    func optionalString(_ key: String) throws -> String? { isNull(key) ? nil : try string(key) }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard !isNull(key) else { return fallback }
        guard let b = value[key] as? Bool else { throw TokenizerError.badField(field: name(key), why: "not a boolean") }
        return b
    }

    func int(_ key: String) throws -> Int {
        guard !isNull(key) else { throw TokenizerError.missingField(name(key)) }
        guard let n = value[key] as? Int else { throw TokenizerError.badField(field: name(key), why: "not an integer") }
        return n
    }

    func array(_ key: String) throws -> [Any] {
        guard !isNull(key) else { throw TokenizerError.missingField(name(key)) }
        guard let a = value[key] as? [Any] else { throw TokenizerError.badField(field: name(key), why: "not an array") }
        return a
    }

    /// The objects of an array field, each with its indexed path (`added_tokens[3]`).
    func objects(_ key: String) throws -> [JSONField] {
        try array(key).enumerated().map { i, element in
            guard let object = element as? [String: Any] else { throw TokenizerError.badField(field: "\(name(key))[\(i)]", why: "not an object") }
            return JSONField(object, path: "\(name(key))[\(i)]")
        }
    }
}
