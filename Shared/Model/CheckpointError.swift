/// Why a safetensors file or checkpoint directory could not be loaded, naming the tensor, key or file.
public enum CheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated(expected: Int, found: Int)
    case badHeader(String)
    case unknownDType(tensor: String, dtype: String)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    case sizeMismatch(tensor: String, expectedBytes: Int, foundBytes: Int)
    case missingTensor(String)
    case unexpectedTensor(String)
    case missingMetadata(String)
    case badMetadata(key: String, value: String)
    case missingFile(String)
    case badConfig(String)

    public var description: String {
        switch self {
        case let .truncated(e, f): "safetensors truncated: need \(e) bytes, file has \(f)"
        case let .badHeader(why): "safetensors header invalid: \(why)"
        case let .unknownDType(t, d): "tensor \(t): unsupported dtype \(d) (F32, BF16 and F16 are read)"
        case let .shapeMismatch(t, e, f): "tensor \(t): shape \(f) does not fit the model's \(e)"
        case let .sizeMismatch(t, e, f): "tensor \(t): data holds \(f) bytes, its shape needs \(e)"
        case let .missingTensor(t): "tensor \(t) missing from the file"
        case let .unexpectedTensor(t): "tensor \(t) is not part of this model"
        case let .missingMetadata(k): "safetensors __metadata__ lacks \(k)"
        case let .badMetadata(k, v): "safetensors __metadata__ \(k) is invalid: \(v)"
        case let .missingFile(p): "checkpoint file missing: \(p)"
        case let .badConfig(why): "checkpoint config invalid: \(why)"
        }
    }
}
