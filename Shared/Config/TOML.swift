import Foundation

/// A value from a TOML file.
public enum TOMLValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])

    /// The text a flag or environment variable would carry for this value.
    public var description: String {
        switch self {
        case let .string(text): text
        case let .integer(number): String(number)
        case let .float(number): String(number)
        case let .boolean(flag): String(flag)
        case let .array(items): items.map(\.description).joined(separator: ",")
        }
    }
}

public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public var source: String
    public var line: Int
    public var problem: String
    public init(source: String, line: Int, problem: String) {
        self.source = source
        self.line = line
        self.problem = problem
    }
    public var description: String { "\(source):\(line): \(problem)" }
}

/// The subset of TOML that run files use: tables, dotted table headers, bare or quoted keys, strings,
/// integers, floats, booleans and one-line arrays of those. Keys come back flattened, `table.key`.
public enum TOML {
    public static func parse(_ text: String, source: String = "<toml>") throws -> [String: TOMLValue] {
        var values: [String: TOMLValue] = [:]
        var table = ""
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            func fail(_ problem: String) -> TOMLError { TOMLError(source: source, line: lineNumber, problem: problem) }
            var scanner = Scanner(Array(rawLine.unicodeScalars), fail: fail)
            scanner.skipSpaces()
            if scanner.atEnd || scanner.peek == "#" { continue }
            if scanner.peek == "[" {
                scanner.advance()
                if scanner.peek == "[" { throw fail("arrays of tables are not supported") }
                table = try scanner.dottedKey().joined(separator: ".")
                scanner.skipSpaces()
                guard scanner.peek == "]" else { throw fail("expected ] after table name") }
                scanner.advance()
                try scanner.expectLineEnd()
                continue
            }
            let key = try scanner.dottedKey().joined(separator: ".")
            scanner.skipSpaces()
            guard scanner.peek == "=" else { throw fail("expected = after key '\(key)'") }
            scanner.advance()
            scanner.skipSpaces()
            let value = try scanner.value()
            try scanner.expectLineEnd()
            let fullKey = table.isEmpty ? key : "\(table).\(key)"
            guard values[fullKey] == nil else { throw fail("key '\(fullKey)' is defined twice") }
            values[fullKey] = value
        }
        return values
    }

    public static func parse(contentsOf path: String) throws -> [String: TOMLValue] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw TOMLError(source: path, line: 0, problem: "cannot read the file: \(error.localizedDescription)")
        }
        return try parse(text, source: path)
    }

    /// Renders flattened keys back to TOML text (for StartRun messages and the run state).
    public static func render(_ values: [String: String]) -> String {
        var byTable: [String: [(String, String)]] = [:]
        for (key, value) in values {
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            if parts.count == 2 { byTable[parts[0], default: []].append((parts[1], value)) } else { byTable["", default: []].append((key, value)) }
        }
        var lines: [String] = []
        for table in byTable.keys.sorted() {
            if !table.isEmpty { lines.append("\n[\(table)]") }
            for (key, value) in byTable[table]!.sorted(by: { $0.0 < $1.0 }) {
                lines.append("\(key) = \(quoted(value))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}

private struct Scanner {
    let scalars: [Unicode.Scalar]
    var position = 0
    let fail: (String) -> TOMLError

    init(_ scalars: [Unicode.Scalar], fail: @escaping (String) -> TOMLError) {
        self.scalars = scalars
        self.fail = fail
    }

    var atEnd: Bool { position >= scalars.count }
    var peek: Unicode.Scalar? { atEnd ? nil : scalars[position] }
    mutating func advance() { position += 1 }
    mutating func skipSpaces() { while let c = peek, c == " " || c == "\t" || c == "\r" { advance() } }

    mutating func expectLineEnd() throws {
        skipSpaces()
        if atEnd || peek == "#" { return }
        throw fail("unexpected '\(String(scalars[position...].map(Character.init)))' at the end of the line")
    }

    mutating func dottedKey() throws -> [String] {
        var parts: [String] = []
        repeat {
            if !parts.isEmpty { advance() }
            skipSpaces()
            parts.append(try simpleKey())
            skipSpaces()
        } while peek == "."
        return parts
    }

    mutating func simpleKey() throws -> String {
        if peek == "\"" { return try basicString() }
        if peek == "'" { return try literalString() }
        var key = ""
        while let c = peek, c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-" {
            key.unicodeScalars.append(c)
            advance()
        }
        guard !key.isEmpty else { throw fail("expected a key") }
        return key
    }

    mutating func value() throws -> TOMLValue {
        guard let c = peek else { throw fail("expected a value") }
        switch c {
        case "\"": return .string(try basicString())
        case "'": return .string(try literalString())
        case "[":
            advance()
            var items: [TOMLValue] = []
            while true {
                skipSpaces()
                if peek == "]" { advance(); return .array(items) }
                items.append(try value())
                skipSpaces()
                if peek == "," { advance(); continue }
                guard peek == "]" else { throw fail("expected , or ] in array") }
            }
        default:
            var token = ""
            while let c = peek, c != " ", c != "\t", c != ",", c != "]", c != "#", c != "\r" {
                token.unicodeScalars.append(c)
                advance()
            }
            if token == "true" { return .boolean(true) }
            if token == "false" { return .boolean(false) }
            let digits = token.replacingOccurrences(of: "_", with: "")
            if let integer = Int(digits) { return .integer(integer) }
            if let number = Double(digits), digits.contains(where: { ".eE".contains($0) }) || digits.hasSuffix("inf") || digits == "nan" {
                return .float(number)
            }
            throw fail("'\(token)' is not a TOML value (strings need quotes)")
        }
    }

    mutating func basicString() throws -> String {
        advance()
        var text = ""
        while let c = peek {
            advance()
            if c == "\"" { return text }
            if c == "\\" {
                guard let escaped = peek else { break }
                advance()
                switch escaped {
                case "n": text += "\n"
                case "t": text += "\t"
                case "\"": text += "\""
                case "\\": text += "\\"
                case "r": text += "\r"
                default: throw fail("unknown escape \\\(escaped)")
                }
            } else {
                text.unicodeScalars.append(c)
            }
        }
        throw fail("unterminated string")
    }

    mutating func literalString() throws -> String {
        advance()
        var text = ""
        while let c = peek {
            advance()
            if c == "'" { return text }
            text.unicodeScalars.append(c)
        }
        throw fail("unterminated string")
    }
}
