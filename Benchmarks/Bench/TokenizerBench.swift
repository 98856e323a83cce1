import Foundation
import Tokenizers

/// Hugging Face tokenizer speed on one core, for `tributary-bench tokenizer`: MB of UTF-8 text encoded per second.
/// Text: the fixture corpus (English, code, accented Latin, CJK, emoji, numbers, whitespace runs) shuffled with a fixed
/// seed and joined to about 4 MB, so words recur as in real text; or a file given with --text. MB is 10^6 bytes.
func runTokenizerBench(json: Bool, tokenizerPaths: [String], textPath: String?) throws {
    let fixtures = URL(fileURLWithPath: "Tests/Fixtures/tokenizers")
    let paths = tokenizerPaths.isEmpty ? ["gpt2", "llama3", "qwen2"].map { fixtures.appendingPathComponent("\($0)/tokenizer.json").path } : tokenizerPaths
    let text = try textPath.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? tokenizerBenchText(fixtures: fixtures, bytes: 4_000_000)
    let megabytes = Double(text.utf8.count) / 1e6
    let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
    print(String(format: "tokenizer benchmark: %.2f MB of text, one thread, load %@", megabytes, load))

    var figures: [String: Any] = ["text_mb": (megabytes * 100).rounded() / 100, "load_average_1m": Double(load) ?? -1]
    for path in paths {
        let name = URL(fileURLWithPath: path).deletingLastPathComponent().lastPathComponent
        let loadStart = ContinuousClock.now
        let tokenizer = try HFTokenizer(contentsOf: URL(fileURLWithPath: path))
        let loadSeconds = tokenizerBenchSeconds(ContinuousClock.now - loadStart)
        // the first pass starts with an empty word cache; the best of three after it is the steady state
        var tokens: [Int32] = []
        let cold = tokenizerBenchTimed { tokens = tokenizer.encode(text, addSpecialTokens: false) }
        let warm = (0..<3).map { _ in tokenizerBenchTimed { tokens = tokenizer.encode(text, addSpecialTokens: false) } }.min()!
        var decoded = ""
        let decode = (0..<3).map { _ in tokenizerBenchTimed { decoded = tokenizer.decode(tokens, skipSpecialTokens: false) } }.min()!
        precondition(decoded.utf8.count > 0, "decoding gave nothing")
        let bytesPerToken = Double(text.utf8.count) / Double(tokens.count)
        print(name.padding(toLength: 10, withPad: " ", startingAt: 0)
              + String(format: "encode %.2f MB/s (first pass %.2f), decode %.1f MB/s, %.2f bytes/token, vocab %d, read in %.0f ms",
                       megabytes / warm, megabytes / cold, megabytes / decode, bytesPerToken, tokenizer.vocabSize, 1000 * loadSeconds))
        figures["\(name)_encode_mb_per_s"] = (megabytes / warm * 100).rounded() / 100
        figures["\(name)_encode_first_pass_mb_per_s"] = (megabytes / cold * 100).rounded() / 100
        figures["\(name)_decode_mb_per_s"] = (megabytes / decode * 100).rounded() / 100
        figures["\(name)_bytes_per_token"] = (bytesPerToken * 1000).rounded() / 1000
    }
    if json {
        let data = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// The fixture corpus, shuffled by a 64-bit LCG and joined by spaces and newlines until `bytes`.
private func tokenizerBenchText(fixtures: URL, bytes: Int) throws -> String {
    struct Corpus: Decodable { let strings: [String] }
    let strings = try JSONDecoder().decode(Corpus.self, from: Data(contentsOf: fixtures.appendingPathComponent("corpus.json"))).strings
    var state: UInt64 = 42
    var text = ""
    text.reserveCapacity(bytes + 256)
    while text.utf8.count < bytes {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        text += strings[Int(state >> 33) % strings.count]
        text += (state >> 20) % 4 == 0 ? "\n" : " "
    }
    return text
}

private func tokenizerBenchTimed(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    body()
    return tokenizerBenchSeconds(ContinuousClock.now - start)
}

private func tokenizerBenchSeconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
