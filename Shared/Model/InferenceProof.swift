import Foundation

/// A TOPLOC-style commitment to the hidden states behind a completion's tokens, so that a validator that re-runs the
/// completion (one full forward pass) can tell whether the claimed model produced it, to rounding.
///
/// The hidden states are (rows, channels): row j is the final transformer block's output (before the final norm)
/// that produced generated token j's logits. They are cut into chunks of `chunk` rows (the last may be shorter);
/// chunk c, flattened row-major to n_c = rows_c · channels values, keeps its k_c = min(topK, n_c) entries of largest
/// magnitude (ties by lower flat index), each value rounded to bfloat16 (round to nearest even; NaN as 0x7FC0).
///
/// Format, chunk after chunk, no other bytes: for each chunk 2 + 2·k_c bytes, all little-endian UInt16:
///   salt s, then coefficients a_0 … a_{k_c−1} (each < p = 65521) of the polynomial P(x) = Σ a_j x^j over GF(p)
///   with P(h_s(i)) = bf16 bits of entry i for each kept flat index i, where h_s(i) = splitMix64(i ^ s << 48) mod p
///   and s is the smallest salt that makes the k_c hashes distinct.
/// At topK 128 a full chunk is 258 bytes (about 8 bytes per token at chunk 32). The indices are not stored: the
/// validator evaluates P at its own top-k indices, and an index the worker did not keep yields a random value.
public enum InferenceProof {
    /// The prime of the field: the largest below 2^16, so a coefficient fits two bytes and every bf16 bit pattern
    /// but the negative NaNs (never written) is a field element.
    public static let modulus: UInt64 = 65521

    /// Bytes of the proof of (rows, channels) hidden states; nil when the shape is not a valid one.
    public static func byteCount(rows: Int, channels: Int, chunk: Int = 32, topK: Int = 128) -> Int? {
        guard rows >= 0, channels >= 1, chunk >= 1, topK >= 1, rows <= Int(Int32.max), channels <= Int(Int32.max) else { return nil }
        var total = 0
        var r0 = 0
        while r0 < rows {
            let n = min(chunk, rows - r0)
            let (flat, over) = n.multipliedReportingOverflow(by: channels)
            guard !over else { return nil }
            total += 2 + 2 * min(topK, flat)
            r0 += n
        }
        return total
    }

    /// The proof of `hidden` (rows, channels), in the format above. Needs hidden.count == rows * channels.
    public static func commit(hidden: [Float], rows: Int, channels: Int, chunk: Int = 32, topK: Int = 128) -> [UInt8] {
        precondition(rows >= 0 && channels >= 1 && chunk >= 1 && topK >= 1 && hidden.count == rows * channels,
                     "InferenceProof.commit: hidden must be (rows, channels) with chunk, topK >= 1")
        var proof: [UInt8] = []
        proof.reserveCapacity(byteCount(rows: rows, channels: channels, chunk: chunk, topK: topK) ?? 0)
        hidden.withUnsafeBufferPointer { h in
            var r0 = 0
            while r0 < rows {
                let n = min(chunk, rows - r0) * channels
                let values = UnsafeBufferPointer(rebasing: h[(r0 * channels)..<(r0 * channels + n)])
                let kept = topIndices(values, k: min(topK, n))
                // the first salt whose hashes are distinct: each try succeeds with probability ≈ e^{−k²/2p} (0.88 at k = 128)
                var salt: UInt16 = 0
                var xs = kept.map { indexHash($0, salt: salt) }
                while Set(xs).count != xs.count {
                    precondition(salt < UInt16.max, "InferenceProof.commit: no salt separates the indices")
                    salt += 1
                    xs = kept.map { indexHash($0, salt: salt) }
                }
                let ys = kept.map { UInt64(bfloat16Bits(values[$0])) }
                append(salt, to: &proof)
                for a in interpolate(xs: xs, ys: ys) { append(UInt16(a), to: &proof) }
                r0 += min(chunk, rows - r0)
            }
        }
        return proof
    }

