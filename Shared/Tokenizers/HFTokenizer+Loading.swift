import Foundation

extension HFTokenizer {
    /// Reads a tokenizer.json. Refuses, naming the field, anything but a byte-level BPE this implementation reproduces.
    public init(json data: Data) throws {
        try self.init(json: data, wordCacheCapacity: 1 << 15)
    }

    /// `wordCacheCapacity`: encoded words kept for reuse (tests make it tiny to exercise eviction).
    init(json data: Data, wordCacheCapacity: Int) throws {
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw TokenizerError.badField(field: "(root)", why: "not JSON: \(error)")
        }
        guard let rootObject = parsed as? [String: Any] else { throw TokenizerError.badField(field: "(root)", why: "not an object") }
        let root = JSONField(rootObject, path: "")
        for key in ["truncation", "padding"] where !root.isNull(key) {
            throw TokenizerError.unsupported(field: key, value: "non-null (encode would truncate or pad)")
        }

        let modelField = try root.object("model")
        let (vocab, mergePairs, modelOptions) = try Self.readModel(modelField)
        let added = try root.objects("added_tokens").map(Self.readAddedToken)
        let normalizer = try root.optionalObject("normalizer").map(Self.readNormalizer)
        guard let preField = try root.optionalObject("pre_tokenizer") else {
            throw TokenizerError.badField(field: "pre_tokenizer", why: "null; byte-level BPE needs a ByteLevel pre-tokenizer")
        }
        let preTokenizer = try Self.readPreTokenizer(preField)
        let decoder = try root.optionalObject("decoder").map(Self.readDecoder) ?? .joinedWithSpaces

        // ids: the model's vocabulary, then added tokens over it
        let largest = max(vocab.values.max() ?? -1, added.map(\.id).max() ?? -1)
        var tokens = [String?](repeating: nil, count: Int(largest) + 1)
        for (token, id) in vocab { tokens[Int(id)] = token }
        var tokenIDs = vocab
        for token in added {
            tokens[Int(token.id)] = token.content
            tokenIDs[token.content] = token.id
        }
        let specialContents = Set(added.filter(\.special).map(\.content))
        let specialIDs = Set(tokens.indices.filter { tokens[$0].map(specialContents.contains) ?? false }.map { Int32($0) })

        let postProcessor = try root.optionalObject("post_processor").map { try Self.readPostProcessor($0, tokenIDs: tokenIDs) } ?? PostProcessor()

        // BPE over bytes: single-byte ids, the vocabulary by bytes, merges by id pair
        var byteIDs = [Int32](repeating: -1, count: 256)
        for b in 0..<256 { byteIDs[b] = vocab[String(Character(ByteLevel.characters[b]))] ?? -1 }
        var byBytes = WordTable(capacity: vocab.count)
        for (token, id) in vocab {
            guard let bytes = ByteLevel.bytes(spelledBy: token) else { continue }
            bytes.withUnsafeBufferPointer { key in
                withUnsafePointer(to: id) { byBytes.insert(key, hash: WordTable.hash(key), ids: UnsafeBufferPointer(start: $0, count: 1)) }
            }
        }
        var merges = PairTable(capacity: mergePairs.count)
        for (rank, pair) in mergePairs.enumerated() {
            let field = "model.merges[\(rank)]"
            guard let left = vocab[pair.0] else { throw TokenizerError.badField(field: field, why: "\(pair.0) is not in model.vocab") }
            guard let right = vocab[pair.1] else { throw TokenizerError.badField(field: field, why: "\(pair.1) is not in model.vocab") }
            guard let joined = vocab[pair.0 + pair.1] else { throw TokenizerError.badField(field: field, why: "\(pair.0 + pair.1) is not in model.vocab") }
            merges.set(left, right, rank: Int32(rank), merged: joined)
        }
        var unknownID: Int32?
        if let unk = modelOptions.unknownToken {
            guard let id = tokenIDs[unk] else { throw TokenizerError.badField(field: "model.unk_token", why: "\(unk) is not in the vocabulary") }
            unknownID = id
        }

        // decoding: the ByteLevel decoder undoes the byte spelling, or keeps a token's own UTF-8 if it has other characters
        var decodedBytes: [UInt8] = []
        var decodedOffsets = [0]
        for token in tokens {
            if let token { decodedBytes += ByteLevel.bytes(spelledBy: token) ?? Array(token.utf8) }
            decodedOffsets.append(decodedBytes.count)
        }

