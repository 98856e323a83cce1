/// The floating-point dtypes read from and written to safetensors; compute is always float32.
public enum SafetensorsDType: String, Sendable, Codable, CaseIterable {
    case float32 = "F32"
    case bfloat16 = "BF16"
    case float16 = "F16"

    public var byteCount: Int { self == .float32 ? 4 : 2 }

    /// The name config.json and torch use ("float32", "bfloat16", "float16").
    public var torchName: String {
        switch self {
        case .float32: "float32"
        case .bfloat16: "bfloat16"
        case .float16: "float16"
        }
    }

    public init?(torchName: String) {
        guard let d = SafetensorsDType.allCases.first(where: { $0.torchName == torchName }) else { return nil }
        self = d
    }

    /// count little-endian values at `source` widened to float32 (exact for every dtype).
    func decode(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        switch self {
        case .float32:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
        case .bfloat16:
            for i in 0..<count {
                let bits = UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                destination[i] = Float(bitPattern: bits << 16)
            }
        case .float16:
            for i in 0..<count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                destination[i] = Float(Float16(bitPattern: bits))
            }
        }
    }

    /// count float32 values rounded to this dtype (nearest, ties to even, as torch's `.to(dtype)`), little-endian.
    func encode(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutableRawPointer) {
        switch self {
        case .float32:
            destination.copyMemory(from: source, byteCount: count * 4)
        case .bfloat16:
            for i in 0..<count {
                let bits = source[i].bitPattern
                let rounded: UInt16 = source[i].isNaN ? 0x7FC0 : UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
                destination.storeBytes(of: rounded.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        case .float16:
            for i in 0..<count {
                destination.storeBytes(of: Float16(source[i]).bitPattern.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        }
    }
}