    /// Checks `proof` against the validator's own hidden states (rows, channels) of the same tokens: in each chunk the
    /// validator's top-k indices, the claimed values there (P at their hashes) against its own, in bf16. A chunk
    /// passes when its sign-and-exponent matches reach `thresholds` and the mantissa errors of the matches are small.
    /// An entry below the chunk's resolution (`resolutionFloor`) matches when the two bf16 values differ by less than
    /// 128 of the floor's bf16 steps, and its error is that difference in steps.
    /// Any bytes are accepted as input: a proof of the wrong length or with a coefficient ≥ p fails, never traps.
    public static func check(proof: [UInt8], hidden: [Float], rows: Int, channels: Int, chunk: Int = 32, topK: Int = 128,
                             thresholds: ProofThresholds = .default) -> ProofCheck {
        var result = ProofCheck(passed: false, chunks: 0, worstChunk: nil, exponentMatches: 0, topK: 0, requiredMatches: 0,
                                meanMantissaError: 0, medianMantissaError: 0, detail: "")
        guard let expected = byteCount(rows: rows, channels: channels, chunk: chunk, topK: topK),
              rows.multipliedReportingOverflow(by: channels) == (hidden.count, false) else {
            result.detail = "shape: \(hidden.count) hidden values for rows \(rows), channels \(channels), chunk \(chunk), topK \(topK)"
            return result
        }
        guard proof.count == expected else {
            result.detail = "malformed: \(proof.count) bytes, expected \(expected) for \(rows) rows"
            return result
        }
        var offset = 0, r0 = 0, c = 0
        var worstKey = (1.0, Double.infinity, 0.0)
        var failed = false
        hidden.withUnsafeBufferPointer { h in
            while r0 < rows {
                let n = min(chunk, rows - r0) * channels, k = min(topK, n)
                let values = UnsafeBufferPointer(rebasing: h[(r0 * channels)..<(r0 * channels + n)])
                let salt = readUInt16(proof, offset)
                var coefficients = [UInt64](repeating: 0, count: k)
                for j in 0..<k { coefficients[j] = UInt64(readUInt16(proof, offset + 2 + 2 * j)) }
                offset += 2 + 2 * k
                let required = thresholds.requiredMatches(topK: k)
                var errors: [Double] = []
                if coefficients.allSatisfy({ $0 < modulus }) {
                    let indices = topIndices(values, k: k)
                    let claims = evaluate(coefficients, at: indices.map { indexHash($0, salt: salt) })
                    let floor = resolutionFloor(values, indices: indices)
                    for (i, claim) in zip(indices, claims) {
                        let claimed = UInt16(claim)
                        if let floor, abs(values[i]) < floor.value {
                            // below the chunk's resolution: the bf16 values' difference in units of the floor's bf16 spacing
                            let claimedValue = Float(bitPattern: UInt32(claimed) << 16)
                            let ownValue = Float(bitPattern: UInt32(bfloat16Bits(values[i])) << 16)
                            let error = claimedValue.isFinite ? Double(abs(claimedValue - ownValue)) / floor.spacing : .infinity
                            if error < 128 { errors.append(error) }
                            continue
                        }
                        let own = bfloat16Bits(values[i])
                        if claimed >> 7 == own >> 7 { errors.append(Double(abs(Int(claimed & 0x7F) - Int(own & 0x7F)))) }
                    }
                }
                errors.sort()
                // no exponent matched: the errors count as 128, beyond any 7-bit mantissa difference
                let mean = errors.isEmpty ? 128 : errors.reduce(0, +) / Double(errors.count)
                let median = errors.isEmpty ? 128 : (errors[(errors.count - 1) / 2] + errors[errors.count / 2]) / 2
                let passed = errors.count >= required && mean <= thresholds.meanMantissaError && median <= thresholds.medianMantissaError
                // the worst chunk: a failing one before any passing one, then the fewest matches, then the larger mean error
                let key = (passed ? 1.0 : 0.0, Double(errors.count) / Double(k), -mean)
                if result.worstChunk == nil || key < worstKey {
                    worstKey = key
                    result.worstChunk = c
                    result.exponentMatches = errors.count
                    result.topK = k
                    result.requiredMatches = required
                    result.meanMantissaError = mean
                    result.medianMantissaError = median
                }
                if !passed { failed = true }
                r0 += min(chunk, rows - r0)
                c += 1
            }
        }
        result.chunks = c
        result.passed = !failed
        if failed {
            result.detail = "chunk \(result.worstChunk ?? 0): \(result.exponentMatches) of \(result.topK) exponents match (need \(result.requiredMatches)), "
                + "mantissa error mean \(result.meanMantissaError) (max \(thresholds.meanMantissaError)), median \(result.medianMantissaError) (max \(thresholds.medianMantissaError))"
        }
        return result
    }

