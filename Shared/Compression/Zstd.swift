import CZstd

/// One-shot zstd compression of whole buffers.
///
/// Decompression never trusts the input: every frame must declare its content size, and the
/// declared total must fit `maxOutputSize` before anything is allocated (decompression bombs).
/// The static functions create a context per call and are safe from any thread; to reuse a
/// context across calls, keep a `ZstdCompressor` / `ZstdDecompressor` on one thread.
public enum Zstd {
    /// Levels this libzstd accepts (negative levels are the fast modes).
    public static var supportedLevels: ClosedRange<Int> { Int(ZSTD_minCLevel())...Int(ZSTD_maxCLevel()) }

    /// Largest output `compress` can produce for `inputSize` bytes.
    public static func compressBound(_ inputSize: Int) -> Int { ZSTD_compressBound(inputSize) }

    public static func compress(_ bytes: [UInt8], level: Int = 1) throws(ZstdError) -> [UInt8] {
        try ZstdCompressor().compress(bytes, level: level)
    }

    public static func compress(_ bytes: UnsafeRawBufferPointer, level: Int = 1) throws(ZstdError) -> [UInt8] {
        try ZstdCompressor().compress(bytes, level: level)
    }

    /// Decompresses one or more concatenated frames holding at most `maxOutputSize` bytes in all.
    public static func decompress(_ bytes: [UInt8], maxOutputSize: Int) throws(ZstdError) -> [UInt8] {
        try ZstdDecompressor().decompress(bytes, maxOutputSize: maxOutputSize)
    }

    public static func decompress(_ bytes: UnsafeRawBufferPointer, maxOutputSize: Int) throws(ZstdError) -> [UInt8] {
        try ZstdDecompressor().decompress(bytes, maxOutputSize: maxOutputSize)
    }

    /// Total content size the frames in `bytes` declare, checked against `limit` without decompressing.
    public static func declaredContentSize(_ bytes: UnsafeRawBufferPointer, limit: Int) throws(ZstdError) -> Int {
        // Not exposed as macros Swift can import: ZSTD_CONTENTSIZE_UNKNOWN and ZSTD_CONTENTSIZE_ERROR.
        let unknown = UInt64.max, error = UInt64.max - 1
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            throw .notAFrame(reason: "empty input", compressedSize: 0)
        }
        var offset = 0, total: UInt64 = 0, frameIndex = 0
        while offset < bytes.count {
            let frame = base + offset, remaining = bytes.count - offset
            let size = ZSTD_getFrameContentSize(frame, remaining)
            if size == error {
                throw .notAFrame(reason: "frame \(frameIndex) at byte \(offset) has no valid header", compressedSize: bytes.count)
            }
            if size == unknown { throw .contentSizeUnknown(frameIndex: frameIndex, compressedSize: bytes.count) }
            let (sum, overflow) = total.addingReportingOverflow(size)
            if overflow || sum > UInt64(max(limit, 0)) {
                throw .contentSizeTooLarge(declared: overflow ? UInt64.max : sum, limit: limit)
            }
            total = sum
            let frameSize = ZSTD_findFrameCompressedSize(frame, remaining)
            if ZSTD_isError(frameSize) != 0 {
                throw .notAFrame(reason: "frame \(frameIndex) at byte \(offset): \(errorName(frameSize))", compressedSize: bytes.count)
            }
            offset += frameSize
            frameIndex += 1
        }
        return Int(total)
    }

    static func errorName(_ code: Int) -> String { String(cString: ZSTD_getErrorName(code)) }
}
