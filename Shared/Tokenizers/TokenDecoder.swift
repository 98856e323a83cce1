/// tokenizer.json's `decoder`.
enum TokenDecoder: Sendable, Equatable {
    /// Undo the byte spelling; a token with a character outside it contributes its own UTF-8 bytes.
    case byteLevel
    /// No decoder: tokens joined with spaces, as `tokenizers` does.
    case joinedWithSpaces
}
