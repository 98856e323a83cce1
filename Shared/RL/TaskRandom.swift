/// SplitMix64: a small, fast generator whose stream depends only on its seed, so tasks are the same on every machine.
public struct TaskRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// One generator per (seed, index, salt): mixing keeps neighbouring indices uncorrelated.
    public init(seed: UInt64, index: Int, salt: UInt64 = 0) {
        var mixer = TaskRandom(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        let a = mixer.next()
        var mixer2 = TaskRandom(seed: a ^ UInt64(bitPattern: Int64(index)) &* 0xBF58_476D_1CE4_E5B9 ^ salt)
        state = mixer2.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform integer in `range` (no modulo bias worth caring about at these sizes, but use the stdlib's anyway).
    public mutating func int(in range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
}
