import Model
import Wire

extension SamplingSettings {
    /// The sampler's options for these settings, as a rollout worker samples with them and a validator replays them
    /// (an unset top-p, 0 on the wire, is no cut).
    public var options: SamplingOptions {
        SamplingOptions(temperature: temperature, topP: topP == 0 ? 1 : topP, topK: Int(topK), maxNewTokens: Int(maxNewTokens), seed: seed)
    }
}
