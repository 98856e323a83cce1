/// fp32 tensors: optional byte shuffle, then zstd.
extension Zstd {
    /// Compresses the raw little-endian bytes of `floats`, byte-shuffled first when `shuffle` is set.
    public static func compressFloats(_ floats: [Float], level: Int = 1, shuffle: Bool = true) throws(ZstdError) -> [UInt8] {
        let result: Result<[UInt8], ZstdError> = floats.withUnsafeBytes { raw in
            Result { () throws(ZstdError) in
                shuffle ? try compress(ByteShuffle.shuffle(raw, elementSize: 4), level: level) : try compress(raw, level: level)
            }
        }
        return try result.get()
    }

    /// Inverse of `compressFloats`; refuses frames declaring more than `maxCount` floats, or a size that is not whole floats.
    public static func decompressFloats(_ bytes: [UInt8], maxCount: Int, shuffled: Bool = true) throws(ZstdError) -> [Float] {
        let raw = try decompress(bytes, maxOutputSize: maxCount * 4)
        guard raw.count % 4 == 0 else {
            throw .corrupt(reason: "\(raw.count) bytes are not whole fp32 values", compressedSize: bytes.count, declaredSize: raw.count)
        }
        let plain = shuffled ? ByteShuffle.unshuffle(raw, elementSize: 4) : raw
        return [Float](unsafeUninitializedCapacity: plain.count / 4) { out, written in
            plain.withUnsafeBytes { UnsafeMutableRawBufferPointer(out).copyMemory(from: $0) }
            written = plain.count / 4
        }
    }
}
