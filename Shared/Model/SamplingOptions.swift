/// How tokens are drawn: temperature (0 = greedy), nucleus top-p, top-k (0 = off), a token limit and a seed.
public struct SamplingOptions: Sendable, Codable, Equatable, Hashable {
    public var temperature: Float = 1
    public var topP: Float = 1
    public var topK: Int = 0
    public var maxNewTokens: Int
    public var seed: UInt64
    public var stopAtEOS: Bool = true

    public init(temperature: Float = 1, topP: Float = 1, topK: Int = 0, maxNewTokens: Int, seed: UInt64, stopAtEOS: Bool = true) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.maxNewTokens = maxNewTokens
        self.seed = seed
        self.stopAtEOS = stopAtEOS
    }

    /// Greedy decoding (temperature 0).
    public static func greedy(maxNewTokens: Int, stopAtEOS: Bool = true) -> SamplingOptions {
        SamplingOptions(temperature: 0, maxNewTokens: maxNewTokens, seed: 0, stopAtEOS: stopAtEOS)
    }
}

extension SamplingOptions {
    /// The generator that draws sample `k` of prompt `prompt` (its index in one `sample` call); each token takes one
    /// uniform from it, none when greedy. Public so that a check can replay a draw from the seed.
    public func generator(prompt: Int, sample k: Int) -> SeededGenerator {
        let base = seed &+ UInt64(prompt) &* 0xD1B5_4A32_D192_ED03
        return SeededGenerator(seed: base ^ (UInt64(k) &* 0x9E37_79B9_7F4A_7C15))
    }
}
