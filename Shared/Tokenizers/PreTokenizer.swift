/// tokenizer.json's `pre_tokenizer`: the steps that cut text into words before BPE, ending with ByteLevel.
struct PreTokenizer: Sendable, Equatable {
    enum Step: Sendable, Equatable {
        /// `Split` with one of the known regexes, behaviour `Isolated`: every match is a word.
        case split(SplitPattern)
        /// `Digits`: each digit a word of its own (individual) or each run of digits one word.
        case digits(individual: Bool)
    }

    /// The steps before the final `ByteLevel`.
    var steps: [Step]
    /// ByteLevel's `add_prefix_space`: a space before every piece that does not start with one.
    var addPrefixSpace: Bool
    /// ByteLevel's `use_regex`: split with the GPT-2 pattern.
    var useRegex: Bool

    /// Appends to `words` the byte ranges of `text.bytes` to give to BPE. May rewrite `text` (prefix spaces).
    func split(_ text: inout ScalarText, into words: inout [Range<Int>], scratch: inout [Range<Int>]) {
        var pieces: [Range<Int>] = [0..<text.count]
        for step in steps {
            scratch.removeAll(keepingCapacity: true)
            for piece in pieces { Self.apply(step, text, piece, into: &scratch) }
            swap(&pieces, &scratch)
        }
        if addPrefixSpace { pieces = Self.prefixSpaces(&text, pieces) }
        if useRegex {
            scratch.removeAll(keepingCapacity: true)
            for piece in pieces { SplitPattern.gpt2.split(text, from: piece.lowerBound, to: piece.upperBound, into: &scratch) }
            swap(&pieces, &scratch)
        }
        for piece in pieces where !piece.isEmpty { words.append(text.offsets[piece.lowerBound]..<text.offsets[piece.upperBound]) }
    }

    private static func apply(_ step: Step, _ text: ScalarText, _ piece: Range<Int>, into out: inout [Range<Int>]) {
        switch step {
        case let .split(pattern):
            pattern.split(text, from: piece.lowerBound, to: piece.upperBound, into: &out)
        case let .digits(individual):
            var i = piece.lowerBound
            while i < piece.upperBound {
                var j = i + 1
                let isDigit = text.classes[i] & ScalarText.number != 0
                if !isDigit || !individual {
                    while j < piece.upperBound && (text.classes[j] & ScalarText.number != 0) == isDigit { j += 1 }
                }
                out.append(i..<j)
                i = j
            }
        }
    }

    /// Rebuilds `text` with a space before each piece that does not start with one; returns the pieces' new ranges.
    private static func prefixSpaces(_ text: inout ScalarText, _ pieces: [Range<Int>]) -> [Range<Int>] {
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        var scalarCount = 0
        for piece in pieces where !piece.isEmpty {
            let start = scalarCount
            if text.scalars[piece.lowerBound] != 0x20 {
                bytes.append(0x20)
                scalarCount += 1
            }
            bytes.append(contentsOf: text.bytes[text.offsets[piece.lowerBound]..<text.offsets[piece.upperBound]])
            scalarCount += piece.count
            ranges.append(start..<scalarCount)
        }
        bytes.withUnsafeBufferPointer { text.load($0) }
        return ranges
    }
}
