/// A token added on top of the BPE vocabulary (special tokens such as "<|eot_id|>" and plain added tokens), matched
/// in the text before anything else, with the flags of tokenizer.json's `added_tokens`.
public struct AddedToken: Sendable, Equatable {
    public var id: Int32
    public var content: String
    public var singleWord = false
    public var leftStrip = false
    public var rightStrip = false
    /// Matched in the normalized text (true) or in the raw text (false).
    public var normalized = true
    public var special = false
}
