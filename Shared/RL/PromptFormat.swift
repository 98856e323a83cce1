import Model

/// How text becomes tokens for the policy, the same everywhere (rollout, learner, eval).
///
/// prompt tokens = [bos] + UTF-8 bytes of the prompt; completion tokens = UTF-8 bytes of the answer + [eos].
/// Arithmetic: "12+34=" → "46" eos; reverse: "reverse:abc=" → "cba" eos; sort: "sort:3172=" → "1237" eos.
/// No instruction text: a tiny byte-level model learns the mapping directly and every byte of the answer counts.
public enum PromptFormat {
    static let tokenizer = ByteTokenizer()

    public static func promptTokens(_ prompt: String) -> [Int32] { [ByteTokenizer.bos] + tokenizer.encode(prompt) }

    public static func completionTokens(_ completion: String) -> [Int32] { tokenizer.encode(completion) + [ByteTokenizer.eos] }

    /// The text a verifier sees: tokens up to (not including) the first eos, special tokens dropped.
    public static func completionText(_ tokens: [Int32]) -> String {
        let end = tokens.firstIndex(of: ByteTokenizer.eos) ?? tokens.count
        return tokenizer.decode(Array(tokens[..<end]))
    }
}
