import Foundation
import Compression
import Store

/// Redis and zstd throughput, for `tributary-bench messaging`.
/// Uses the Redis from scripts/brokers.sh (or TRIBUTARY_REDIS_URL); MB is 10^6 bytes.
func benchStoreAndCompression() throws -> [(key: String, value: Double)] {
    // On a thread of its own, as RedisClient runs a connection. (On the main thread glibc's main heap trims
    // and regrows around every 4 MiB buffer: about half the throughput, measured.)
    var figures = try storeBenchOnThread { var f: [(key: String, value: Double)] = []; try storeBenchRedis(into: &f); return f }
    try storeBenchZstd(into: &figures)
    return figures
}

private func storeBenchRedis(into figures: inout [(key: String, value: Double)]) throws {
    let redis = try RedisConnection(endpoint: .fromEnvironment())
    let key = "tributary-bench:\(ProcessInfo.processInfo.processIdentifier):blob"
    defer { _ = try? redis.del(key) }
    let size = 4 << 20, rounds = 100
    let value = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }

    for _ in 0..<5 { try redis.set(key, value) }  // warm up buffers on both sides
    let setTime = try storeBenchTimed { for _ in 0..<rounds { try redis.set(key, value) } }
    figures.append(("redis_set_4m_mb_per_s", storeBenchMegabytes(size * rounds) / setTime))

    for _ in 0..<5 { _ = try redis.get(key) }
    var checksum = 0
    let getTime = try storeBenchTimed { for _ in 0..<rounds { checksum &+= try redis.get(key)?.count ?? 0 } }
    precondition(checksum == size * rounds, "GET returned \(checksum) bytes, expected \(size * rounds)")
    figures.append(("redis_get_4m_mb_per_s", storeBenchMegabytes(size * rounds) / getTime))

    // The same through the async facade: one hop to the client's thread per command.
    let client = RedisClient(endpoint: redis.endpoint)
    defer { client.close() }
    let asyncRounds = 50
    let (clientSet, clientGet) = try storeBenchAwait {
        try await client.set(key, value)
        let start = ContinuousClock.now
        for _ in 0..<asyncRounds { try await client.set(key, value) }
        let set = storeBenchSeconds(ContinuousClock.now - start)
        let getStart = ContinuousClock.now
        for _ in 0..<asyncRounds { _ = try await client.get(key) }
        return (set, storeBenchSeconds(ContinuousClock.now - getStart))
    }
    figures.append(("redis_client_set_4m_mb_per_s", storeBenchMegabytes(size * asyncRounds) / clientSet))
    figures.append(("redis_client_get_4m_mb_per_s", storeBenchMegabytes(size * asyncRounds) / clientGet))
}

private func storeBenchZstd(into figures: inout [(key: String, value: Double)]) throws {
    let floats = storeBenchRandomNormalFloats(count: 16 << 20, seed: 1234)  // 64 MiB, like a shard of a checkpoint
    let bytes = floats.count * 4
    let compressor = ZstdCompressor(), decompressor = ZstdDecompressor()

    var frame: [UInt8] = []
    let plainTime = try floats.withUnsafeBytes { raw in
        try storeBenchBestOf(3) { frame = try compressor.compress(raw, level: 1) }
    }
    figures.append(("zstd_fp32_compress_mb_per_s", storeBenchMegabytes(bytes) / plainTime))
    figures.append(("zstd_fp32_ratio", Double(bytes) / Double(frame.count)))
    let decompressTime = try storeBenchBestOf(3) { _ = try decompressor.decompress(frame, maxOutputSize: bytes) }
    figures.append(("zstd_fp32_decompress_mb_per_s", storeBenchMegabytes(bytes) / decompressTime))

    var shuffledFrame: [UInt8] = []
    let shuffledTime = try storeBenchBestOf(3) { shuffledFrame = try Zstd.compressFloats(floats, level: 1, shuffle: true) }
    figures.append(("zstd_fp32_shuffled_compress_mb_per_s", storeBenchMegabytes(bytes) / shuffledTime))
    figures.append(("zstd_fp32_shuffled_ratio", Double(bytes) / Double(shuffledFrame.count)))
    var back: [Float] = []
    let unshuffleTime = try storeBenchBestOf(3) { back = try Zstd.decompressFloats(shuffledFrame, maxCount: floats.count) }
    precondition(back == floats, "shuffled zstd round trip changed the data")
    figures.append(("zstd_fp32_shuffled_decompress_mb_per_s", storeBenchMegabytes(bytes) / unshuffleTime))
}

/// N(0, 1) floats by Box-Muller over a 64-bit LCG: deterministic, and as incompressible as real weights' mantissas.
private func storeBenchRandomNormalFloats(count: Int, seed: UInt64) -> [Float] {
    var state = seed
    func uniform() -> Double {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (Double(state >> 11) + 0.5) / Double(1 << 53)
    }
    var out = [Float](repeating: 0, count: count)
    var i = 0
    while i < count {
        let r = (-2 * log(uniform())).squareRoot(), theta = 2 * Double.pi * uniform()
        out[i] = Float(r * cos(theta))
        if i + 1 < count { out[i + 1] = Float(r * sin(theta)) }
        i += 2
    }
    return out
}

private func storeBenchTimed(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return storeBenchSeconds(ContinuousClock.now - start)
}

private func storeBenchBestOf(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<runs { best = min(best, try storeBenchTimed(body)) }
    return best
}

private func storeBenchSeconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

private func storeBenchMegabytes(_ bytes: Int) -> Double { Double(bytes) / 1e6 }

/// Runs async work from this synchronous bench and waits for it (the caller is a plain thread, not the pool).
private func storeBenchAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = StoreBenchResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

private func storeBenchOnThread<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
    let box = StoreBenchResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        do { box.result = .success(try body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    thread.start()
    done.wait()
    return try box.result!.get()
}

private final class StoreBenchResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?  // written by the task before signal, read after wait
}
