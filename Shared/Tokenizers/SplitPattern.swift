/// The pre-tokenizer split regexes of GPT-2, Llama 3 and Qwen2, recognised by their exact source text and run as
/// hand-written scanners over Unicode scalars (Swift Regex is too slow on Linux for encoding at MB/s).
///
/// Each scanner returns, for a start position, where the regex's leftmost match ends, following the regex's ordered
/// alternation and backtracking; every position matches something, so the matches tile the text.
public enum SplitPattern: Sendable, CaseIterable {
    case gpt2, llama3, qwen2

    public static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    public static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The pattern whose regex source is exactly `source`, or nil.
    public init?(source: String) {
        guard let pattern = Self.allCases.first(where: { $0.source == source }) else { return nil }
        self = pattern
    }

    public var source: String {
        switch self {
        case .gpt2: Self.gpt2Source
        case .llama3: Self.llama3Source
        case .qwen2: Self.qwen2Source
        }
    }

    /// Splits scalars `start..<end` of `text` into the pieces the regex matches, appending scalar ranges to `pieces`.
    func split(_ text: ScalarText, from start: Int, to end: Int, into pieces: inout [Range<Int>]) {
        text.classes.withUnsafeBufferPointer { classes in
            text.scalars.withUnsafeBufferPointer { scalars in
                var i = start
                while i < end {
                    let stop: Int
                    switch self {
                    case .gpt2: stop = Self.gpt2Match(classes, scalars, at: i, end: end)
                    case .llama3: stop = Self.llama3Match(classes, scalars, at: i, end: end, maxDigits: 3)
                    case .qwen2: stop = Self.llama3Match(classes, scalars, at: i, end: end, maxDigits: 1)
                    }
                    pieces.append(i..<stop)
                    i = stop
                }
            }
        }
    }

    private typealias Classes = UnsafeBufferPointer<UInt8>
    private typealias Scalars = UnsafeBufferPointer<UInt32>

    private static let letter = ScalarText.letter, number = ScalarText.number, whitespace = ScalarText.whitespace
    private static let lineBreak = ScalarText.lineBreak, space = ScalarText.space, apostrophe = ScalarText.apostrophe

    /// `[^\s\p{L}\p{N}]`
    @inline(__always) private static func isOther(_ c: UInt8) -> Bool { c & (letter | number | whitespace) == 0 }

    /// End of the run of scalars from `i` whose class has any of `bits`.
    @inline(__always) private static func run(_ classes: Classes, from i: Int, end: Int, _ bits: UInt8) -> Int {
        var j = i
        while j < end && classes[j] & bits != 0 { j += 1 }
        return j
    }

    @inline(__always) private static func runOfOther(_ classes: Classes, from i: Int, end: Int) -> Int {
        var j = i
        while j < end && isOther(classes[j]) { j += 1 }
        return j
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: a run of two or more before a non-space gives its last one back.
    @inline(__always) private static func whitespaceRun(_ classes: Classes, from i: Int, end: Int) -> Int {
        let j = run(classes, from: i, end: end, whitespace)
        return j == end || j - i < 2 ? j : j - 1
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, case-sensitive or not: the end of the contraction at `i`, or nil.
    @inline(__always) private static func contraction(_ scalars: Scalars, at i: Int, end: Int, foldCase: Bool) -> Int? {
        guard i + 1 < end else { return nil }
        let a = foldCase ? fold(scalars[i + 1]) : scalars[i + 1]
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }  // s t m d
        guard i + 2 < end else { return nil }
        let b = foldCase ? fold(scalars[i + 2]) : scalars[i + 2]
        if (a == 0x72 || a == 0x76) && b == 0x65 { return i + 3 }  // re ve
        if a == 0x6C && b == 0x6C { return i + 3 }  // ll
        return nil
    }

    /// Simple case folding as far as the contraction letters need it: ASCII, and U+017F LONG S folds to s.
    @inline(__always) private static func fold(_ v: UInt32) -> UInt32 {
        if v >= 0x41 && v <= 0x5A { return v + 0x20 }
        return v == 0x17F ? 0x73 : v
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    private static func gpt2Match(_ classes: Classes, _ scalars: Scalars, at i: Int, end: Int) -> Int {
        let c = classes[i]
        if c & apostrophe != 0, let stop = contraction(scalars, at: i, end: end, foldCase: false) { return stop }
        let nextClass: UInt8 = c & space != 0 && i + 1 < end ? classes[i + 1] : 0  // after an optional leading space
        if c & letter != 0 { return run(classes, from: i + 1, end: end, letter) }
        if nextClass & letter != 0 { return run(classes, from: i + 2, end: end, letter) }
        if c & number != 0 { return run(classes, from: i + 1, end: end, number) }
        if nextClass & number != 0 { return run(classes, from: i + 2, end: end, number) }
        if isOther(c) { return runOfOther(classes, from: i + 1, end: end) }
        if c & space != 0 && i + 1 < end && isOther(nextClass) { return runOfOther(classes, from: i + 2, end: end) }
        return whitespaceRun(classes, from: i, end: end)
    }

    /// Llama 3 (`\p{N}{1,3}`) and Qwen2 (`\p{N}`):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    private static func llama3Match(_ classes: Classes, _ scalars: Scalars, at i: Int, end: Int, maxDigits: Int) -> Int {
        let c = classes[i]
        if c & apostrophe != 0, let stop = contraction(scalars, at: i, end: end, foldCase: true) { return stop }
        let nextClass: UInt8 = i + 1 < end ? classes[i + 1] : 0
        if c & (lineBreak | letter | number) == 0 && nextClass & letter != 0 {
            return run(classes, from: i + 2, end: end, letter)
        }
        if c & letter != 0 { return run(classes, from: i + 1, end: end, letter) }
        if c & number != 0 {
            var j = i + 1
            while j < end && j - i < maxDigits && classes[j] & number != 0 { j += 1 }
            return j
        }
        var stop = -1
        if c & space != 0 && isOther(nextClass) && i + 1 < end {
            stop = runOfOther(classes, from: i + 2, end: end)
        } else if isOther(c) {
            stop = runOfOther(classes, from: i + 1, end: end)
        }
        if stop >= 0 { return run(classes, from: stop, end: end, lineBreak) }
        // a whitespace scalar: `\s*[\r\n]+` ends after the run's last line break, if it has one
        let runEnd = run(classes, from: i, end: end, whitespace)
        var k = runEnd - 1
        while k >= i && classes[k] & lineBreak == 0 { k -= 1 }
        if k >= i { return k + 1 }
        return runEnd == end || runEnd - i < 2 ? runEnd : runEnd - 1
    }
}
