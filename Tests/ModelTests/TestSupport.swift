import ModelAgreement
import Testing
@testable import Model

/// Tiny shapes so debug builds stay fast.
let tinyConfig = GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: 16, layers: 2, heads: 2, channels: 16)

func randomFloats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SeededGenerator(seed: seed)
    return (0..<n).map { _ in rng.nextNormal() * scale }
}

func randomTokens(_ n: Int, seed: UInt64, below v: Int = ByteTokenizer.vocabSize) -> [Int32] {
    var rng = SeededGenerator(seed: seed)
    return (0..<n).map { _ in Int32(rng.next() % UInt64(v)) }
}

/// Largest |a - b| / max(|a|, |b|, floor) over the pairs.
func maxRelativeError(_ a: [Float], _ b: [Float], floor: Float = 1e-2) -> Float {
    zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
}

/// Central differences of `loss` with respect to `x[i]` for the given indices.
func numericGradient(_ x: inout [Float], indices: [Int], eps: Float, loss: ([Float]) -> Double) -> [Float] {
    indices.map { i in
        let saved = x[i]
        x[i] = saved + eps
        let plus = loss(x)
        x[i] = saved - eps
        let minus = loss(x)
        x[i] = saved
        return Float((plus - minus) / Double(2 * eps))
    }
}

func dot(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

/// Runs `body` with mutable pointers to each array (helper for calling the layer functions).
func withPointers<R>(_ a: inout [Float], _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    a.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// Two decodes agree: no disagreement that rounding cannot explain, and the comparison was not vacuous.
func expectAgreement(_ c: DecodeComparison, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(c.disagreements.isEmpty, "\(c.disagreements)", sourceLocation: sourceLocation)
    #expect(c.comparedTokens > 0, "nothing compared; near-ties: \(c.ties)", sourceLocation: sourceLocation)
}