    /// Binary orders of magnitude below a chunk's largest entry where its float32 noise reaches a bf16 rounding.
    /// Two kernels' results differ by ~1e-6 of the largest magnitudes they sum (absolute, not relative to each entry),
    /// so an entry 2^-8 of the largest has ~1e-6·2^8·2^7 ≈ 0.03 of a bf16 step of noise, and one near zero has many.
    public static let resolutionBits = 8

    /// When the kept entries reach below the chunk's resolution (largest magnitude · 2^-resolutionBits), the floor
    /// and its bf16 spacing: entries under it are compared by their difference in units of that spacing rather than
    /// by sign, exponent and mantissa. Only a chunk that keeps nearly all its entries (k close to its size, as in a
    /// tiny model's short completion) reaches it; TOPLOC's top-k of a real model's chunk stays far above it.
    static func resolutionFloor(_ values: UnsafeBufferPointer<Float>, indices: [Int]) -> (value: Float, spacing: Double)? {
        var largest: Float = 0
        for i in indices where values[i].isFinite { largest = max(largest, abs(values[i])) }
        guard largest > 0, largest.isNormal else { return nil }
        let floor = largest * Float(sign: .plus, exponent: -resolutionBits, significand: 1)
        guard floor.isNormal, indices.contains(where: { abs(values[$0]) < floor }) else { return nil }
        // bf16 keeps 7 mantissa bits: its spacing in the floor's binade
        return (floor, Double(Float(sign: .plus, exponent: floor.exponent - 7, significand: 1)))
    }

    /// bfloat16 bits of `x`, rounded to nearest even; every NaN as the quiet NaN 0x7FC0.
    static func bfloat16Bits(_ x: Float) -> UInt16 {
        if x.isNaN { return 0x7FC0 }
        let b = x.bitPattern
        return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }

    /// The point of flat index `i` under `salt`, in GF(p).
    static func indexHash(_ i: Int, salt: UInt16) -> UInt64 {
        splitMix64(UInt64(i) ^ (UInt64(salt) << 48)) % modulus
    }

    /// Indices of the k entries of largest magnitude (ties by lower index; NaN counts as 0), in increasing index order:
    /// the k-th largest magnitude by selection (expected linear time), then one pass that keeps what lies above it and,
    /// in index order, as many of those equal to it as there is room for.
    static func topIndices(_ x: UnsafeBufferPointer<Float>, k: Int) -> [Int] {
        let n = x.count, k = min(k, n)
        guard k > 0 else { return [] }
        let magnitudes = [Float](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0..<n { buffer[i] = x[i].isNaN ? 0 : abs(x[i]) }
            count = n
        }
        var work = magnitudes
        let threshold = work.withUnsafeMutableBufferPointer { kthLargest($0, k - 1) }
        var above = 0
        for v in magnitudes where v > threshold { above += 1 }
        var ties = k - above
        var kept: [Int] = []
        kept.reserveCapacity(k)
        for i in 0..<n {
            let v = magnitudes[i]
            if v > threshold {
                kept.append(i)
            } else if v == threshold && ties > 0 {
                kept.append(i)
                ties -= 1
            }
        }
        return kept
    }

