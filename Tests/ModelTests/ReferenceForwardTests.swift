import Foundation
import Testing
import Model

/// An independent reference: GPT-2 forward written with plain Double loops over the tensors of the exported
/// safetensors file (Hugging Face names and Conv1D (in, out) layout), parsed here without the Model module.
@Suite struct ReferenceForwardTests {
    @Test func logitsMatchNaiveReferenceFromSafetensors() throws {
        let config = GPTConfig(contextLength: 12, layers: 2, heads: 2, channels: 8)
        let model = GPT(config: config, seed: 13)
        // perturb LayerNorm and biases too, so every tensor matters
        model.withParameters { p, _ in
            let noise = randomFloats(p.count, seed: 14, scale: 0.1)
            for i in 0..<p.count { p[i] += noise[i] }
        }
        let tokens: [Int32] = [256, 72, 101, 108, 108, 111, 258, 3, 200]
        let logits = model.logits(tokens: tokens)
        let W = try parseSafetensors(model.safetensorsBytes())
        let reference = naiveGPT2Logits(W, tokens: tokens.map(Int.init), C: 8, heads: 2, layers: 2)
        var worst = 0.0
        for i in 0..<logits.count { worst = max(worst, abs(Double(logits[i]) - reference[i])) }
        #expect(worst < 1e-4)
    }

    private func parseSafetensors(_ bytes: [UInt8]) throws -> [String: [Double]] {
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any])
        var out: [String: [Double]] = [:]
        for (name, value) in header where name != "__metadata__" {
            let t = try #require(value as? [String: Any])
            let offsets = try #require(t["data_offsets"] as? [Int])
            #expect(t["dtype"] as? String == "F32")
            var values: [Double] = []
            var o = 8 + n + offsets[0]
            while o < 8 + n + offsets[1] {
                let bits = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
                values.append(Double(Float(bitPattern: bits)))
                o += 4
            }
            out[name] = values
        }
        return out
    }

    private func naiveGPT2Logits(_ W: [String: [Double]], tokens: [Int], C: Int, heads: Int, layers: Int) -> [Double] {
        let T = tokens.count, hs = C / heads
        func layerNorm(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            let m = x.reduce(0, +) / Double(x.count)
            let v = x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count)
            return x.indices.map { (x[$0] - m) / (v + 1e-5).squareRoot() * w[$0] + b[$0] }
        }
        // y (out) = x (in) @ w (in, out) + b
        func linear(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            let outDim = b.count
            return (0..<outDim).map { o in b[o] + x.indices.reduce(0) { $0 + x[$1] * w[$1 * outDim + o] } }
        }
        func gelu(_ x: Double) -> Double { 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) }
        let wte = W["transformer.wte.weight"]!, wpe = W["transformer.wpe.weight"]!
        var x = (0..<T).map { t in (0..<C).map { wte[tokens[t] * C + $0] + wpe[t * C + $0] } }
        for l in 0..<layers {
            let p = "transformer.h.\(l)."
            let qkv = x.map { linear(layerNorm($0, W[p + "ln_1.weight"]!, W[p + "ln_1.bias"]!), W[p + "attn.c_attn.weight"]!, W[p + "attn.c_attn.bias"]!) }
            var y = [[Double]](repeating: [Double](repeating: 0, count: C), count: T)
            for h in 0..<heads {
                for t in 0..<T {
                    var scores = (0...t).map { s in (0..<hs).reduce(0.0) { $0 + qkv[t][h * hs + $1] * qkv[s][C + h * hs + $1] } / Double(hs).squareRoot() }
                    let mx = scores.max()!
                    scores = scores.map { exp($0 - mx) }
                    let sum = scores.reduce(0, +)
                    for s in 0...t { for i in 0..<hs { y[t][h * hs + i] += scores[s] / sum * qkv[s][2 * C + h * hs + i] } }
                }
            }
            for t in 0..<T {
                let a = linear(y[t], W[p + "attn.c_proj.weight"]!, W[p + "attn.c_proj.bias"]!)
                for i in 0..<C { x[t][i] += a[i] }
                let h = linear(layerNorm(x[t], W[p + "ln_2.weight"]!, W[p + "ln_2.bias"]!), W[p + "mlp.c_fc.weight"]!, W[p + "mlp.c_fc.bias"]!).map(gelu)
                let m = linear(h, W[p + "mlp.c_proj.weight"]!, W[p + "mlp.c_proj.bias"]!)
                for i in 0..<C { x[t][i] += m[i] }
            }
        }
        let V = wte.count / C
        return x.flatMap { row -> [Double] in
            let n = layerNorm(row, W["transformer.ln_f.weight"]!, W["transformer.ln_f.bias"]!)
            return (0..<V).map { v in (0..<C).reduce(0.0) { $0 + n[$1] * wte[v * C + $1] } }
        }
    }
}
