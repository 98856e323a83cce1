import CZstd

/// A reusable zstd compression context.
///
/// Not thread-safe (a ZSTD_CCtx is single-threaded state): use one per thread or owner.
public final class ZstdCompressor {
    private let context: OpaquePointer
    /// Helper threads libzstd starts for large inputs (0: compress on the calling thread only).
    public let workers: Int

    /// `workers` > 0 compresses big inputs on that many libzstd threads (ignored when libzstd lacks threads).
    public init(workers: Int = 0) {
        self.workers = workers
        guard let context = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        self.context = context
    }

    deinit { ZSTD_freeCCtx(context) }

    public func compress(_ bytes: [UInt8], level: Int = 1) throws(ZstdError) -> [UInt8] {
        // Typed throws does not cross withUnsafeBytes; carry the error out by hand.
        let result: Result<[UInt8], ZstdError> = bytes.withUnsafeBytes { raw in
            Result { () throws(ZstdError) in try compress(raw, level: level) }
        }
        return try result.get()
    }

    public func compress(_ bytes: UnsafeRawBufferPointer, level: Int = 1) throws(ZstdError) -> [UInt8] {
        let levels = Zstd.supportedLevels
        guard levels.contains(level) else { throw .invalidLevel(level: level, supported: levels) }
        let bound = ZSTD_compressBound(bytes.count)
        var failure: String?
        // Frames carry their content size (ZSTD_compress2 writes it) and a checksum, so damage is caught on decompress.
        ZSTD_CCtx_reset(context, ZSTD_reset_session_and_parameters)
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
        if workers > 0 { ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, Int32(workers)) }
        let output = [UInt8](unsafeUninitializedCapacity: bound) { out, written in
            let n = ZSTD_compress2(context, out.baseAddress, bound, bytes.baseAddress, bytes.count)
            if ZSTD_isError(n) != 0 { failure = Zstd.errorName(n); written = 0 } else { written = n }
        }
        if let failure { throw .compressionFailed(reason: failure, inputSize: bytes.count, level: level) }
        return output
    }
}
