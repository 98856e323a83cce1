import Foundation

/// An exact rational read from an answer: integers, decimals, `a/b` and `\frac{a}{b}`, with sign, `$`, `%`-free.
/// Values too large for Int64 arithmetic fall back to Double comparison with a relative tolerance.
public struct NumericValue: Sendable, Equatable, CustomStringConvertible {
    public let numerator: Int
    public let denominator: Int  // > 0, reduced
    public let approximate: Double

    public init?(parsing raw: String) {
        var text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        text = text.replacingOccurrences(of: "\u{2212}", with: "-")  // typographic minus
        if text.hasPrefix("$") { text.removeFirst() }
        if text.hasSuffix(".") { text.removeLast() }
        if text.hasPrefix("\\frac{") || text.hasPrefix("-\\frac{") {
            let negative = text.hasPrefix("-")
            let body = text.drop(while: { $0 != "{" })
            let parts = body.split(separator: "}", omittingEmptySubsequences: true).map { $0.replacingOccurrences(of: "{", with: "") }
            guard parts.count == 2, let n = NumericValue(parsing: (negative ? "-" : "") + parts[0]), let d = NumericValue(parsing: parts[1]) else { return nil }
            guard let q = n.divided(by: d) else { return nil }
            self = q
            return
        }
        if let slash = text.firstIndex(of: "/") {
            guard let n = NumericValue(parsing: String(text[..<slash])), let d = NumericValue(parsing: String(text[text.index(after: slash)...])) else { return nil }
            guard let q = n.divided(by: d) else { return nil }
            self = q
            return
        }
        guard let value = Self.parseDecimal(text) else { return nil }
        self = value
    }

    init(numerator: Int, denominator: Int, approximate: Double) {
        self.numerator = numerator
        self.denominator = denominator
        self.approximate = approximate
    }

    public var isInteger: Bool { denominator == 1 }

    public var description: String { denominator == 1 ? "\(numerator)" : "\(numerator)/\(denominator)" }

    /// `[+-]?digits` with nothing else: the strict shape integer tasks ask for.
    public static func isIntegerLiteral(_ text: String) -> Bool {
        var body = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\u{2212}", with: "-"))
        if body.first == "-" || body.first == "+" { body = body.dropFirst() }
        return !body.isEmpty && body.allSatisfy { $0.isASCII && $0.isNumber }
    }

    public static func == (a: NumericValue, b: NumericValue) -> Bool {
        if a.denominator > 0, b.denominator > 0 {
            let (l, o1) = a.numerator.multipliedReportingOverflow(by: b.denominator)
            let (r, o2) = b.numerator.multipliedReportingOverflow(by: a.denominator)
            if !o1, !o2 { return l == r }
        }
        let scale = max(abs(a.approximate), abs(b.approximate), 1)
        return abs(a.approximate - b.approximate) <= 1e-9 * scale
    }

    func divided(by other: NumericValue) -> NumericValue? {
        guard other.approximate != 0 else { return nil }
        let approx = approximate / other.approximate
        guard denominator > 0, other.denominator > 0 else { return NumericValue(numerator: 0, denominator: 0, approximate: approx) }
        let (n, o1) = numerator.multipliedReportingOverflow(by: other.denominator)
        let (d, o2) = denominator.multipliedReportingOverflow(by: other.numerator)
        guard !o1, !o2, d != 0 else { return NumericValue(numerator: 0, denominator: 0, approximate: approx) }
        return Self.reduced(d < 0 ? -n : n, abs(d), approx)
    }

    /// `[+-]?digits[.digits]` with optional thousands commas; denominator 0 marks "too big, use approximate".
    static func parseDecimal(_ text: String) -> NumericValue? {
        var body = Substring(text)
        var negative = false
        if body.first == "-" || body.first == "+" { negative = body.first == "-"; body = body.dropFirst() }
        let cleaned = body.replacingOccurrences(of: ",", with: "")
        let pieces = cleaned.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count <= 2 else { return nil }
        let whole = pieces[0]
        let fraction = pieces.count == 2 ? pieces[1] : ""
        guard !(whole.isEmpty && fraction.isEmpty),
              whole.allSatisfy({ $0.isASCII && $0.isNumber }), fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if body.contains(","), !Self.validThousands(String(body.split(separator: ".", omittingEmptySubsequences: false)[0])) { return nil }
        guard let approx = Double((negative ? "-" : "") + (whole.isEmpty ? "0" : String(whole)) + (fraction.isEmpty ? "" : "." + fraction)) else { return nil }
        let digits = String(whole) + String(fraction)
        guard digits.count <= 18, let magnitude = Int(digits.isEmpty ? "0" : digits) else {
            return NumericValue(numerator: 0, denominator: 0, approximate: approx)
        }
        let denominator = ArithmeticEnvironment.power10(fraction.count)
        return reduced(negative ? -magnitude : magnitude, denominator, approx)
    }

    static func validThousands(_ whole: String) -> Bool {
        let groups = whole.split(separator: ",", omittingEmptySubsequences: false)
        guard let first = groups.first, (1...3).contains(first.count) else { return false }
        return groups.dropFirst().allSatisfy { $0.count == 3 }
    }

    static func reduced(_ n: Int, _ d: Int, _ approx: Double) -> NumericValue {
        var a = abs(n), b = d
        while b != 0 { (a, b) = (b, a % b) }
        let g = max(a, 1)
        return NumericValue(numerator: n / g, denominator: d / g, approximate: approx)
    }
}
