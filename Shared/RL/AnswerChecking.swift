import Foundation

/// The answer checks the verifiers share: extraction from the completion, then exact, numeric or regex comparison.
public enum AnswerChecking {
    /// How a dataset answer is compared.
    public enum Checker: String, Codable, Sendable, CaseIterable {
        case exact, numeric, regex
    }

    /// The whole completion must be one integer (optional sign, surrounding whitespace allowed) equal to `expected`.
    public static func integer(completion: String, expected: String) -> RewardComponents {
        let text = completion.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return .wrong(format: 0, "missing answer") }
        guard let value = NumericValue(parsing: text), value.isInteger, NumericValue.isIntegerLiteral(text) else {
            return .wrong(format: 0, "malformed answer \"\(text.prefix(40))\": not an integer")
        }
        guard let target = NumericValue(parsing: expected) else { return .wrong(format: 1, "reference answer is not a number") }
        return value == target ? RewardComponents(correctness: 1, format: 1) : .wrong(format: 1, "wrong answer \(text)")
    }

    /// What follows the last `marker` (to the end of that line; `\boxed` takes the braced group), trimmed.
    public static func extract(_ completion: String, marker: String?) -> String? {
        guard let marker, !marker.isEmpty else {
            let text = completion.trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : text
        }
        guard let range = completion.range(of: marker, options: .backwards) else { return nil }
        var rest = completion[range.upperBound...]
        if marker.hasSuffix("boxed") || rest.first == "{" && marker.hasPrefix("\\") {
            guard rest.first == "{" else { return nil }
            var depth = 0
            var inside = ""
            for ch in rest {
                if ch == "{" { depth += 1; if depth == 1 { continue } }
                if ch == "}" { depth -= 1; if depth == 0 { break } }
                inside.append(ch)
            }
            guard depth == 0 else { return nil }
            let text = inside.trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : text
        }
        if let newline = rest.firstIndex(of: "\n") { rest = rest[..<newline] }
        let text = rest.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    /// Scores `completion` against `expected` with `checker`; for `regex`, `expected` is the pattern (full match).
    public static func check(completion: String, expected: String, checker: Checker, marker: String?) -> RewardComponents {
        guard let answer = extract(completion, marker: marker) else {
            return .wrong(format: 0, marker.map { "missing answer: no \"\($0)\" marker" } ?? "missing answer")
        }
        switch checker {
        case .exact:
            return answer == expected.trimmingCharacters(in: .whitespacesAndNewlines)
                ? RewardComponents(correctness: 1, format: 1) : .wrong(format: 1, "wrong answer")
        case .numeric:
            guard let value = NumericValue(parsing: answer) else {
                return .wrong(format: 0, "malformed answer \"\(answer.prefix(40))\": not a number")
            }
            guard let target = NumericValue(parsing: expected) else { return .wrong(format: 1, "reference answer is not a number") }
            return value == target ? RewardComponents(correctness: 1, format: 1) : .wrong(format: 1, "wrong answer")
        case .regex:
            guard let regex = try? NSRegularExpression(pattern: "^(?:" + expected + ")$") else {
                return .wrong(format: 1, "reference pattern does not compile")
            }
            let range = NSRange(answer.startIndex..., in: answer)
            return regex.firstMatch(in: answer, range: range) != nil
                ? RewardComponents(correctness: 1, format: 1) : .wrong(format: 1, "answer does not match")
        }
    }
}
