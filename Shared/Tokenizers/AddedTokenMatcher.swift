/// Finds added tokens in text the way `tokenizers` does: leftmost-longest, non-overlapping matches, then the
/// single-word, left-strip and right-strip rules, which can drop a match or widen it over whitespace.
struct AddedTokenMatcher: Sendable {
    private let tokens: [AddedToken]
    private let patterns: [[UInt8]]
    private let byFirstByte: [[Int]]  // indices of patterns by their first byte, longest first
    private let startsAPattern: [Bool]  // by byte: the scan skips other bytes without touching `byFirstByte`

    var isEmpty: Bool { tokens.isEmpty }

    /// `patterns[i]` is what `tokens[i]` matches (its content, normalized for normalized tokens).
    init(tokens: [AddedToken], patterns: [String]) {
        self.tokens = tokens
        let bytes = patterns.map { Array($0.utf8) }
        self.patterns = bytes
        var table = [[Int]](repeating: [], count: 256)
        for (i, p) in bytes.enumerated() where !p.isEmpty { table[Int(p[0])].append(i) }
        for b in 0..<256 { table[b].sort { bytes[$0].count > bytes[$1].count } }
        byFirstByte = table
        startsAPattern = table.map { !$0.isEmpty }
    }

    /// A piece of the text: a byte range, and the id of the added token it is, if it is one.
    struct Piece {
        var range: Range<Int>
        var token: Int32?
    }

    /// The pieces of `text`, covering it, in order.
    func split(_ text: UnsafeBufferPointer<UInt8>) -> [Piece] {
        let n = text.count
        if tokens.isEmpty { return n == 0 ? [] : [Piece(range: 0..<n, token: nil)] }
        var pieces: [Piece] = []
        var emitted = 0
        var position = 0
        let starts = startsAPattern
        while position < n {
            guard starts[Int(text[position])], let found = longestMatch(text, at: position) else {
                position += 1
                continue
            }
            var start = position
            var stop = position + patterns[found].count
            position = stop  // matching resumes after the match itself, whatever the strips widen
            let token = tokens[found]
            if token.singleWord {
                let startsWord = start == 0 || !Self.endsWithWordCharacter(text, before: start)
                let stopsWord = stop == n || !Self.startsWithWordCharacter(text, at: stop)
                if !startsWord || !stopsWord { continue }
            }
            if token.leftStrip { start = max(Self.whitespaceStart(text, before: start), emitted) }
            if token.rightStrip { stop = Self.whitespaceEnd(text, from: stop) }
            if emitted < start { pieces.append(Piece(range: emitted..<start, token: nil)) }
            pieces.append(Piece(range: start..<stop, token: token.id))
            emitted = stop
        }
        if emitted != n { pieces.append(Piece(range: emitted..<n, token: nil)) }
        return pieces
    }

    private func longestMatch(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
        for candidate in byFirstByte[Int(text[i])] {
            let p = patterns[candidate]
            if i + p.count > text.count { continue }
            var equal = true
            for k in 1..<p.count where text[i + k] != p[k] {
                equal = false
                break
            }
            if equal { return candidate }
        }
        return nil
    }

    // MARK: the scalars around a match (Rust regex `\w` and `\s`, which the library uses for these rules)

    private static func scalar(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> (Unicode.Scalar, Int) {
        var decoder = UTF8()
        var iterator = UnsafeBufferPointer(rebasing: text[i...]).makeIterator()
        guard case let .scalarValue(s) = decoder.decode(&iterator) else { return ("\u{FFFD}", 1) }
        return (s, UTF8.width(s))
    }

    private static func scalar(_ text: UnsafeBufferPointer<UInt8>, endingAt end: Int) -> (Unicode.Scalar, Int) {
        var start = end - 1
        while start > 0 && text[start] & 0xC0 == 0x80 { start -= 1 }
        return (scalar(text, at: start).0, end - start)
    }

    /// Rust regex's Unicode `\w`: alphabetic, marks, decimal digits, connector punctuation, join controls.
    private static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    private static func endsWithWordCharacter(_ text: UnsafeBufferPointer<UInt8>, before i: Int) -> Bool {
        isWordCharacter(scalar(text, endingAt: i).0)
    }

    private static func startsWithWordCharacter(_ text: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        isWordCharacter(scalar(text, at: i).0)
    }

    /// Where the whitespace just before `i` begins.
    private static func whitespaceStart(_ text: UnsafeBufferPointer<UInt8>, before i: Int) -> Int {
        var start = i
        while start > 0 {
            let (s, width) = scalar(text, endingAt: start)
            guard s.properties.isWhitespace else { break }
            start -= width
        }
        return start
    }

    /// Where the whitespace from `i` ends.
    private static func whitespaceEnd(_ text: UnsafeBufferPointer<UInt8>, from i: Int) -> Int {
        var end = i
        while end < text.count {
            let (s, width) = scalar(text, at: end)
            guard s.properties.isWhitespace else { break }
            end += width
        }
        return end
    }
}
