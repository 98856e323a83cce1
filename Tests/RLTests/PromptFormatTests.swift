import Foundation
import Model
import Testing
import Tokenizers
@testable import RL

/// Prompts and answers through a Hugging Face tokenizer and a chat template, and the byte default unchanged.
@Suite struct PromptFormatTests {
    static let llama3Tokenizer: HFTokenizer = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizers/llama3/tokenizer.json")
        return try! HFTokenizer(contentsOf: url)
    }()

    @Test func byteDefaultIsBosPromptAndAnswerEos() {
        let f = PromptFormat.bytes
        #expect(f.promptTokens("1+2=") == [ByteTokenizer.bos, 49, 43, 50, 61])
        #expect(f.completionTokens("3") == [51, ByteTokenizer.eos])
        #expect(f.completionText([51, 52, ByteTokenizer.eos, 53]) == "34")
    }

    @Test func templatedPromptIsFramedOnceAndAnswersRoundTrip() throws {
        let t = Self.llama3Tokenizer
        let eot = try #require(t.specialTokenID("<|eot_id|>")), bos = try #require(t.specialTokenID("<|begin_of_text|>"))
        let f = PromptFormat(tokenizer: t, template: .llama3, systemPrompt: "Answer with the number.", eos: eot)
        let prompt = f.promptTokens("12+34=")
        // the template brings <|begin_of_text|>; encoding must not add a second one
        #expect(prompt.first == bos && prompt.filter { $0 == bos }.count == 1)
        let text = t.decode(prompt, skipSpecialTokens: false)
        #expect(text.hasPrefix("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nAnswer with the number.<|eot_id|>"))
        #expect(text.hasSuffix("12+34=<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"))
        let answer = f.completionTokens("46")
        #expect(answer.last == eot && !answer.dropLast().contains(eot))
        #expect(f.completionText(answer + [7, 8]) == "46")  // cut at eos
        // a bare prompt gets the tokenizer's own framing (Llama 3's post-processor adds <|begin_of_text|>)
        let bare = PromptFormat(tokenizer: t, eos: eot).promptTokens("12+34=")
        #expect(bare.first == bos && t.decode(Array(bare.dropFirst()), skipSpecialTokens: false) == "12+34=")
    }
}
