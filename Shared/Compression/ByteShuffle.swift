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
            // The fp32 case: four elements at a time as 32-bit words, a 4x4 byte transpose in registers.
            let raw = UnsafeRawPointer(s), out = UnsafeMutableRawPointer(d)
            let quads = count / 4
            if forward {
                for q in 0..<quads {
                    let w0 = raw.loadUnaligned(fromByteOffset: 16 * q, as: UInt32.self)
                    let w1 = raw.loadUnaligned(fromByteOffset: 16 * q + 4, as: UInt32.self)
                    let w2 = raw.loadUnaligned(fromByteOffset: 16 * q + 8, as: UInt32.self)
                    let w3 = raw.loadUnaligned(fromByteOffset: 16 * q + 12, as: UInt32.self)
                    for k in 0..<4 {
                        let shift = UInt32(8 * k)
                        let plane = (w0 >> shift & 0xFF) | (w1 >> shift & 0xFF) << 8 | (w2 >> shift & 0xFF) << 16 | (w3 >> shift & 0xFF) << 24
                        out.storeBytes(of: plane, toByteOffset: k * count + 4 * q, as: UInt32.self)
                    }
                }
                for i in (4 * quads)..<count {
                    d[i] = s[4 * i]; d[count + i] = s[4 * i + 1]; d[2 * count + i] = s[4 * i + 2]; d[3 * count + i] = s[4 * i + 3]
                }
            } else {
                for q in 0..<quads {
                    let p0 = raw.loadUnaligned(fromByteOffset: 4 * q, as: UInt32.self)
                    let p1 = raw.loadUnaligned(fromByteOffset: count + 4 * q, as: UInt32.self)
                    let p2 = raw.loadUnaligned(fromByteOffset: 2 * count + 4 * q, as: UInt32.self)
                    let p3 = raw.loadUnaligned(fromByteOffset: 3 * count + 4 * q, as: UInt32.self)
                    for j in 0..<4 {
                        let shift = UInt32(8 * j)
                        let word = (p0 >> shift & 0xFF) | (p1 >> shift & 0xFF) << 8 | (p2 >> shift & 0xFF) << 16 | (p3 >> shift & 0xFF) << 24
                        out.storeBytes(of: word, toByteOffset: 16 * q + 4 * j, as: UInt32.self)
                    }
                }
                for i in (4 * quads)..<count {
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
