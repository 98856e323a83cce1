/// Shape of a GPT-2-style model: vocabulary, context, depth, heads and width.
public struct GPTConfig: Sendable, Codable, Equatable, Hashable {
    public var vocabSize: Int
    public var contextLength: Int
    public var layers: Int
    public var heads: Int
    public var channels: Int

    public init(vocabSize: Int = ByteTokenizer.vocabSize, contextLength: Int, layers: Int, heads: Int, channels: Int) {
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.layers = layers
        self.heads = heads
        self.channels = channels
    }

    /// Channels per attention head.
    public var headSize: Int { channels / heads }

    /// Throws `GPTConfigError` naming the first field that cannot work.
    public func validate() throws {
        if vocabSize < 1 { throw GPTConfigError(field: "vocabSize", reason: "must be at least 1, got \(vocabSize)") }
        if contextLength < 1 { throw GPTConfigError(field: "contextLength", reason: "must be at least 1, got \(contextLength)") }
        if layers < 1 { throw GPTConfigError(field: "layers", reason: "must be at least 1, got \(layers)") }
        if heads < 1 { throw GPTConfigError(field: "heads", reason: "must be at least 1, got \(heads)") }
        if channels < 1 { throw GPTConfigError(field: "channels", reason: "must be at least 1, got \(channels)") }
        if channels % heads != 0 {
            throw GPTConfigError(field: "channels", reason: "\(channels) is not divisible by heads (\(heads))")
        }
    }
}

/// A configuration field that cannot work, and why.
public struct GPTConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public var description: String { "GPTConfig.\(field): \(reason)" }
}
