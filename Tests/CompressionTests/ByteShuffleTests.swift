import Foundation
import Compression
import Testing

@Suite struct ByteShuffleTests {
    @Test func shuffleGathersBytePlanes() {
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9]  // two 4-byte elements and one trailing byte
        #expect(ByteShuffle.shuffle(bytes, elementSize: 4) == [1, 5, 2, 6, 3, 7, 4, 8, 9])
    }

    @Test(arguments: [1, 2, 3, 4, 8])
    func unshuffleInvertsShuffle(elementSize: Int) {
        let bytes = ZstdTests.sample(1003)
        let shuffled = ByteShuffle.shuffle(bytes, elementSize: elementSize)
        #expect(ByteShuffle.unshuffle(shuffled, elementSize: elementSize) == bytes)
    }

    @Test func floatsRoundTripShuffledAndPlain() throws {
        let floats = (0..<10_000).map { Float(sin(Double($0) * 0.01)) * 3 }
        for shuffle in [true, false] {
            let frame = try Zstd.compressFloats(floats, shuffle: shuffle)
            let back = try Zstd.decompressFloats(frame, maxCount: floats.count, shuffled: shuffle)
            #expect(back == floats)
        }
        let frame = try Zstd.compressFloats(floats)
        #expect(throws: ZstdError.contentSizeTooLarge(declared: 40_000, limit: 39_996)) {
            try Zstd.decompressFloats(frame, maxCount: floats.count - 1)
        }
    }
}
