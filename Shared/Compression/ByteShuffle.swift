/// Byte-plane transposition for arrays of fixed-size numbers (as in blosc's shuffle filter).
///
/// For fp32 tensors the exponent bytes of neighbouring values are alike; gathering byte k of
/// every element into plane k lets zstd find that redundancy. Trailing bytes that do not fill
/// a whole element are copied unchanged, so both directions accept any length.
public enum ByteShuffle {
    /// Element i's byte k moves to `k * count + i`, where `count = bytes.count / elementSize`.
    public static func shuffle(_ bytes: [UInt8], elementSize: Int) -> [UInt8] {
        bytes.withUnsafeBytes { shuffle($0, elementSize: elementSize) }
    }

    public static func shuffle(_ bytes: UnsafeRawBufferPointer, elementSize: Int) -> [UInt8] {
        precondition(elementSize > 0, "ByteShuffle: elementSize must be positive")
        return [UInt8](unsafeUninitializedCapacity: bytes.count) { out, written in
            transpose(from: bytes, to: UnsafeMutableRawBufferPointer(out), elementSize: elementSize, forward: true)
            written = bytes.count
        }
    }

    /// Inverse of `shuffle` for the same `elementSize`.
    public static func unshuffle(_ bytes: [UInt8], elementSize: Int) -> [UInt8] {
        bytes.withUnsafeBytes { unshuffle($0, elementSize: elementSize) }
    }

    public static func unshuffle(_ bytes: UnsafeRawBufferPointer, elementSize: Int) -> [UInt8] {
        precondition(elementSize > 0, "ByteShuffle: elementSize must be positive")
        return [UInt8](unsafeUninitializedCapacity: bytes.count) { out, written in
            transpose(from: bytes, to: UnsafeMutableRawBufferPointer(out), elementSize: elementSize, forward: false)
            written = bytes.count
        }
    }

    // src and dst are (count, elementSize) and (elementSize, count) byte matrices, or the reverse.
    private static func transpose(from src: UnsafeRawBufferPointer, to dst: UnsafeMutableRawBufferPointer, elementSize: Int, forward: Bool) {
        let n = src.count
        guard n > 0, let s = src.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let d = dst.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let count = n / elementSize, whole = count * elementSize
        if elementSize == 4 {
            // The fp32 case, unrolled: one pass over the elements, four plane writes each.
            if forward {
                for i in 0..<count {
                    d[i] = s[4 * i]; d[count + i] = s[4 * i + 1]; d[2 * count + i] = s[4 * i + 2]; d[3 * count + i] = s[4 * i + 3]
                }
            } else {
                for i in 0..<count {
                    d[4 * i] = s[i]; d[4 * i + 1] = s[count + i]; d[4 * i + 2] = s[2 * count + i]; d[4 * i + 3] = s[3 * count + i]
                }
            }
        } else {
            for i in 0..<count {
                for k in 0..<elementSize {
                    if forward { d[k * count + i] = s[i * elementSize + k] } else { d[i * elementSize + k] = s[k * count + i] }
                }
            }
        }
        for j in whole..<n { d[j] = s[j] }
    }
}
