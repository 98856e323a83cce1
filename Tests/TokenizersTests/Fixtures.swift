import Foundation
import Tokenizers

/// The fixtures of scripts/fixtures/tokenizer_fixtures.py, committed under Tests/Fixtures/tokenizers.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

    /// The three trained tokenizers.
    enum Flavour: String, CaseIterable, Sendable {
        case gpt2, llama3, qwen2
    }

    static func tokenizerURL(_ flavour: Flavour) -> URL {
        directory.appendingPathComponent("\(flavour.rawValue)/tokenizer.json")
    }

    static func tokenizer(_ flavour: Flavour) throws -> HFTokenizer {
        try HFTokenizer(contentsOf: tokenizerURL(flavour))
    }

    static func tokenizerJSON(_ flavour: Flavour) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: tokenizerURL(flavour))) as! [String: Any]
    }

    static let corpus: [String] = {
        struct Corpus: Decodable { let strings: [String] }
        return try! load(Corpus.self, "corpus.json").strings
    }()

    /// What `tokenizers` produced for one flavour on the corpus.
    struct Reference: Decodable {
        let vocabSize: Int
        let encoded: [[Int32]]
        /// Decoded text by corpus index, where it differs from the input.
        let decoded: [String: String]
        /// Decoded text with special tokens skipped, where it differs from `decoded`.
        let decodedSkipSpecial: [String: String]
        /// The first corpus strings encoded with add_special_tokens=True.
        let withSpecialTokens: [[Int32]]
        /// The UTF-8 byte lengths of the pre-tokenizer's words for the first corpus strings.
        let preTokenized: [[Int]]
        let randomIds: [[Int32]]
        let randomDecoded: [String]
        let randomDecodedSkipSpecial: [String]
    }

    static func reference(_ flavour: Flavour) throws -> Reference {
        try load(Reference.self, "\(flavour.rawValue)/reference.json")
    }

    /// A flavour with one tokenizer.json component swapped, and what `tokenizers` made of the first corpus strings.
    struct Variant {
        let tokenizerJSON: [String: Any]
        let encoded: [[Int32]]
        /// Decoded text by corpus index, where it differs from the input.
        let decoded: [String: String]
    }

    static let variantNames: [String] = {
        let all = try! JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("variants.json"))) as! [String: Any]
        return all.keys.sorted()
    }()

    static func variant(_ name: String) throws -> Variant {
        let all = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("variants.json"))) as! [String: Any]
        let entry = all[name] as! [String: Any]
        var json = try tokenizerJSON(Flavour(rawValue: entry["flavour"] as! String)!)
        json[entry["field"] as! String] = entry["value"]
        return Variant(tokenizerJSON: json, encoded: (entry["encoded"] as! [[Int]]).map { $0.map { Int32($0) } },
                       decoded: entry["decoded"] as! [String: String])
    }

    struct Chat: Decodable {
        struct Message: Decodable {
            let role: String
            let content: String
        }
        struct Case: Decodable {
            let template: String
            let flavour: String
            let messages: [Message]
            let addGenerationPrompt: Bool
            let rendered: String
            let ids: [Int32]
        }
        let cases: [Case]
    }

    static func chat() throws -> Chat { try load(Chat.self, "chat.json") }

    static func load<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(type, from: Data(contentsOf: directory.appendingPathComponent(name)))
    }
}

/// Strings compared scalar by scalar: Swift's == treats canonically equivalent strings (NFC and NFD) as equal.
func sameScalars(_ a: String, _ b: String) -> Bool { Array(a.unicodeScalars) == Array(b.unicodeScalars) }

/// A string with every non-ASCII or control scalar escaped, for failure messages.
func escaped(_ s: String) -> String {
    s.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
}
