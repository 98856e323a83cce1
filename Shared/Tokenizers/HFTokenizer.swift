import Foundation

/// A Hugging Face byte-level BPE tokenizer (GPT-2, Llama 3, Qwen2, SmolLM2), loaded from its tokenizer.json, that
/// encodes and decodes exactly as the `tokenizers` library does.
///
/// Encoding follows the library's pipeline: added tokens are cut out of the raw text, the rest is normalized, added
/// tokens marked `normalized` are cut out of that, the pre-tokenizer splits the pieces into words, BPE encodes each
/// word, and the post-processor frames the result. Anything tokenizer.json asks for that this does not implement is
/// refused at load with a `TokenizerError` naming the field.
public struct HFTokenizer: TextTokenizer {
    public let vocabSize: Int
    /// The added tokens, special or not, in id order.
    public let addedTokens: [AddedToken]

    let model: BytePairModel
    let normalizer: TextNormalizer?
    let preTokenizer: PreTokenizer
    let postProcessor: PostProcessor
    let decoder: TokenDecoder
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// Every id's token text (added tokens over the model's), nil for ids nobody holds.
    let tokens: [String?]
    let tokenIDs: [String: Int32]
    let specialIDs: Set<Int32>
    /// Each id's decoded bytes, `decodedBytes[decodedOffsets[id]..<decodedOffsets[id + 1]]`.
    let decodedBytes: [UInt8]
    let decodedOffsets: [Int]

    /// Loads `tokenizer.json`.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw TokenizerError.unreadable(path: url.path, why: "\(error)") }
        try self.init(json: data)
    }

    /// Encodes `text`; with `addSpecialTokens` the post-processor's tokens are added (Llama 3's <|begin_of_text|>).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + postProcessor.prefix.count + postProcessor.suffix.count)
        if addSpecialTokens { out += postProcessor.prefix }
        var scratch = EncodeScratch()
        var text = text
        text.withUTF8 { utf8 in
            for piece in rawMatcher.split(utf8) {
                if let id = piece.token {
                    out.append(id)
                } else if let normalizer {
                    var normalized = normalizer.apply(String(decoding: UnsafeBufferPointer(rebasing: utf8[piece.range]), as: UTF8.self))
                    normalized.withUTF8 { encodeNormalized($0, into: &out, scratch: &scratch) }
                } else {
                    encodeNormalized(UnsafeBufferPointer(rebasing: utf8[piece.range]), into: &out, scratch: &scratch)
                }
            }
        }
        if addSpecialTokens { out += postProcessor.suffix }
        return out
    }

    /// Buffers one encode call reuses for all its pieces.
    struct EncodeScratch {
        var text = ScalarText()
        var words: [Range<Int>] = []
        var pieces: [Range<Int>] = []
        var model = BytePairModel.Scratch()
    }

    private func encodeNormalized(_ utf8: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout EncodeScratch) {
        for piece in normalizedMatcher.split(utf8) {
            if let id = piece.token {
                out.append(id)
                continue
            }
            scratch.text.load(UnsafeBufferPointer(rebasing: utf8[piece.range]))
            scratch.words.removeAll(keepingCapacity: true)
            preTokenizer.split(&scratch.text, into: &scratch.words, scratch: &scratch.pieces)
            scratch.text.bytes.withUnsafeBufferPointer { bytes in
                for word in scratch.words {
                    model.encode(UnsafeBufferPointer(rebasing: bytes[word]), into: &out, scratch: &scratch.model)
                }
            }
        }
    }

    /// The words the pre-tokenizer alone cuts `text` into (no added tokens, no normalizer), as UTF-8 bytes.
    func preTokenizedWords(_ text: String) -> [[UInt8]] {
        var scratch = EncodeScratch()
        var text = text
        var words: [[UInt8]] = []
        text.withUTF8 { utf8 in
            scratch.text.load(utf8)
            preTokenizer.split(&scratch.text, into: &scratch.words, scratch: &scratch.pieces)
            words = scratch.words.map { Array(scratch.text.bytes[$0]) }
        }
        return words
    }

    /// The text of `tokens`: ids nobody holds are skipped, and with `skipSpecialTokens` special tokens too.
    /// Invalid UTF-8 (a multi-byte character cut between tokens) becomes U+FFFD, as in `tokenizers`.
    public func decode(_ tokens: [Int32], skipSpecialTokens: Bool = false) -> String {
        let kept = tokens.filter { id in
            id >= 0 && Int(id) < self.tokens.count && self.tokens[Int(id)] != nil && !(skipSpecialTokens && specialIDs.contains(id))
        }
        switch decoder {
        case .joinedWithSpaces:
            return kept.map { self.tokens[Int($0)]! }.joined(separator: " ")
        case .byteLevel:
            var bytes: [UInt8] = []
            bytes.reserveCapacity(kept.count * 4)
            for id in kept { bytes += decodedBytes[decodedOffsets[Int(id)]..<decodedOffsets[Int(id) + 1]] }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    public func specialTokenID(_ name: String) -> Int32? {
        guard let id = tokenIDs[name], specialIDs.contains(id) else { return nil }
        return id
    }

    public func isSpecial(_ token: Int32) -> Bool { specialIDs.contains(token) }

    /// The id of any token by its vocabulary text (byte-level spelling, such as "Ġthe") or added-token content.
    public func tokenID(_ token: String) -> Int32? { tokenIDs[token] }

    /// The vocabulary text of an id, or nil.
    public func token(_ id: Int32) -> String? { id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : nil }
}
