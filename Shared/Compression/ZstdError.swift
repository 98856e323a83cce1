/// What went wrong in a zstd call, with the sizes involved.
public enum ZstdError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The compression level is outside what this libzstd accepts.
    case invalidLevel(level: Int, supported: ClosedRange<Int>)
    /// libzstd refused to compress (out of memory, or a bad parameter).
    case compressionFailed(reason: String, inputSize: Int, level: Int)
    /// The input is not a zstd frame, or its header is cut short.
    case notAFrame(reason: String, compressedSize: Int)
    /// A frame does not declare its decompressed size, so it cannot be checked against the limit before allocating.
    case contentSizeUnknown(frameIndex: Int, compressedSize: Int)
    /// The frames declare more bytes than the caller allows (a decompression bomb, or a limit too small).
    case contentSizeTooLarge(declared: UInt64, limit: Int)
    /// The frame body is damaged, or holds other bytes than its header declares.
    case corrupt(reason: String, compressedSize: Int, declaredSize: Int)

    public var description: String {
        switch self {
        case .invalidLevel(let level, let supported):
            "zstd: compression level \(level) is outside \(supported.lowerBound)...\(supported.upperBound)"
        case .compressionFailed(let reason, let inputSize, let level):
            "zstd: compressing \(inputSize) bytes at level \(level) failed: \(reason)"
        case .notAFrame(let reason, let compressedSize):
            "zstd: \(compressedSize) input bytes are not a zstd frame: \(reason)"
        case .contentSizeUnknown(let frameIndex, let compressedSize):
            "zstd: frame \(frameIndex) of \(compressedSize) input bytes does not declare its content size; refused"
        case .contentSizeTooLarge(let declared, let limit):
            "zstd: frames declare \(declared) bytes, more than the limit of \(limit) bytes; refused"
        case .corrupt(let reason, let compressedSize, let declaredSize):
            "zstd: \(compressedSize) input bytes declaring \(declaredSize) bytes failed to decompress: \(reason)"
        }
    }
}
