import CHiredis
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Conversions between Swift values and hiredis: argv, replies, timevals, error strings.
extension RedisConnection {
    /// Arguments up to this size are copied into one arena; larger ones are passed in place.
    private static let inlineArgumentLimit = 4096

    /// Calls `body` with argc, argv and argvlen for `arguments`, valid only inside `body`.
    static func withArgv<R>(
        _ arguments: [any RedisArgument],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafeMutablePointer<Int>) -> R
    ) -> R {
        let count = arguments.count
        var offsets = [Int](repeating: -1, count: count)
        var lengths = [Int](repeating: 0, count: count)
        var large: [Int] = []
        var arena: [UInt8] = []
        for (i, argument) in arguments.enumerated() {
            argument.withRedisBytes { bytes in
                lengths[i] = bytes.count
                if bytes.count <= inlineArgumentLimit {
                    offsets[i] = arena.count
                    arena.append(contentsOf: bytes)
                } else {
                    large.append(i)
                }
            }
        }
        arena.append(0)  // never empty, so the base address is never nil
        let pointers = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(count, 1))
        defer { pointers.deallocate() }
        return arena.withUnsafeBytes { arenaBytes in
            let base = arenaBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
            for i in 0..<count where offsets[i] >= 0 { pointers[i] = base + offsets[i] }
            // Large arguments nest one closure each, so their storage stays pinned while hiredis reads it.
            func pinLarge(_ k: Int) -> R {
                if k == large.count {
                    return lengths.withUnsafeMutableBufferPointer { body(Int32(count), pointers, $0.baseAddress!) }
                }
                let i = large[k]
                return arguments[i].withRedisBytes { bytes in
                    pointers[i] = bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
                    return pinLarge(k + 1)
                }
            }
            return pinLarge(0)
        }
    }

    static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .string(r.len == 0 ? [] : Array(UnsafeRawBufferPointer(start: r.str, count: r.len)))
        case REDIS_REPLY_STATUS:
            return .status(text(r.str, r.len))
        case REDIS_REPLY_ERROR:
            return .error(text(r.str, r.len))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(r.integer))
        case REDIS_REPLY_ARRAY:
            return .array((0..<r.elements).map { convert(r.element[$0]!) })
        default:
            return .null
        }
    }

    private static func text(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> String {
        guard let pointer, length > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    static func errorString(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    static func timeval(_ duration: Duration) -> timeval {
        let (seconds, attoseconds) = duration.components
        return CHiredis.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }

    static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }

    /// "SET tributary:run:key" — the command and its first argument, for errors and logs.
    static func describe(_ arguments: [any RedisArgument]) -> String {
        arguments.prefix(2).map { argument in
            argument.withRedisBytes { bytes in
                let text = String(decoding: bytes.prefix(80), as: UTF8.self)
                return bytes.count > 80 ? text + "…" : text
            }
        }.joined(separator: " ")
    }
}
