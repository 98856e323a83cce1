import Compression
import Testing

@Suite struct ZstdTests {
    /// Deterministic pseudo-random bytes with some repetition so zstd has something to find.
    static func sample(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
        var state = seed
        return (0..<count).map { i in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return i % 3 == 0 ? UInt8(i % 7) : UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    @Test(arguments: [0, 1, 1000, 300_000])
    func roundTrip(count: Int) throws {
        let input = Self.sample(count)
        let frame = try Zstd.compress(input, level: 1)
        #expect(try Zstd.decompress(frame, maxOutputSize: count) == input)
    }

    @Test func roundTripThroughRawBufferAndReusedContexts() throws {
        let compressor = ZstdCompressor(), decompressor = ZstdDecompressor()
        for level in [-5, 1, 3, 19] {
            let input = Self.sample(50_000, seed: UInt64(level + 100))
            let frame = try input.withUnsafeBytes { try compressor.compress($0, level: level) }
            let output = try frame.withUnsafeBytes { try decompressor.decompress($0, maxOutputSize: 50_000) }
            #expect(output == input)
        }
    }

    @Test func multiThreadedFramesDeclareTheirSizeAndRoundTrip() throws {
        let input = Self.sample(3 << 20)  // big enough for libzstd to split across workers
        let frame = try ZstdCompressor(workers: 2).compress(input)
        #expect(try Zstd.decompress(frame, maxOutputSize: input.count) == input)
    }

    @Test func concatenatedFramesDecompressToTheirConcatenation() throws {
        let a = Self.sample(1000, seed: 1), b = Self.sample(2000, seed: 2)
        let frames = try Zstd.compress(a) + Zstd.compress(b)
        #expect(try Zstd.decompress(frames, maxOutputSize: 3000) == a + b)
        #expect(throws: ZstdError.contentSizeTooLarge(declared: 3000, limit: 2999)) {
            try Zstd.decompress(frames, maxOutputSize: 2999)
        }
    }

    @Test func bombDeclaringMoreThanTheLimitIsRefused() throws {
        // 64 MiB of zeros compresses to a few KiB: a real bomb.
        let bomb = try Zstd.compress([UInt8](repeating: 0, count: 64 << 20))
        #expect(bomb.count < 64 << 10)
        #expect(throws: ZstdError.contentSizeTooLarge(declared: 64 << 20, limit: 1 << 20)) {
            try Zstd.decompress(bomb, maxOutputSize: 1 << 20)
        }
    }

    @Test func headerClaimingHugeContentSizeIsRefusedBeforeAllocating() throws {
        // Magic, descriptor 0xE0 (8-byte content size, single segment), content size 2^50, then nothing.
        var header: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0xE0]
        withUnsafeBytes(of: UInt64(1 << 50).littleEndian) { header += $0 }
        #expect(throws: ZstdError.contentSizeTooLarge(declared: 1 << 50, limit: 1 << 30)) {
            try Zstd.decompress(header, maxOutputSize: 1 << 30)
        }
    }

    @Test func frameWithoutContentSizeIsRefused() throws {
        // Valid frame as a streaming compressor writes it: no content size, window 1 KiB, one raw last block.
        let payload: [UInt8] = Array("hello, tributary".utf8)
        let blockHeader = UInt32(payload.count) << 3 | 1
        let frame: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x00,
                              UInt8(blockHeader & 0xFF), UInt8(blockHeader >> 8 & 0xFF), UInt8(blockHeader >> 16)] + payload
        #expect(throws: ZstdError.contentSizeUnknown(frameIndex: 0, compressedSize: frame.count)) {
            try Zstd.decompress(frame, maxOutputSize: 1 << 20)
        }
    }

    @Test func damagedBodyIsACorruptError() throws {
        let input = Self.sample(100_000)
        var frame = try Zstd.compress(input)
        frame[frame.count / 2] ^= 0x5A
        let error = try #require(throws: ZstdError.self) { try Zstd.decompress(frame, maxOutputSize: input.count) }
        guard case .corrupt(_, let compressedSize, let declaredSize) = error else {
            Issue.record("expected .corrupt, got \(error)"); return
        }
        #expect(compressedSize == frame.count)
        #expect(declaredSize == input.count)
    }

    @Test func garbageAndTruncatedInputAreNotFrames() throws {
        #expect(throws: ZstdError.notAFrame(reason: "empty input", compressedSize: 0)) {
            try Zstd.decompress([], maxOutputSize: 10)
        }
        let garbage = try #require(throws: ZstdError.self) { try Zstd.decompress(Array("not zstd at all".utf8), maxOutputSize: 100) }
        guard case .notAFrame = garbage else { Issue.record("expected .notAFrame, got \(garbage)"); return }
        let frame = try Zstd.compress(Self.sample(10_000))
        let truncated = try #require(throws: ZstdError.self) { try Zstd.decompress(Array(frame.dropLast(10)), maxOutputSize: 10_000) }
        guard case .notAFrame = truncated else { Issue.record("expected .notAFrame, got \(truncated)"); return }
    }

    @Test func levelOutsideTheSupportedRangeIsRefused() {
        let error = #expect(throws: ZstdError.self) { try Zstd.compress([1, 2, 3], level: 1000) }
        #expect(error?.description.contains("1000") == true)
    }
}
