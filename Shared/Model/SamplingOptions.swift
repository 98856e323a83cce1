import Foundation

/// How tokens are drawn: temperature (0 = greedy), nucleus top-p, top-k (0 = off), a token limit and a seed (which
/// fixes every draw through `gumbelKey` and `gumbelNoise`).
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
    /// The key of sample `k` of prompt `prompt` (its index in one `sample` call): with a token's position in the
    /// completion and its id it fixes that token's Gumbel noise (`gumbelNoise`), so a validator recomputes any draw.
    public func gumbelKey(prompt: Int, sample k: Int) -> UInt64 {
        var h = splitMix64(seed ^ 0x4755_4D42_454C_4B45)  // a constant of its own: keys differ from other uses of the seed
        h = splitMix64(h ^ UInt64(bitPattern: Int64(prompt)) &* 0xD1B5_4A32_D192_ED03)
        return splitMix64(h ^ UInt64(bitPattern: Int64(k)) &* 0x9E37_79B9_7F4A_7C15)
    }

    /// Standard Gumbel noise G = −log(−log U) of token `token` at generated position `position` (0 = the first new
    /// token) of the sample with `key`: U in (0, 1) with 53 bits, hashed from (key, position, token), no stream state.
    /// The sampler draws argmax over its support of (log w_i + G_i), an exact draw from q ∝ w.
    public static func gumbelNoise(key: UInt64, position: Int, token: Int) -> Double {
        let h = splitMix64(splitMix64(key ^ UInt64(bitPattern: Int64(position)) &* 0xBF58_476D_1CE4_E5B9)
                           ^ UInt64(bitPattern: Int64(token)) &* 0x94D0_49BB_1331_11EB)
        let u = (Double(h >> 11) + 0.5) * (1.0 / 9_007_199_254_740_992.0)
        return -log(-log(u))
    }
}

/// SplitMix64's step and finaliser: a bijective mix of 64 bits (counter-based noise, proof index hashes).
@inline(__always) func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
