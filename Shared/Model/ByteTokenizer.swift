import Tokenizers
/// Byte-level tokenizer: tokens 0...255 are UTF-8 bytes, then the special tokens bos, eos and pad.
public struct ByteTokenizer: Sendable {
    public static let bos: Int32 = 256
    public static let eos: Int32 = 257
    public static let pad: Int32 = 258
    public static let vocabSize: Int = 259

    public init() {}

    /// The UTF-8 bytes of `text`; no special tokens are added.
    public func encode(_ text: String) -> [Int32] {
        text.utf8.map { Int32($0) }
    }

    /// Bytes back to text: special and out-of-range tokens are skipped, invalid UTF-8 becomes U+FFFD.
    public func decode(_ tokens: [Int32]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tokens.count)
        for t in tokens where t >= 0 && t < 256 { bytes.append(UInt8(t)) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// True for bos, eos and pad.
    public static func isSpecial(_ token: Int32) -> Bool { token >= 256 }
}

extension ByteTokenizer: TextTokenizer {
    public var vocabSize: Int { Self.vocabSize }

    /// With `addSpecialTokens`, bos first (the framing of a bare prompt).
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        (addSpecialTokens ? [Self.bos] : []) + encode(text)
    }

    /// Special tokens never decode to text, so both ways are the same.
    public func decode(_ tokens: [Int32], skipSpecialTokens: Bool) -> String { decode(tokens) }

    public func specialTokenID(_ name: String) -> Int32? {
        switch name {
        case "<bos>": Self.bos
        case "<eos>": Self.eos
        case "<pad>": Self.pad
        default: nil
        }
    }

    public func isSpecial(_ token: Int32) -> Bool { Self.isSpecial(token) }
}
