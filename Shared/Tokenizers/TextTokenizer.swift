/// What the policy needs from a tokenizer, whichever kind it is: text to ids, ids to text, and special ids by name.
public protocol TextTokenizer: Sendable {
    /// Rows an embedding table needs: one past the largest id the tokenizer can produce.
    var vocabSize: Int { get }

    /// The ids of `text`; with `addSpecialTokens` the tokenizer's own framing (such as a bos token) is added.
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int32]

    /// The text of `tokens`; unknown ids are skipped, and with `skipSpecialTokens` so are special tokens.
    func decode(_ tokens: [Int32], skipSpecialTokens: Bool) -> String

    /// The id of a special token by its text, such as "<|eot_id|>"; nil if the tokenizer has no such special token.
    func specialTokenID(_ name: String) -> Int32?

    /// True for the ids of special tokens (those decoding with `skipSpecialTokens` drops).
    func isSpecial(_ token: Int32) -> Bool
}
