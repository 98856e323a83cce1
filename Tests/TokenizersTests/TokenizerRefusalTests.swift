import Foundation
import Testing
@testable import Tokenizers

/// tokenizer.json features this implementation does not reproduce are refused at load, naming the JSON field.
@Suite struct TokenizerRefusalTests {
    /// One edit of a fixture tokenizer.json and the field the error must name.
    struct Edit: Sendable, CustomTestStringConvertible {
        let field: String
        let flavour: Fixtures.Flavour
        let apply: @Sendable (inout [String: Any]) -> Void
        var testDescription: String { field }
    }

    static let edits: [Edit] = [
        Edit(field: "model.type", flavour: .gpt2) { $0[path: "model", "type"] = "WordPiece" },
        Edit(field: "model.type", flavour: .qwen2) { $0[path: "model", "type"] = "Unigram" },
        Edit(field: "model.byte_fallback", flavour: .gpt2) { $0[path: "model", "byte_fallback"] = true },
        Edit(field: "model.dropout", flavour: .gpt2) { $0[path: "model", "dropout"] = 0.1 },
        Edit(field: "model.vocab", flavour: .gpt2) { $0[path: "model", "vocab"] = NSNull() },
        Edit(field: "model.merges[0]", flavour: .llama3) { json in
            var merges = json[path: "model", "merges"] as! [Any]
            merges[0] = ["no-such-token", "x"]
            json[path: "model", "merges"] = merges
        },
        Edit(field: "model.merges[1]", flavour: .gpt2) { json in
            var merges = json[path: "model", "merges"] as! [Any]
            merges[1] = "three part merge"
            json[path: "model", "merges"] = merges
        },
        Edit(field: "pre_tokenizer.pretokenizers[0].pattern.Regex", flavour: .llama3) { json in
            var steps = json[path: "pre_tokenizer", "pretokenizers"] as! [[String: Any]]
            steps[0]["pattern"] = ["Regex": #"\s+|\w+"#]
            json[path: "pre_tokenizer", "pretokenizers"] = steps
        },
        Edit(field: "pre_tokenizer.pretokenizers[0].behavior", flavour: .qwen2) { json in
            var steps = json[path: "pre_tokenizer", "pretokenizers"] as! [[String: Any]]
            steps[0]["behavior"] = "Removed"
            json[path: "pre_tokenizer", "pretokenizers"] = steps
        },
        Edit(field: "pre_tokenizer.type", flavour: .gpt2) { $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "▁"] },
        Edit(field: "pre_tokenizer", flavour: .gpt2) { $0["pre_tokenizer"] = NSNull() },
        Edit(field: "normalizer.type", flavour: .qwen2) { $0["normalizer"] = ["type": "Lowercase"] },
        Edit(field: "normalizer.normalizers[1].type", flavour: .qwen2) {
            $0["normalizer"] = ["type": "Sequence", "normalizers": [["type": "NFC"], ["type": "Replace"]]]
        },
        Edit(field: "post_processor.type", flavour: .gpt2) { $0["post_processor"] = ["type": "RobertaProcessing"] },
        Edit(field: "decoder.type", flavour: .gpt2) { $0["decoder"] = ["type": "WordPiece"] },
        Edit(field: "truncation", flavour: .gpt2) { $0["truncation"] = ["max_length": 8] },
    ]

    @Test(arguments: edits)
    func refusesNamingTheField(_ edit: Edit) throws {
        var json = try Fixtures.tokenizerJSON(edit.flavour)
        _ = try HFTokenizer(json: JSONSerialization.data(withJSONObject: json))  // unedited, it loads
        edit.apply(&json)
        let error = #expect(throws: TokenizerError.self) { try HFTokenizer(json: JSONSerialization.data(withJSONObject: json)) }
        #expect(error?.field == edit.field, "\(String(describing: error))")
    }

    /// Merges as "a b" strings (GPT-2's files) and as ["a", "b"] pairs (newer files) load to the same tokenizer.
    @Test func mergesLoadFromStringsAndPairs() throws {
        var json = try Fixtures.tokenizerJSON(.llama3)
        let pairs = try #require(json[path: "model", "merges"] as? [[String]])
        json[path: "model", "merges"] = pairs.map { $0.joined(separator: " ") }
        let fromStrings = try HFTokenizer(json: JSONSerialization.data(withJSONObject: json))
        let fromPairs = try Fixtures.tokenizer(.llama3)
        let reference = try Fixtures.reference(.llama3)
        for (i, text) in Fixtures.corpus.enumerated().prefix(400) {
            #expect(fromStrings.encode(text, addSpecialTokens: false) == reference.encoded[i])
            #expect(fromPairs.encode(text, addSpecialTokens: false) == reference.encoded[i])
        }
    }

    @Test func recognisesExactlyTheKnownSplitPatterns() throws {
        for flavour in [Fixtures.Flavour.llama3, .qwen2] {
            let steps = try #require(try Fixtures.tokenizerJSON(flavour)[path: "pre_tokenizer", "pretokenizers"] as? [[String: Any]])
            let source = try #require((steps[0]["pattern"] as? [String: String])?["Regex"])
            #expect(SplitPattern(source: source) == (flavour == .llama3 ? .llama3 : .qwen2))
            #expect(SplitPattern(source: source + " ") == nil)
        }
    }
}

private extension Dictionary where Key == String, Value == Any {
    /// A value at a path of nested objects.
    subscript(path first: String, _ second: String) -> Any? {
        get { (self[first] as? [String: Any])?[second] }
        set {
            var inner = self[first] as? [String: Any] ?? [:]
            inner[second] = newValue
            self[first] = inner
        }
    }
}