        let normalizedTokens = added.filter(\.normalized)
        self.init(
            vocabSize: tokens.count, addedTokens: added.sorted { $0.id < $1.id },
            model: BytePairModel(byteIDs: byteIDs, merges: merges, vocabulary: byBytes, ignoreMerges: modelOptions.ignoreMerges,
                                 unknownID: unknownID, fuseUnknown: modelOptions.fuseUnknown, cacheCapacity: wordCacheCapacity),
            normalizer: normalizer, preTokenizer: preTokenizer, postProcessor: postProcessor, decoder: decoder,
            rawMatcher: AddedTokenMatcher(tokens: added.filter { !$0.normalized }, patterns: added.filter { !$0.normalized }.map(\.content)),
            normalizedMatcher: AddedTokenMatcher(tokens: normalizedTokens, patterns: normalizedTokens.map { normalizer?.apply($0.content) ?? $0.content }),
            tokens: tokens, tokenIDs: tokenIDs, specialIDs: specialIDs, decodedBytes: decodedBytes, decodedOffsets: decodedOffsets)
    }

    private init(vocabSize: Int, addedTokens: [AddedToken], model: BytePairModel, normalizer: TextNormalizer?, preTokenizer: PreTokenizer,
                 postProcessor: PostProcessor, decoder: TokenDecoder, rawMatcher: AddedTokenMatcher, normalizedMatcher: AddedTokenMatcher,
                 tokens: [String?], tokenIDs: [String: Int32], specialIDs: Set<Int32>, decodedBytes: [UInt8], decodedOffsets: [Int]) {
        self.vocabSize = vocabSize
        self.addedTokens = addedTokens
        self.model = model
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.postProcessor = postProcessor
        self.decoder = decoder
        self.rawMatcher = rawMatcher
        self.normalizedMatcher = normalizedMatcher
        self.tokens = tokens
        self.tokenIDs = tokenIDs
        self.specialIDs = specialIDs
        self.decodedBytes = decodedBytes
        self.decodedOffsets = decodedOffsets
    }

    private struct ModelOptions {
        var ignoreMerges = false
        var unknownToken: String?
        var fuseUnknown = false
    }

    private static func readModel(_ model: JSONField) throws -> ([String: Int32], [(String, String)], ModelOptions) {
        let type = try model.optionalString("type") ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupported(field: model.name("type"), value: type) }
        if let dropout = model.value["dropout"] as? Double, dropout != 0 {
            throw TokenizerError.unsupported(field: model.name("dropout"), value: "\(dropout)")
        }
        if try model.bool("byte_fallback", default: false) { throw TokenizerError.unsupported(field: model.name("byte_fallback"), value: "true") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = try model.optionalString(key), !affix.isEmpty { throw TokenizerError.unsupported(field: model.name(key), value: affix) }
        }
        var options = ModelOptions()
        options.ignoreMerges = try model.bool("ignore_merges", default: false)
        options.unknownToken = try model.optionalString("unk_token")
        options.fuseUnknown = try model.bool("fuse_unk", default: false)

        let vocabField = try model.object("vocab")
        var vocab: [String: Int32] = [:]
        vocab.reserveCapacity(vocabField.value.count)
        for (token, id) in vocabField.value {
            guard let id = id as? Int, id >= 0, id <= Int(Int32.max) else {
                throw TokenizerError.badField(field: vocabField.name(token), why: "not a token id")
            }
            vocab[token] = Int32(id)
        }
        // merges come as "a b" strings (older files, split at the one space) or as ["a", "b"] pairs
        let merges: [(String, String)] = try model.array("merges").enumerated().map { i, merge in
            if let line = merge as? String {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError.badField(field: model.name("merges[\(i)]"), why: "\"\(line)\" is not two tokens") }
                return (String(parts[0]), String(parts[1]))
            }
            if let pair = merge as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String { return (a, b) }
            throw TokenizerError.badField(field: model.name("merges[\(i)]"), why: "neither \"a b\" nor [\"a\", \"b\"]")
        }
        return (vocab, merges, options)
    }

    private static func readAddedToken(_ field: JSONField) throws -> AddedToken {
        let id = try field.int("id")
        guard id >= 0 && id <= Int(Int32.max) else { throw TokenizerError.badField(field: field.name("id"), why: "\(id) is not a token id") }
        let content = try field.string("content")
        guard !content.isEmpty else { throw TokenizerError.badField(field: field.name("content"), why: "empty") }
        let special = try field.bool("special", default: false)
        return AddedToken(
            id: Int32(id), content: content, singleWord: try field.bool("single_word", default: false),
            leftStrip: try field.bool("lstrip", default: false), rightStrip: try field.bool("rstrip", default: false),
            normalized: try field.bool("normalized", default: !special), special: special)
    }

    private static func readNormalizer(_ field: JSONField) throws -> TextNormalizer {
        let type = try field.string("type")
        switch type {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Sequence": return .sequence(try field.objects("normalizers").map(readNormalizer))
        default: throw TokenizerError.unsupported(field: field.name("type"), value: type)
        }
    }

    private static func readPreTokenizer(_ field: JSONField) throws -> PreTokenizer {
        var steps: [PreTokenizer.Step] = []
        var byteLevel: (addPrefixSpace: Bool, useRegex: Bool)?
        func read(_ field: JSONField) throws {
            let type = try field.string("type")
            if byteLevel != nil {
                throw TokenizerError.unsupported(field: field.name("type"), value: "\(type) after ByteLevel (ByteLevel must come last)")
            }
            switch type {
            case "Sequence":
                for step in try field.objects("pretokenizers") { try read(step) }
            case "ByteLevel":
                byteLevel = (try field.bool("add_prefix_space", default: true), try field.bool("use_regex", default: true))
            case "Split":
                let pattern = try field.object("pattern")
                if let literal = try pattern.optionalString("String") {
                    throw TokenizerError.unsupported(field: pattern.name("String"), value: literal)
                }
                let source = try pattern.string("Regex")
                guard let known = SplitPattern(source: source) else { throw TokenizerError.unsupported(field: pattern.name("Regex"), value: source) }
                let behavior = try field.string("behavior")
                guard behavior == "Isolated" else { throw TokenizerError.unsupported(field: field.name("behavior"), value: behavior) }
                if try field.bool("invert", default: false) { throw TokenizerError.unsupported(field: field.name("invert"), value: "true") }
                steps.append(.split(known))
            case "Digits":
                steps.append(.digits(individual: try field.bool("individual_digits", default: false)))
            default:
                throw TokenizerError.unsupported(field: field.name("type"), value: type)
            }
        }
        try read(field)
        guard let byteLevel else {
            throw TokenizerError.badField(field: "pre_tokenizer", why: "no ByteLevel step; byte-level BPE needs one, last")
        }
        return PreTokenizer(steps: steps, addPrefixSpace: byteLevel.addPrefixSpace, useRegex: byteLevel.useRegex)
    }

    private static func readPostProcessor(_ field: JSONField, tokenIDs: [String: Int32]) throws -> PostProcessor {
        let type = try field.string("type")
        switch type {
        case "ByteLevel":
            return PostProcessor()  // it only trims offsets
        case "Sequence":
            var combined = PostProcessor()
            for step in try field.objects("processors") {
                let next = try readPostProcessor(step, tokenIDs: tokenIDs)
                combined.prefix += next.prefix
                combined.suffix = next.suffix + combined.suffix
            }
            return combined
        case "TemplateProcessing":
            let specials = try field.object("special_tokens")
            var result = PostProcessor()
            var sawSequence = false
            for (i, item) in try field.array("single").enumerated() {
                let itemName = field.name("single[\(i)]")
                guard let item = item as? [String: Any] else { throw TokenizerError.badField(field: itemName, why: "not an object") }
                let piece = JSONField(item, path: itemName)
                if let sequence = try piece.optionalObject("Sequence") {
                    let id = try sequence.string("id")
                    guard id == "A", !sawSequence else { throw TokenizerError.unsupported(field: sequence.name("id"), value: id) }
                    sawSequence = true
                } else if let special = try piece.optionalObject("SpecialToken") {
                    let name = try special.string("id")
                    let entry = try specials.object(name)
                    let ids = try entry.array("ids").map { id -> Int32 in
                        guard let id = id as? Int, id >= 0, id <= Int(Int32.max) else { throw TokenizerError.badField(field: entry.name("ids"), why: "not token ids") }
                        return Int32(id)
                    }
                    if sawSequence { result.suffix += ids } else { result.prefix += ids }
                } else {
                    throw TokenizerError.unsupported(field: itemName, value: "\(item.keys.sorted())")
                }
            }
            guard sawSequence else { throw TokenizerError.badField(field: field.name("single"), why: "no $A sequence") }
            return result
        default:
            throw TokenizerError.unsupported(field: field.name("type"), value: type)
        }
    }

    private static func readDecoder(_ field: JSONField) throws -> TokenDecoder {
        let type = try field.string("type")
        guard type == "ByteLevel" else { throw TokenizerError.unsupported(field: field.name("type"), value: type) }
        return .byteLevel
    }
}