    /// The value of rank `rank` (0 = largest) of `a`, which it reorders: Hoare's selection, the middle element as pivot.
    static func kthLargest(_ a: UnsafeMutableBufferPointer<Float>, _ rank: Int) -> Float {
        var lo = 0, hi = a.count - 1
        while lo < hi {
            let pivot = a[lo + (hi - lo) / 2]
            var i = lo, j = hi
            while i <= j {
                while a[i] > pivot { i += 1 }
                while a[j] < pivot { j -= 1 }
                if i <= j {
                    a.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            // [lo, j] ≥ pivot ≥ [i, hi]; between them, equal to the pivot
            if rank <= j { hi = j } else if rank >= i { lo = i } else { return a[rank] }
        }
        return a[rank]
    }

    /// Coefficients (k) of the polynomial of degree < k through the points (xs[i], ys[i]) over GF(p), xs distinct:
    /// Lagrange's form Σ y_i · M(x)/(x − x_i) / M'(x_i) with M = Π (x − x_i): O(k²) and one inversion.
    static func interpolate(xs: [UInt64], ys: [UInt64]) -> [UInt64] {
        let k = xs.count
        guard k > 0 else { return [] }
        // every value below p < 2^16 fits 32 bits, and so does a·b + c of three values ≤ p (65521·65520 + 65520 < 2^32;
        // p itself appears as p − x_i when x_i = 0): the O(k²) loops run on 32-bit lanes, which the compiler vectorizes
        let x32 = xs.map { UInt32($0 % modulus) }
        var m = [UInt32](repeating: 0, count: k + 1)  // M = Π (x − x_i), lowest degree first
        m[0] = 1
        m.withUnsafeMutableBufferPointer { m in
            for (d, xi) in x32.enumerated() {
                // multiply by (x − xi): the degree goes from d to d + 1
                let negated = UInt32(modulus) &- xi
                for j in stride(from: d + 1, through: 1, by: -1) { m[j] = reduce(m[j - 1] &+ negated &* m[j]) }
                m[0] = reduce(negated &* m[0])
            }
        }
        // w_i = y_i / Π_{j≠i} (x_i − x_j) = y_i / M'(x_i); the k inverses by one inversion (Montgomery's trick)
        let derivative = (1...k).map { UInt64(reduce(UInt32(UInt64($0) % modulus) &* m[$0])) }
        let denominators = evaluate(derivative, at: xs)
        var prefix = [UInt64](repeating: 1, count: k + 1)
        for i in 0..<k { prefix[i + 1] = reduce(prefix[i] * denominators[i]) }
        var running = inverse(prefix[k])
        var weights = [UInt32](repeating: 0, count: k)
        for i in stride(from: k - 1, through: 0, by: -1) {
            weights[i] = UInt32(reduce(reduce(ys[i]) * reduce(running * prefix[i])))
            running = reduce(running * denominators[i])
        }
        // Σ_i w_i · M / (x − x_i): the quotients q_i by synthetic division, all i together from the top coefficient down
        // (q_i[j−1] = m[j] + x_i·q_i[j]), so the inner loops are independent across i instead of one long chain
        var result = [UInt64](repeating: 0, count: k)
        var q = [UInt32](repeating: m[k], count: k)
        x32.withUnsafeBufferPointer { xs in
            weights.withUnsafeBufferPointer { w in
                q.withUnsafeMutableBufferPointer { q in
                    for j in stride(from: k - 1, through: 0, by: -1) {
                        // k products below 2^32 each stay below 2^64 for k < 2^32
                        var sum: UInt64 = 0
                        for i in 0..<k { sum &+= UInt64(w[i] &* q[i]) }
                        result[j] = reduce(sum)
                        guard j > 0 else { break }
                        let mj = m[j]
                        for i in 0..<k { q[i] = reduce(mj &+ xs[i] &* q[i]) }
                    }
                }
            }
        }
        return result
    }

    /// x mod p by the literal 65521, which the compiler turns into a multiply and a shift (a division by a value loaded
    /// at run time costs several times as much, and interpolation and checks make O(k²) reductions per chunk).
    @inline(__always) static func reduce(_ x: UInt64) -> UInt64 { x % 65521 }
    @inline(__always) static func reduce(_ x: UInt32) -> UInt32 { x % 65521 }

    /// P(x) at each of `points` by Horner, all points together (coefficients lowest degree first, all < p; any points).
    static func evaluate(_ coefficients: [UInt64], at points: [UInt64]) -> [UInt64] {
        let x32 = points.map { UInt32($0 % modulus) }
        var acc = [UInt32](repeating: 0, count: points.count)
        x32.withUnsafeBufferPointer { x in
            acc.withUnsafeMutableBufferPointer { acc in
                for a in coefficients.reversed() {
                    let a32 = UInt32(a % modulus)
                    for i in 0..<x.count { acc[i] = reduce(acc[i] &* x[i] &+ a32) }
                }
            }
        }
        return acc.map { UInt64($0) }
    }

    /// a^(p−2) = a^(−1) in GF(p), a ≠ 0.
    static func inverse(_ a: UInt64) -> UInt64 {
        var result: UInt64 = 1, base = a % modulus, e = modulus - 2
        while e > 0 {
            if e & 1 == 1 { result = result * base % modulus }
            base = base * base % modulus
            e >>= 1
        }
        return result
    }

    private static func append(_ v: UInt16, to bytes: inout [UInt8]) {
        bytes.append(UInt8(v & 0xFF))
        bytes.append(UInt8(v >> 8))
    }

    private static func readUInt16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }
}

/// When a proof's chunk passes: TOPLOC's thresholds, in bf16 units. The exponent test counts entries of the validator's
/// top-k whose claimed sign and exponent equal its own (an index the worker did not keep decodes to a random value,
/// so it counts the overlap of the two top-k sets); the mantissa errors are |Δ| of the 7-bit bf16 mantissas of those
/// matches (units of 2^-7 relative to the value's power of two).
public struct ProofThresholds: Sendable, Equatable, Hashable {
    /// Share of the chunk's k entries that must match in sign and exponent: TOPLOC's 90 of 128.
    public var exponentMatchFraction: Double
    /// Largest mean mantissa error of the matches (TOPLOC: 10).
    public var meanMantissaError: Double
    /// Largest median mantissa error of the matches (TOPLOC: 8).
    public var medianMantissaError: Double

