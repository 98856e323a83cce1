import CZstd

/// A reusable zstd decompression context that refuses frames it cannot size first.
///
/// Not thread-safe (a ZSTD_DCtx is single-threaded state): use one per thread or owner.
public final class ZstdDecompressor {
    private let context: OpaquePointer

    public init() {
        guard let context = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    public func decompress(_ bytes: [UInt8], maxOutputSize: Int) throws(ZstdError) -> [UInt8] {
        let result: Result<[UInt8], ZstdError> = bytes.withUnsafeBytes { raw in
            Result { () throws(ZstdError) in try decompress(raw, maxOutputSize: maxOutputSize) }
        }
        return try result.get()
    }

    /// Sizes every frame from its header, checks the total against `maxOutputSize`, then allocates once.
    public func decompress(_ bytes: UnsafeRawBufferPointer, maxOutputSize: Int) throws(ZstdError) -> [UInt8] {
        let declared = try Zstd.declaredContentSize(bytes, limit: maxOutputSize)
        var failure: String?
        let output = [UInt8](unsafeUninitializedCapacity: declared) { out, written in
            // Capacity is exactly the declared size: a frame that lies about its size fails here instead of growing.
            let n = ZSTD_decompressDCtx(context, out.baseAddress, declared, bytes.baseAddress, bytes.count)
            if ZSTD_isError(n) != 0 {
                failure = Zstd.errorName(n); written = 0
            } else if n != declared {
                failure = "produced \(n) bytes"; written = 0
            } else {
                written = n
            }
        }
        if let failure { throw .corrupt(reason: failure, compressedSize: bytes.count, declaredSize: declared) }
        return output
    }
}
