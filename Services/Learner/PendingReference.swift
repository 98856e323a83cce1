// TEMPORARY until the rl-knobs branch lands (frozen reference policy in GRPOTrainer).
import RL
extension GRPOTrainer {
    func freezeReference() {}
    func referenceSafetensorsBytes() throws -> [UInt8]? { nil }
    func loadReference(safetensors: [UInt8]) throws {}
}
