/// Open-addressing map from byte strings to runs of token ids, with keys and values in two flat arrays:
/// the vocabulary by bytes, and the cache of encoded words (looked up without building a key object).
struct WordTable: Sendable {
    private struct Slot {
        var hash: UInt64 = 0
        var keyStart: Int32 = -1  // -1: empty
        var keyCount: Int32 = 0
        var valueStart: Int32 = 0
        var valueCount: Int32 = 0
    }

    private var slots: [Slot]
    private var keyBytes: [UInt8] = []
    private var values: [Int32] = []
    private(set) var count = 0

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Slot](repeating: Slot(), count: size)
    }

    /// Bytes a table holds in keys and values; the cache clears itself past a budget.
    var storedBytes: Int { keyBytes.count + 4 * values.count }
    var isFull: Bool { count * 2 >= slots.count }

    mutating func removeAll() {
        for i in slots.indices { slots[i] = Slot() }
        keyBytes.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        count = 0
    }

    /// FNV-1a, 64-bit.
    @inline(__always) static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// Appends the ids stored for `key` to `out` and returns true, or returns false if the key is absent.
    func lookup(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, into out: inout [Int32]) -> Bool {
        guard let s = find(key, hash: hash) else { return false }
        let slot = slots[s]
        out.append(contentsOf: values[Int(slot.valueStart)..<Int(slot.valueStart + slot.valueCount)])
        return true
    }

    /// The single id stored for `key` (vocabulary use), or nil.
    func id(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        guard let s = find(key, hash: Self.hash(key)) else { return nil }
        return values[Int(slots[s].valueStart)]
    }

    private func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Int? {
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: hash) & mask
        return keyBytes.withUnsafeBufferPointer { stored in
            while true {
                let slot = slots[s]
                if slot.keyStart < 0 { return nil }
                if slot.hash == hash && Int(slot.keyCount) == key.count {
                    let start = Int(slot.keyStart)
                    if key.count == 0 || memcmpEqual(stored.baseAddress! + start, key.baseAddress!, key.count) { return s }
                }
                s = (s + 1) & mask
            }
        }
    }

    /// Stores `ids` for `key` unless the key is already present (the first entry wins, like a vocabulary).
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, ids: UnsafeBufferPointer<Int32>) {
        if find(key, hash: hash) != nil { return }
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: hash) & mask
        while slots[s].keyStart >= 0 { s = (s + 1) & mask }
        slots[s] = Slot(hash: hash, keyStart: Int32(keyBytes.count), keyCount: Int32(key.count),
                        valueStart: Int32(values.count), valueCount: Int32(ids.count))
        keyBytes.append(contentsOf: key)
        values.append(contentsOf: ids)
        count += 1
    }
}

@inline(__always) private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    for i in 0..<n where a[i] != b[i] { return false }
    return true
}
