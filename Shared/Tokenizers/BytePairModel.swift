import Synchronization

/// Byte-level BPE: ids for single bytes, merges by rank, the vocabulary by bytes (for `ignore_merges`) and a cache of
/// encoded words. Words are byte strings; the byte-to-character spelling of the vocabulary is undone at load.
final class BytePairModel: Sendable {
    let byteIDs: [Int32]  // the id of each single byte, -1 if the vocabulary lacks it
    let merges: PairTable
    let vocabulary: WordTable
    let ignoreMerges: Bool
    let unknownID: Int32?
    let fuseUnknown: Bool
    private let cache: Mutex<WordTable>
    private static let cacheBudgetBytes = 8 << 20

    /// `cacheCapacity` words are kept at most; the cache empties itself when full.
    init(byteIDs: [Int32], merges: PairTable, vocabulary: WordTable, ignoreMerges: Bool, unknownID: Int32?, fuseUnknown: Bool,
         cacheCapacity: Int = 1 << 15) {
        cache = Mutex(WordTable(capacity: cacheCapacity))
        self.byteIDs = byteIDs
        self.merges = merges
        self.vocabulary = vocabulary
        self.ignoreMerges = ignoreMerges
        self.unknownID = unknownID
        self.fuseUnknown = fuseUnknown
    }

    /// Buffers reused from word to word: the symbols of the word being merged and the merge of each adjacent pair.
    struct Scratch {
        var symbols: [Int32] = []
        var ranks: [Int32] = []
        var merged: [Int32] = []
    }

    /// Appends the ids of one pre-tokenized word.
    func encode(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout Scratch) {
        if word.isEmpty { return }
        if ignoreMerges, let id = vocabulary.id(word) {
            out.append(id)
            return
        }
        let hash = WordTable.hash(word)
        if cache.withLock({ $0.lookup(word, hash: hash, into: &out) }) { return }
        merge(word, scratch: &scratch)
        out.append(contentsOf: scratch.symbols)
        scratch.symbols.withUnsafeBufferPointer { ids in
            cache.withLock { table in
                if table.isFull || table.storedBytes > Self.cacheBudgetBytes { table.removeAll() }
                table.insert(word, hash: hash, ids: ids)
            }
        }
    }

    /// Leaves the merged ids of `word` in `scratch.symbols`: repeatedly joins the adjacent pair of lowest rank,
    /// the leftmost on a tie, as `tokenizers`' priority queue does.
    func merge(_ word: UnsafeBufferPointer<UInt8>, scratch: inout Scratch) {
        scratch.symbols.removeAll(keepingCapacity: true)
        var lastWasUnknown = false
        for b in word {
            let id = byteIDs[Int(b)]
            if id >= 0 {
                scratch.symbols.append(id)
                lastWasUnknown = false
            } else if let unknownID {
                // without an unknown token a byte the vocabulary lacks is dropped, as in `tokenizers`
                if !(fuseUnknown && lastWasUnknown) { scratch.symbols.append(unknownID) }
                lastWasUnknown = true
            }
        }
        let count = scratch.symbols.count
        guard count > 1 else { return }
        scratch.ranks.removeAll(keepingCapacity: true)
        scratch.merged.removeAll(keepingCapacity: true)
        for i in 0..<(count - 1) {
            let m = merges.merge(scratch.symbols[i], scratch.symbols[i + 1])
            scratch.ranks.append(m?.rank ?? .max)
            scratch.merged.append(m?.merged ?? -1)
        }
        while true {
            var best = -1
            var bestRank = Int32.max
            for i in scratch.ranks.indices where scratch.ranks[i] < bestRank {
                bestRank = scratch.ranks[i]
                best = i
            }
            if best < 0 { return }
            scratch.symbols[best] = scratch.merged[best]
            scratch.symbols.remove(at: best + 1)
            scratch.ranks.remove(at: best)
            scratch.merged.remove(at: best)
            if best < scratch.ranks.count { updatePair(best, &scratch) }
            if best > 0 { updatePair(best - 1, &scratch) }
        }
    }

    @inline(__always) private func updatePair(_ i: Int, _ scratch: inout Scratch) {
        let m = merges.merge(scratch.symbols[i], scratch.symbols[i + 1])
        scratch.ranks[i] = m?.rank ?? .max
        scratch.merged[i] = m?.merged ?? -1
    }
}
