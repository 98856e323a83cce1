import Foundation

/// tokenizer.json's `normalizer`, as far as byte-level tokenizers use it: Unicode normal forms (Qwen2 uses NFC).
indirect enum TextNormalizer: Sendable, Equatable {
    case nfc, nfd, nfkc, nfkd
    case sequence([TextNormalizer])

    func apply(_ text: String) -> String {
        switch self {
        case let .sequence(steps): return steps.reduce(text) { $1.apply($0) }
        case .nfc:
            return Self.nfc(text)
        case .nfd, .nfkc, .nfkd:
            if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }  // ASCII is in every normal form
            switch self {
            case .nfd: return text.decomposedStringWithCanonicalMapping
            case .nfkc: return text.precomposedStringWithCompatibilityMapping
            default: return text.decomposedStringWithCompatibilityMapping
            }
        }
    }

    /// NFC through Foundation only where needed: the text is cut before scalars known to be normalization boundaries
    /// (NFC_Quick_Check=Yes with combining class 0), and only the stretches between them that hold other scalars are
    /// normalized; the rest is copied.
    static func nfc(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { !isBoundary($0.value) }) else { return text }
        var out: [UInt8] = []
        var text = text
        text.withUTF8 { utf8 in
            out.reserveCapacity(utf8.count + 16)
            var copied = 0  // bytes before this are in `out`
            var lastBoundary = 0  // where the latest boundary scalar starts
            var dirty = false  // a scalar since `lastBoundary` needs normalizing
            var i = 0
            func normalize(upTo end: Int) {
                out.append(contentsOf: utf8[copied..<lastBoundary])
                let stretch = String(decoding: UnsafeBufferPointer(rebasing: utf8[lastBoundary..<end]), as: UTF8.self)
                out.append(contentsOf: stretch.precomposedStringWithCanonicalMapping.utf8)
                copied = end
            }
            while i < utf8.count {
                let b0 = utf8[i]
                let width = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
                var value = UInt32(b0) & (width == 1 ? 0x7F : width == 2 ? 0x1F : width == 3 ? 0x0F : 0x07)
                for k in 1..<width { value = value << 6 | UInt32(utf8[i + k] & 0x3F) }
                if isBoundary(value) {
                    if dirty { normalize(upTo: i) }
                    dirty = false
                    lastBoundary = i
                } else if !dirty {
                    dirty = true
                }
                i += width
            }
            if dirty { normalize(upTo: utf8.count) }
            out.append(contentsOf: utf8[copied...])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A subset of the scalars with NFC_Quick_Check=Yes and canonical combining class 0, by block: nothing before them
    /// composes with them, so NFC can be computed piecewise between them.
    @inline(__always) static func isBoundary(_ v: UInt32) -> Bool {
        switch v {
        case 0..<0x300: true  // Latin-1 and Latin Extended (the first NFC_QC=No scalar is U+0340)
        case 0x400...0x482, 0x48A...0x52F: true  // Cyrillic letters
        case 0x3040...0x3098, 0x30A0...0x30FF: true  // kana, without the combining voiced marks U+3099/309A
        case 0x4E00...0x9FFF: true  // CJK unified ideographs
        case 0xAC00...0xD7A3: true  // Hangul syllables (a trailing jamo after one is not a boundary)
        case 0x200B...0x200F, 0xFE00...0xFE0F: true  // zero-width characters and variation selectors
        case 0x1F000...0x1FAFF: true  // emoji and pictographs
        default: false
        }
    }
}
