import Model
import Tokenizers

/// How text becomes tokens for the policy, the same everywhere (rollout, learner, reward, eval), whatever the
/// tokenizer.
///
/// Bare prompts (no template): prompt tokens = the tokenizer's encoding of the prompt with its own framing (the byte
/// tokenizer's bos, Llama 3's <|begin_of_text|>). With a chat template the prompt is the user turn (after an optional
/// system turn) rendered with the generation prompt, encoded without framing: the template frames it. Completion
/// tokens = the encoding of the answer + eos. A verifier sees the completion decoded up to the first eos, special
/// tokens dropped.
///
/// The default, `bytes`: "12+34=" → bos "12+34=", answer "46" eos; no instruction text, so a tiny byte-level model
/// learns the mapping directly and every byte of the answer counts.
public struct PromptFormat: Sendable {
    public let tokenizer: any TextTokenizer
    public let template: ChatTemplate?
    public let systemPrompt: String?
    /// Ends a completion: the policy's eos (for a chat model, its end-of-turn token).
    public let eos: Int32

    public init(tokenizer: any TextTokenizer, template: ChatTemplate? = nil, systemPrompt: String? = nil, eos: Int32) {
        self.tokenizer = tokenizer
        self.template = template
        self.systemPrompt = systemPrompt
        self.eos = eos
    }

    /// The byte tokenizer with bare prompts.
    public static let bytes = PromptFormat(tokenizer: ByteTokenizer(), eos: ByteTokenizer.eos)

    public func promptTokens(_ prompt: String) -> [Int32] {
        guard let template else { return tokenizer.encode(prompt, addSpecialTokens: true) }
        let messages = (systemPrompt.map { [ChatMessage.system($0)] } ?? []) + [ChatMessage.user(prompt)]
        return tokenizer.encode(template.render(messages, addGenerationPrompt: true), addSpecialTokens: false)
    }

    public func completionTokens(_ completion: String) -> [Int32] {
        tokenizer.encode(completion, addSpecialTokens: false) + [eos]
    }

    /// The text a verifier sees: tokens up to (not including) the first eos, special tokens dropped.
    public func completionText(_ tokens: [Int32]) -> String {
        let end = tokens.firstIndex(of: eos) ?? tokens.count
        return tokenizer.decode(Array(tokens[..<end]), skipSpecialTokens: true)
    }
}
