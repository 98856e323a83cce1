/// GPT-2's byte-to-character map: byte-level BPE vocabularies spell each byte as one printable character
/// (printable Latin-1 bytes as themselves, the others as U+0100 onwards), so that no token holds a space or control.
enum ByteLevel {
    /// The character that spells each byte.
    static let characters: [Unicode.Scalar] = {
        var printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var spelling = [UInt32](repeating: 0, count: 256)
        for b in printable { spelling[b] = UInt32(b) }
        var next: UInt32 = 0x100
        for b in 0..<256 where !printable.contains(b) {
            spelling[b] = next
            next += 1
            printable.append(b)
        }
        return spelling.map { Unicode.Scalar($0)! }
    }()

    /// The byte a character spells, or nil for characters outside the 256.
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = scalar.value
        guard v < 0x144 else { return nil }
        return bytesBySpelling[Int(v)]
    }

    private static let bytesBySpelling: [UInt8?] = {
        var table = [UInt8?](repeating: nil, count: 0x144)
        for (b, c) in characters.enumerated() { table[Int(c.value)] = UInt8(b) }
        return table
    }()

    /// The bytes a token spells, or nil if some character is not a byte spelling (an added token such as "<|eot_id|>"
    /// is all printable ASCII and so does spell its own bytes; one with a space does not).
    static func bytes(spelledBy token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            guard let b = byte(for: scalar) else { return nil }
            out.append(b)
        }
        return out
    }
}
