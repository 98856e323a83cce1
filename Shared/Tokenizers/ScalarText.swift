/// A piece of text decoded once into what the split patterns look at: each Unicode scalar's value, class and byte offset.
/// Buffers are reused from segment to segment of one encode call, and only grow.
struct ScalarText {
    static let letter: UInt8 = 1  // \p{L}
    static let number: UInt8 = 2  // \p{N}
    static let whitespace: UInt8 = 4  // \s: White_Space
    static let lineBreak: UInt8 = 8  // \r or \n
    static let space: UInt8 = 16  // U+0020 only
    static let apostrophe: UInt8 = 32  // U+0027 only

    var bytes: [UInt8] = []
    /// Scalars in the buffers below; they may be longer.
    private(set) var count = 0
    private(set) var classes: [UInt8] = []
    private(set) var scalars: [UInt32] = []
    /// Byte offset of each scalar, then the byte count: `count + 1` entries in use.
    private(set) var offsets: [Int] = []

    /// Replaces the content with `utf8`, which must be valid UTF-8 (it comes from a String).
    mutating func load(_ utf8: UnsafeBufferPointer<UInt8>) {
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: utf8)
        let n = utf8.count
        if scalars.count < n + 1 {
            classes = [UInt8](repeating: 0, count: n + 1)
            scalars = [UInt32](repeating: 0, count: n + 1)
            offsets = [Int](repeating: 0, count: n + 1)
        }
        let table = Self.basicPlaneClasses
        var k = 0
        table.withUnsafeBufferPointer { table in
            classes.withUnsafeMutableBufferPointer { classes in
                scalars.withUnsafeMutableBufferPointer { scalars in
                    offsets.withUnsafeMutableBufferPointer { offsets in
                        var i = 0
                        while i < n {
                            let b0 = utf8[i]
                            offsets[k] = i
                            var value: UInt32
                            if b0 < 0x80 {
                                value = UInt32(b0)
                                i += 1
                            } else if b0 < 0xE0 {
                                value = UInt32(b0 & 0x1F) << 6 | UInt32(utf8[i + 1] & 0x3F)
                                i += 2
                            } else if b0 < 0xF0 {
                                value = UInt32(b0 & 0x0F) << 12 | UInt32(utf8[i + 1] & 0x3F) << 6 | UInt32(utf8[i + 2] & 0x3F)
                                i += 3
                            } else {
                                value = UInt32(b0 & 0x07) << 18 | UInt32(utf8[i + 1] & 0x3F) << 12
                                value |= UInt32(utf8[i + 2] & 0x3F) << 6 | UInt32(utf8[i + 3] & 0x3F)
                                i += 4
                            }
                            scalars[k] = value
                            classes[k] = value < 0x10000 ? table[Int(value)] : Self.classify(value)
                            k += 1
                        }
                        offsets[k] = n
                    }
                }
            }
        }
        count = k
    }

    /// The class of every scalar of the Basic Multilingual Plane, computed once (64 KB).
    static let basicPlaneClasses: [UInt8] = (0..<0x10000).map { classify(UInt32($0)) }

    /// The class bits of one scalar, from the Unicode general category and White_Space property.
    static func classify(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return 0 }
        var bits: UInt8 = 0
        if value == 0x20 { bits |= space }
        if value == 0x0A || value == 0x0D { bits |= lineBreak }
        if value == 0x27 { bits |= apostrophe }
        let properties = scalar.properties
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: bits |= letter
        case .decimalNumber, .letterNumber, .otherNumber: bits |= number
        default: if properties.isWhitespace { bits |= whitespace }
        }
        return bits
    }
}