    public init(exponentMatchFraction: Double = 90.0 / 128.0, meanMantissaError: Double = 10, medianMantissaError: Double = 8) {
        self.exponentMatchFraction = exponentMatchFraction
        self.meanMantissaError = meanMantissaError
        self.medianMantissaError = medianMantissaError
    }

    /// TOPLOC's: ≥ 90 of 128 exponents (the same share of a smaller k, rounded up), mean ≤ 10, median ≤ 8. They allow
    /// for bf16 inference on different GPUs; in float32 an honest worker's errors are far smaller (see `float32`).
    public static let `default` = ProofThresholds()

    /// For float32 inference on both sides (Tributary's CPU workers): ≥ 124 of 128 exponents, mean ≤ 0.05, median 0.
    /// Float32 results of two kernels differ by ~1e-6 relative, which flips a bf16 rounding for about 5e-4 of the
    /// entries (0.07 of 128; six flips in one chunk, mean 0.05, has odds ~1e-10). Measured honest worst case across
    /// OpenBLAS kernels and batch shapes: 128 of 128, mean 0.008; for a 32-channel model's completions of 1–4 tokens,
    /// whose chunks keep near-zero entries (compared against the chunk's resolution floor), mean 0.016. A copy of the weights rounded to bf16 measured means
    /// of 0.13 (bench GPT-2) to 6.3 (tests' Llama), so it fails by the proof alone; the default thresholds pass it.
    public static let float32 = ProofThresholds(exponentMatchFraction: 124.0 / 128.0, meanMantissaError: 0.05, medianMantissaError: 0)

    /// Matches a chunk of `k` entries needs.
    public func requiredMatches(topK k: Int) -> Int {
        guard exponentMatchFraction.isFinite else { return k }
        return min(k, max(0, Int((exponentMatchFraction * Double(k)).rounded(.up))))
    }
}

/// What checking a proof found: whether every chunk passed, and the worst chunk's figures (the first failing one
/// with the fewest matches, else the passing one with the fewest).
public struct ProofCheck: Sendable, Equatable, Hashable {
    public var passed: Bool
    /// Chunks checked: 0 for an empty completion, or when the proof or shape was refused before any chunk.
    public var chunks: Int
    public var worstChunk: Int?
    /// The worst chunk's sign-and-exponent matches out of its `topK` entries, and the matches it needed.
    public var exponentMatches: Int
    public var topK: Int
    public var requiredMatches: Int
    /// Mean and median |Δ mantissa| of the worst chunk's matches, in bf16 mantissa units (128 when none matched).
    public var meanMantissaError: Double
    public var medianMantissaError: Double
    /// Why it failed ("malformed: …", "shape: …" or the failing chunk's figures); empty when it passed.
    public var detail: String
}
