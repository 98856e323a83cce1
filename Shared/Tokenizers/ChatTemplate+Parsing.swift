extension ChatTemplate {
    /// Parses the template syntax described on `ChatTemplate`.
    public init(parsing source: String) throws {
        var seen: Set<String> = []
        for (line, statement) in Self.statements(source) {
            let text = statement.trimmingCharacters(in: " \t\r")
            if text.isEmpty || text.hasPrefix("#") { continue }
            guard let equals = text.firstIndex(of: "=") else { throw ChatTemplateError.badLine(line: line, why: "expected key = \"text\"") }
            let key = text[..<equals].trimmingCharacters(in: " \t")
            let value = try Self.quoted(text[text.index(after: equals)...].trimmingCharacters(in: " \t"), line: line)
            guard seen.insert(key).inserted else { throw ChatTemplateError.duplicateKey(line: line, key: key) }
            switch key {
            case "begin": begin = value
            case "generation": generation = value
            case "default_system": defaultSystem = value
            case "message": message = try Self.parts(value, line: line)
            default:
                guard key.hasPrefix("message."), key.count > "message.".count else { throw ChatTemplateError.unknownKey(line: line, key: key) }
                roleMessages[String(key.dropFirst("message.".count))] = try Self.parts(value, line: line)
            }
        }
        guard seen.contains("message") else { throw ChatTemplateError.missingKey("message") }
    }

    /// The settings of a source with their line numbers: one per line, or several on a line separated by `;`
    /// outside quotes (so that a whole template fits in a one-line TOML string).
    private static func statements(_ source: String) -> [(line: Int, text: String)] {
        var out: [(Int, String)] = []
        var current = "", line = 1, inQuotes = false, escaping = false, comment = false
        for c in source {
            if c == "\n" || c == "\r\n" {
                out.append((line, current))
                current = ""
                line += 1
                inQuotes = false
                comment = false
                continue
            }
            if comment { continue }
            if inQuotes {
                if escaping { escaping = false } else if c == "\\" { escaping = true } else if c == "\"" { inQuotes = false }
            } else if c == "\"" {
                inQuotes = true
            } else if c == "#" && current.allSatisfy({ $0 == " " || $0 == "\t" }) {
                comment = true
            } else if c == ";" {
                out.append((line, current))
                current = ""
                continue
            }
            current.append(c)
        }
        out.append((line, current))
        return out
    }

    /// The text of a double-quoted value, escapes undone.
    private static func quoted(_ value: String, line: Int) throws -> String {
        guard value.count >= 2, value.first == "\"", value.last == "\"" else {
            throw ChatTemplateError.badLine(line: line, why: "the value must be one double-quoted string")
        }
        var out = ""
        var iterator = value.dropFirst().dropLast().makeIterator()
        while let c = iterator.next() {
            if c == "\"" { throw ChatTemplateError.badLine(line: line, why: "unescaped \" inside the value") }
            guard c == "\\" else {
                out.append(c)
                continue
            }
            switch iterator.next() {
            case "n": out += "\n"
            case "t": out += "\t"
            case "r": out += "\r"
            case "\"": out += "\""
            case "\\": out += "\\"
            case let other: throw ChatTemplateError.badLine(line: line, why: "unknown escape \\\(other.map(String.init) ?? "")")
            }
        }
        return out
    }

    /// A message text cut at its placeholders.
    private static func parts(_ value: String, line: Int) throws -> [Part] {
        var parts: [Part] = []
        var literal = ""
        var rest = Substring(value)
        while let c = rest.first {
            if rest.hasPrefix("{{") || rest.hasPrefix("}}") {
                literal.append(c)
                rest = rest.dropFirst(2)
            } else if c == "{" {
                guard let close = rest.firstIndex(of: "}") else { throw ChatTemplateError.badLine(line: line, why: "unclosed {") }
                let name = String(rest[rest.index(after: rest.startIndex)..<close])
                let part: Part
                switch name {
                case "role": part = .role
                case "content": part = .content
                case "content|trim": part = .trimmedContent
                default: throw ChatTemplateError.unknownPlaceholder(line: line, placeholder: name)
                }
                if !literal.isEmpty { parts.append(.text(literal)) }
                literal = ""
                parts.append(part)
                rest = rest[rest.index(after: close)...]
            } else if c == "}" {
                throw ChatTemplateError.badLine(line: line, why: "lone } (write }} for a brace)")
            } else {
                literal.append(c)
                rest = rest.dropFirst()
            }
        }
        if !literal.isEmpty { parts.append(.text(literal)) }
        return parts
    }
}

private extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let chars = Array(self)
        var start = 0, end = chars.count
        while start < end && set.contains(chars[start]) { start += 1 }
        while end > start && set.contains(chars[end - 1]) { end -= 1 }
        return String(chars[start..<end])
    }
}
