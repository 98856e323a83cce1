/// tokenizer.json's `post_processor` for a single sequence: the ids put before and after it (Llama 3's bos).
struct PostProcessor: Sendable, Equatable {
    var prefix: [Int32] = []
    var suffix: [Int32] = []
}
