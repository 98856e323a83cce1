import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header (dtype, shape, data_offsets per
/// tensor, optional string `__metadata__`), then the raw little-endian tensor bytes.
enum Safetensors {
    struct TensorInfo {
        var dtype: String
        var shape: [Int]
        var begin: Int, end: Int   // byte range within the data section
    }

    struct File {
        var metadata: [String: String]
        var tensors: [String: TensorInfo]
        var dataStart: Int
    }

    /// One F32 tensor to write.
    struct Output {
        var name: String
        var shape: [Int]
        var data: UnsafePointer<Float>
    }

    /// Serialises tensors in the given order as float32; same input gives the same bytes.
    static func write(_ tensors: [Output], metadata: [String: String]) -> [UInt8] {
        write(tensors, metadata: metadata, dtype: .float32)
    }

    /// Serialises tensors in the given order, rounded to `dtype` (nearest even); same input gives the same bytes.
    static func write(_ tensors: [Output], metadata: [String: String], dtype: SafetensorsDType) -> [UInt8] {
        var header = "{\"__metadata__\":{"
        header += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
        header += "}"
        var offset = 0
        for t in tensors {
            let n = t.shape.reduce(1, *) * dtype.byteCount
            header += ",\(jsonString(t.name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + n)]}"
            offset += n
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }  // align the data section to 8 bytes
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in tensors {
            let n = t.shape.reduce(1, *)
            if dtype == .float32 {
                UnsafeRawBufferPointer(start: t.data, count: n * 4).withMemoryRebound(to: UInt8.self) { out.append(contentsOf: $0) }
            } else {
                let start = out.count
                out.append(contentsOf: repeatElement(0, count: n * dtype.byteCount))
                out.withUnsafeMutableBytes { dtype.encode(t.data, count: n, into: $0.baseAddress! + start) }
            }
        }
        return out
    }

    /// Parses and checks the header: every tensor's range lies inside the file and fits its dtype and shape.
    static func parse(_ bytes: [UInt8]) throws -> File {
        guard bytes.count >= 8 else { throw CheckpointError.truncated(expected: 8, found: bytes.count) }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(100_000_000) else { throw CheckpointError.badHeader("header length \(n) is implausible") }
        let headerLength = Int(n)
        guard bytes.count >= 8 + headerLength else { throw CheckpointError.truncated(expected: 8 + headerLength, found: bytes.count) }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)]))
        } catch {
            throw CheckpointError.badHeader("not JSON (\(error.localizedDescription))")
        }
        guard let dict = json as? [String: Any] else { throw CheckpointError.badHeader("not a JSON object") }
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        var file = File(metadata: [:], tensors: [:], dataStart: dataStart)
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw CheckpointError.badHeader("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw CheckpointError.badHeader("__metadata__ \(k) is not a string") }
                    file.metadata[k] = s
                }
                continue
            }
            guard let t = value as? [String: Any], let dtype = t["dtype"] as? String,
                  let shape = (t["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  let offsets = (t["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2, shape.count == (t["shape"] as? [Any])?.count
            else { throw CheckpointError.badHeader("tensor \(name): needs dtype, shape and data_offsets") }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw CheckpointError.badHeader("tensor \(name): negative dimension in \(shape)") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin else { throw CheckpointError.badHeader("tensor \(name): data_offsets [\(begin), \(end)] invalid") }
            guard end <= dataLength else { throw CheckpointError.truncated(expected: dataStart + end, found: bytes.count) }
            file.tensors[name] = TensorInfo(dtype: dtype, shape: shape, begin: begin, end: end)
        }
        return file
    }

    /// Copies a tensor into `destination` as float32 (F32 copied, BF16 and F16 widened exactly), checking dtype, shape
    /// and size first.
    static func read(_ name: String, from file: File, bytes: [UInt8], expectedShape: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard let t = file.tensors[name] else { throw CheckpointError.missingTensor(name) }
        try check(name, t, expectedShape: expectedShape)
        let count = expectedShape.reduce(1, *)
        let dtype = SafetensorsDType(rawValue: t.dtype)!
        bytes.withUnsafeBytes { raw in
            dtype.decode(raw.baseAddress! + file.dataStart + t.begin, count: count, into: destination)
        }
    }

    static func check(_ name: String, _ t: TensorInfo, expectedShape: [Int]) throws {
        guard let dtype = SafetensorsDType(rawValue: t.dtype) else { throw CheckpointError.unknownDType(tensor: name, dtype: t.dtype) }
        guard t.shape == expectedShape else { throw CheckpointError.shapeMismatch(tensor: name, expected: expectedShape, found: t.shape) }
        let need = expectedShape.reduce(1, *) * dtype.byteCount
        guard t.end - t.begin == need else { throw CheckpointError.sizeMismatch(tensor: name, expectedBytes: need, foundBytes: t.end - t.begin) }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
