import Foundation
import Testing
@testable import Tokenizers

/// Encoding and decoding against what `tokenizers` 0.23.3 produced for the same tokenizer.json on the fixture corpus.
@Suite struct HFTokenizerTests {
    @Test func corpusIsLargeAndVaried() {
        let corpus = Fixtures.corpus
        #expect(corpus.count >= 2000)
        #expect(corpus.contains(""))
        #expect(corpus.contains { $0.unicodeScalars.contains { $0.properties.generalCategory == .otherLetter } })  // CJK
        #expect(corpus.contains { $0.unicodeScalars.contains { $0.value == 0x200D } })  // ZWJ sequences
        #expect(corpus.contains { $0.hasSuffix("  ") })
    }

    @Test(arguments: Fixtures.Flavour.allCases)
    func encodesTheCorpusExactly(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        let reference = try Fixtures.reference(flavour)
        let corpus = Fixtures.corpus
        try #require(reference.encoded.count == corpus.count)
        var mismatches: [String] = []
        for (i, text) in corpus.enumerated() {
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            if ids != reference.encoded[i] {
                mismatches.append("#\(i) \"\(escaped(text))\": \(ids) expected \(reference.encoded[i])")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) of \(corpus.count) differ:\n\(mismatches.prefix(15).joined(separator: "\n"))")
    }

    /// The split patterns' scanners cut words exactly where the library's regex does (whatever BPE makes of them).
    @Test(arguments: Fixtures.Flavour.allCases)
    func preTokenizesLikeTheRegex(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        let reference = try Fixtures.reference(flavour)
        var mismatches: [String] = []
        for (i, expected) in reference.preTokenized.enumerated() {
            let text = Fixtures.corpus[i]
            let words = tokenizer.preTokenizedWords(text)
            #expect(words.flatMap { $0 } == Array(text.utf8), "words of #\(i) rebuild the text")
            if words.map(\.count) != expected { mismatches.append("#\(i) \"\(escaped(text))\": \(words.map(\.count)) expected \(expected)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differ:\n\(mismatches.prefix(15).joined(separator: "\n"))")
    }

    @Test(arguments: Fixtures.Flavour.allCases)
    func addsThePostProcessorsTokens(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        let reference = try Fixtures.reference(flavour)
        for (i, expected) in reference.withSpecialTokens.enumerated() {
            let text = Fixtures.corpus[i]
            #expect(tokenizer.encode(text, addSpecialTokens: true) == expected, "#\(i) \"\(escaped(text))\"")
        }
    }

    @Test(arguments: Fixtures.Flavour.allCases)
    func decodesTheCorpusExactly(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        let reference = try Fixtures.reference(flavour)
        var mismatches: [String] = []
        for (i, text) in Fixtures.corpus.enumerated() {
            let ids = reference.encoded[i]
            let expected = reference.decoded[String(i)] ?? text
            let decoded = tokenizer.decode(ids, skipSpecialTokens: false)
            if !sameScalars(decoded, expected) { mismatches.append("#\(i): \"\(escaped(decoded))\" expected \"\(escaped(expected))\"") }
            let expectedSkipping = reference.decodedSkipSpecial[String(i)] ?? expected
            let skipping = tokenizer.decode(ids, skipSpecialTokens: true)
            if !sameScalars(skipping, expectedSkipping) {
                mismatches.append("#\(i) skipping specials: \"\(escaped(skipping))\" expected \"\(escaped(expectedSkipping))\"")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differ:\n\(mismatches.prefix(15).joined(separator: "\n"))")
    }

    /// Random ids: cut multi-byte characters (U+FFFD), ids past the vocabulary (skipped), special tokens.
    @Test(arguments: Fixtures.Flavour.allCases)
    func decodesRandomIdsExactly(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        let reference = try Fixtures.reference(flavour)
        for (i, ids) in reference.randomIds.enumerated() {
            let decoded = tokenizer.decode(ids, skipSpecialTokens: false)
            #expect(sameScalars(decoded, reference.randomDecoded[i]), "\(ids): \"\(escaped(decoded))\" expected \"\(escaped(reference.randomDecoded[i]))\"")
            let skipping = tokenizer.decode(ids, skipSpecialTokens: true)
            #expect(sameScalars(skipping, reference.randomDecodedSkipSpecial[i]), "\(ids) skipping specials: \"\(escaped(skipping))\"")
        }
    }

    @Test(arguments: Fixtures.Flavour.allCases)
    func vocabularySizeCountsAddedTokens(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        #expect(tokenizer.vocabSize == (try Fixtures.reference(flavour).vocabSize))
    }

    /// Special tokens by name agree with the ids the fixture's added_tokens give them, and only special ones resolve.
    @Test(arguments: Fixtures.Flavour.allCases)
    func findsSpecialTokensByName(_ flavour: Fixtures.Flavour) throws {
        let tokenizer = try Fixtures.tokenizer(flavour)
        let added = try #require(try Fixtures.tokenizerJSON(flavour)["added_tokens"] as? [[String: Any]])
        try #require(!added.isEmpty)
        for entry in added {
            let content = entry["content"] as! String, id = Int32(entry["id"] as! Int), special = entry["special"] as! Bool
            #expect(tokenizer.tokenID(content) == id)
            #expect(tokenizer.specialTokenID(content) == (special ? id : nil), "\(content)")
            #expect(tokenizer.isSpecial(id) == special)
            #expect(tokenizer.encode(content, addSpecialTokens: false) == [id] || !special, "\(content) alone encodes to its id")
        }
        #expect(tokenizer.specialTokenID("<|no such token|>") == nil)
    }

    /// Options none of the three flavours uses (Digits, add_prefix_space, NFKC, normalizer sequences), each swapped
    /// into one of them, against `tokenizers` with the same swap.
    @Test(arguments: Fixtures.variantNames)
    func encodesVariantsExactly(_ name: String) throws {
        let variant = try Fixtures.variant(name)
        let tokenizer = try HFTokenizer(json: JSONSerialization.data(withJSONObject: variant.tokenizerJSON))
        var mismatches: [String] = []
        for (i, expected) in variant.encoded.enumerated() {
            let text = Fixtures.corpus[i]
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            if ids != expected { mismatches.append("#\(i) \"\(escaped(text))\": \(ids) expected \(expected)") }
            let decoded = tokenizer.decode(expected, skipSpecialTokens: false)
            let expectedText = variant.decoded[String(i)] ?? text
            if !sameScalars(decoded, expectedText) { mismatches.append("#\(i) decoded \"\(escaped(decoded))\" expected \"\(escaped(expectedText))\"") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differ:\n\(mismatches.prefix(15).joined(separator: "\n"))")
    }

    /// A word cache far smaller than the corpus empties itself over and over without changing any encoding.
    @Test func encodesTheSameWithATinyWordCache() throws {
        let tokenizer = try HFTokenizer(json: Data(contentsOf: Fixtures.tokenizerURL(.gpt2)), wordCacheCapacity: 8)
        let reference = try Fixtures.reference(.gpt2)
        var mismatches = 0
        for _ in 0..<2 {
            for (i, text) in Fixtures.corpus.enumerated() where tokenizer.encode(text, addSpecialTokens: false) != reference.encoded[i] {
                mismatches += 1
            }
        }
        #expect(mismatches == 0)
    }

    /// The same tokenizer used from several threads at once (the word cache is shared) gives the same ids.
    @Test func encodesConcurrently() async throws {
        let tokenizer = try Fixtures.tokenizer(.llama3)
        let reference = try Fixtures.reference(.llama3)
        let corpus = Fixtures.corpus
        let failures = await withTaskGroup(of: Int.self) { group in
            for part in 0..<4 {
                group.addTask {
                    var failed = 0
                    for i in stride(from: part, to: corpus.count, by: 4) where tokenizer.encode(corpus[i], addSpecialTokens: false) != reference.encoded[i] {
                        failed += 1
                    }
                    return failed
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
    }
}
