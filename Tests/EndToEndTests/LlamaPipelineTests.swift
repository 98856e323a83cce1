import Foundation
import Model
import Checkpoints
import Config
import Runtime
import Store
import TestSupport
import Testing
import Tokenizers

/// A run that starts from a Hugging Face Llama directory with its own tokenizer and a chat template, through the real
/// executables: the learner publishes the tokenizer, workers load Llama checkpoints, scorers decode with the run's
/// tokenizer, and the CLI exports the result as a Hugging Face directory in bfloat16.
@Suite(.serialized)
struct LlamaPipelineTests {
    @Test(.timeLimit(.minutes(6)))
    func aLlamaDirectoryRunsThroughThePipelineAndExports() async throws {
        let fixture = repositoryRoot.appendingPathComponent("Tests/Fixtures/tokenizers/llama3/tokenizer.json")
        let tokenizer = try HFTokenizer(contentsOf: fixture)
        let eot = try #require(tokenizer.specialTokenID("<|eot_id|>"))
        let bos = try #require(tokenizer.specialTokenID("<|begin_of_text|>"))
        // A tiny Llama (GQA 4:2) sized for the fixture tokenizer; its end of turn ends completions.
        let config = LlamaConfig(vocabSize: tokenizer.vocabSize, contextLength: 64, layers: 2, channels: 32, intermediateSize: 64,
                                 heads: 4, kvHeads: 2, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10_000, ropeScaling: nil,
                                 tiedEmbeddings: true, qkvBias: false, bosToken: bos, eosToken: eot)
        let model = Llama(config: config, seed: 3)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-e2e-llama-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(at: work) }
        let modelDirectory = work.appendingPathComponent("model")
        try model.saveHuggingFace(to: modelDirectory, dtype: .float32)
        try FileManager.default.copyItem(at: fixture, to: modelDirectory.appendingPathComponent("tokenizer.json"))

        let cluster = try await Cluster(run: "e2e-llama", overrides: [
            // a warm start to some accuracy, so that groups carry signal (an untrained model gets every answer wrong)
            "--model.path", modelDirectory.path, "--prompt.template", "llama3", "--run.steps", "3",
            "--trainer.warmup_steps", "2000", "--trainer.warmup_target_accuracy", "0.3",
        ])
        do {
            try await cluster.startAll(rollouts: 1)
            try await cluster.waitForState("the Llama run to finish", within: 240) { $0["status"] == "finished" }
            let state = try await cluster.state()
            #expect(state["step"] == "3")
            #expect(state["tokenizer_sha256"] == sha256Hex([UInt8](try Data(contentsOf: fixture))))
            #expect(state["eos_token"] == String(eot) && state["vocab_size"] == String(tokenizer.vocabSize))
            // The worker generated from verified Llama checkpoints, and the scorers scored its groups.
            let loads = try await cluster.stream(cluster.names.loadsLogKey)
            #expect(!loads.isEmpty && loads.allSatisfy { $0["verified"] == "1" })
            let scored = try await cluster.stream(cluster.names.scoredLogKey)
            #expect(scored.count >= 3 * 4, "\(scored.count) groups scored")

            // Export the last version as a Hugging Face directory in bfloat16: it opens as a Llama whose weights are
            // the trained float32 ones rounded to bfloat16 (8 bits of mantissa: relative error at most 2⁻⁸).
            // the last version is announced after the run's status says finished: wait for it, then export it by number
            let store = CheckpointStore(names: cluster.names, redis: cluster.redis)
            try await cluster.waitFor("version 3 to be announced", within: 60) { try await store.latest() == 3 }
            let exported = work.appendingPathComponent("export")
            let cli = binaryDirectory.appendingPathComponent("tributary").path
            let export = try await runCommandOffPool([cli, "checkpoint", "export", "3", exported.path, "--dtype", "bfloat16", "--run", cluster.run])
            #expect(export.status == 0, "\(export.output)")
            let reloaded = try HuggingFaceCheckpoint.load(from: exported)
            #expect(reloaded.architecture == "llama" && reloaded.vocabSize == tokenizer.vocabSize && reloaded.eosToken == eot)
            let trained = try Policies.fromSafetensors(try await store.read(version: 3).bytes)
            let (a, b) = (trained.withParameters { p, _ in Array(p) }, reloaded.withParameters { p, _ in Array(p) })
            #expect(a.count == b.count)
            let worst = zip(a, b).map { abs($0 - $1) / max(abs($0), 1e-30) }.max() ?? 0
            #expect(worst <= 1.0 / 256, "worst relative difference \(worst)")
            let codes = try await cluster.terminateAll()
            for (role, code) in codes { #expect(code == 0, "\(role) exited with \(code)") }
        } catch {
            await cluster.tearDown()
            throw error
        }
        await cluster.tearDown()
    }
}
