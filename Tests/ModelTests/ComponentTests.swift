import Foundation
import Testing
@testable import Model

@Suite struct ComponentTests {
    @Test func tokenizerRoundTrips() {
        let t = ByteTokenizer()
        for text in ["", "hello", "naïve café ☕️ 日本語 🇫🇷", "tab\tnew\nline\u{0}"] {
            #expect(t.decode(t.encode(text)) == text)
        }
        #expect(t.encode("é") == [0xC3, 0xA9])
        #expect(t.decode([ByteTokenizer.bos, 104, 105, ByteTokenizer.eos, ByteTokenizer.pad]) == "hi")
        #expect(t.decode([0xC3]) == "\u{FFFD}")  // invalid UTF-8 is repaired
        #expect(ByteTokenizer.vocabSize == 259 && Set([ByteTokenizer.bos, ByteTokenizer.eos, ByteTokenizer.pad]).count == 3)
    }

    @Test func configValidationNamesField() {
        #expect(throws: GPTConfigError.self) { try GPTConfig(contextLength: 8, layers: 1, heads: 3, channels: 16).validate() }
        do {
            try GPTConfig(contextLength: 8, layers: 1, heads: 3, channels: 16).validate()
        } catch let e as GPTConfigError {
            #expect(e.field == "channels")
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: GPTConfigError(field: "layers", reason: "must be at least 1, got 0")) {
            try GPTConfig(contextLength: 8, layers: 0, heads: 1, channels: 16).validate()
        }
        #expect(throws: Never.self) { try tinyConfig.validate() }
    }

    @Test func learningRateSchedule() {
        let c = LearningRateSchedule.constant(1e-3, warmupSteps: 10)
        #expect(abs(c.rate(at: 0) - 1e-4) < 1e-9)
        #expect(c.rate(at: 9) == 1e-3 && c.rate(at: 500) == 1e-3)
        let cos = LearningRateSchedule.cosine(1.0, warmupSteps: 10, totalSteps: 110, minFactor: 0.1)
        #expect(cos.rate(at: 10) == 1.0)
        #expect(abs(cos.rate(at: 60) - 0.55) < 1e-5)
        #expect(abs(cos.rate(at: 110) - 0.1) < 1e-6 && abs(cos.rate(at: 1000) - 0.1) < 1e-6)
        let data = try! JSONEncoder().encode(cos)
        #expect(try! JSONDecoder().decode(LearningRateSchedule.self, from: data) == cos)
    }

    @Test func adamWClipsAndDecaysOnlyMatrices() {
        let model = GPT(config: tinyConfig, seed: 1)
        let before = model.flatParameters
        // gradient of norm 20 everywhere on one entry; clipping to 1 limits the first step to ~lr per entry anyway,
        // so check the returned pre-clip norm and that decay leaves biases and LayerNorm alone
        model.withParameters { _, g in g[0] = 12; g[1] = 16 }
        let opt = AdamW(model: model, learningRate: 0.1, weightDecay: 0.5, maxGradNorm: 1)
        let norm = opt.update(model, learningRate: 0.1)
        #expect(abs(norm - 20) < 1e-4)
        #expect(model.flatGradients.allSatisfy { $0 == 0 })  // update zeroes the gradients
        let after = model.flatParameters
        let lnf = model.layout.entries.first { $0.name == "transformer.ln_f.weight" }!
        #expect(after[lnf.offset] == before[lnf.offset])
        let wpe = model.layout.entries.first { $0.name == "transformer.wpe.weight" }!
        #expect(abs(after[wpe.offset + 3] - before[wpe.offset + 3] * (1 - 0.05)) < 1e-7)
        #expect(abs(after[0] - (before[0] * 0.95 - 0.1)) < 1e-4)  // Adam's first step is lr * sign(g)
        #expect(opt.step == 1)
    }

    @Test func blasReportsItsSetup() {
        // the thread count is process-wide, so tests (which run in parallel) only read it
        #expect(BLAS.threads >= 1)
        #expect(!BLAS.coreName.isEmpty)
    }
}

@Suite struct OptimizerSettingsTests {
    @Test func defaultsAreTodaysAndValid() throws {
        let settings = AdamWSettings()
        #expect(settings.beta1 == 0.9 && settings.beta2 == 0.999 && settings.weightDecay == 0 && settings.maxGradNorm == 1)
        try settings.validate()
        let model = GPT(config: tinyConfig, seed: 1)
        let opt = try AdamW(model: model, learningRate: 1e-3, settings: AdamWSettings(beta1: 0.8, beta2: 0.95, weightDecay: 0.1, maxGradNorm: 0.5))
        #expect(opt.beta1 == 0.8 && opt.beta2 == 0.95 && opt.weightDecay == 0.1 && opt.maxGradNorm == 0.5)
        #expect(opt.settings == AdamWSettings(beta1: 0.8, beta2: 0.95, weightDecay: 0.1, maxGradNorm: 0.5))
        #expect(AdamW(model: model, learningRate: 1e-3).settings == AdamWSettings())
    }

    @Test(arguments: [
        (AdamWSettings(beta1: 1), "beta1"), (AdamWSettings(beta1: -0.1), "beta1"), (AdamWSettings(beta2: 1.5), "beta2"),
        (AdamWSettings(beta2: .nan), "beta2"), (AdamWSettings(epsilon: 0), "epsilon"), (AdamWSettings(weightDecay: -1), "weightDecay"),
        (AdamWSettings(maxGradNorm: -1), "maxGradNorm"), (AdamWSettings(maxGradNorm: .infinity), "maxGradNorm"),
    ])
    func outOfRangeKnobsAreRefusedByName(settings: AdamWSettings, field: String) {
        let model = GPT(config: tinyConfig, seed: 1)
        do {
            _ = try AdamW(model: model, learningRate: 1e-3, settings: settings)
            Issue.record("\(field) out of range was accepted")
        } catch let error as OptimizerSettingError {
            #expect(error.field == field)
            #expect(error.description.contains(field))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// A clip of 0 means no clipping, the same as nil.
    @Test func zeroClipIsNoClip() throws {
        func stepped(_ maxGradNorm: Float?) -> [Float] {
            let model = GPT(config: tinyConfig, seed: 1)
            let opt = AdamW(model: model, learningRate: 1e-2, weightDecay: 0, maxGradNorm: maxGradNorm)
            _ = model.forward(tokens: randomTokens(8, seed: 1), targets: randomTokens(8, seed: 2), batch: 1, time: 8)
            model.backward(dLogprobs: [Float](repeating: 100, count: 8), mask: [Float](repeating: 1, count: 8))
            let norm = opt.update(model, learningRate: 1e-2)
            #expect(norm > 1e-3, "the gradient is large enough for a small clip to act")
            return model.flatParameters
        }
        #expect(stepped(0) == stepped(nil))
        #expect(stepped(1e-3) != stepped(nil))
    }
}
