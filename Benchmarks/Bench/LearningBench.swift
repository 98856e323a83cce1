import Foundation
import Model
import RL

/// The learning check: warm start a tiny GPT on reference solutions, then GRPO on sampled groups, in one process.
/// Held-out accuracy (greedy) is measured before GRPO and after; the held-out prompts never appear in training.
/// Knobs can be overridden by environment variables TRIBUTARY_LEARNING_<NAME> (for tuning only; the defaults are the recipe).
struct LearningCheckRecipe {
    var digits = 2
    var layers = 2
    var heads = 4
    var channels = 64
    var contextLength = 16
    var modelSeed: UInt64 = 1
    // Warm start: supervised on reference solutions until a probe set reaches `warmTarget` accuracy.
    var warmBatch = 64
    var warmLearningRate: Float = 3e-3
    var warmTarget = 0.15
    var warmMaxSteps = 3000
    var warmEvalEvery = 25
    // GRPO.
    var prompts = 32
    var groupSize = 16
    var grpoLearningRate: Float = 1e-3
    var grpoSteps = 600
    var temperature: Float = 1
    var heldOut = 500
    var probe = 200
    var evalEvery = 100

    static func fromEnvironment() -> LearningCheckRecipe {
        var r = LearningCheckRecipe()
        let env = ProcessInfo.processInfo.environment
        func int(_ name: String, _ value: inout Int) { if let s = env["TRIBUTARY_LEARNING_\(name)"], let v = Int(s) { value = v } }
        func float(_ name: String, _ value: inout Float) { if let s = env["TRIBUTARY_LEARNING_\(name)"], let v = Float(s) { value = v } }
        func double(_ name: String, _ value: inout Double) { if let s = env["TRIBUTARY_LEARNING_\(name)"], let v = Double(s) { value = v } }
        int("DIGITS", &r.digits); int("LAYERS", &r.layers); int("HEADS", &r.heads); int("CHANNELS", &r.channels)
        int("WARM_BATCH", &r.warmBatch); float("WARM_LR", &r.warmLearningRate); double("WARM_TARGET", &r.warmTarget)
        int("WARM_MAX_STEPS", &r.warmMaxSteps); int("PROMPTS", &r.prompts); int("GROUP", &r.groupSize)
        float("GRPO_LR", &r.grpoLearningRate); int("GRPO_STEPS", &r.grpoSteps); float("TEMPERATURE", &r.temperature)
        int("EVAL_EVERY", &r.evalEvery); int("WARM_EVAL_EVERY", &r.warmEvalEvery)
        if let s = env["TRIBUTARY_LEARNING_MODEL_SEED"], let v = UInt64(s) { r.modelSeed = v }
        return r
    }
}

func runLearningBench(json: Bool) throws {
    BLAS.relaunchWithNativeKernelsIfNeeded()
    let recipe = LearningCheckRecipe.fromEnvironment()
    BLAS.setThreads(1)  // the model is tiny: one thread beats two, and the machine is shared
    let start = ContinuousClock.now
    func elapsed() -> Double {
        let d = start.duration(to: .now)
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    let environment = ArithmeticEnvironment(digits: recipe.digits, operands: 2, operations: [.add])
    let taskName = "arithmetic: \(recipe.digits)-digit addition (\"a+b=\" -> sum)"
    let maxNewTokens = recipe.digits + 2  // up to digits+1 answer digits, then eos
    let heldOut = environment.tasks(seed: 2, range: 0..<recipe.heldOut)
    let excluded = Set(heldOut.map(\.prompt))
    let probe = WarmStartPlan.probe(environment: environment, seed: 3, candidates: recipe.probe * 2, count: recipe.probe, excluding: excluded)
    var trainIndex = 0
    func nextTrainingTasks(_ count: Int) -> [RLTask] {
        var tasks: [RLTask] = []
        while tasks.count < count {
            let task = environment.task(seed: 1, index: trainIndex)
            trainIndex += 1
            if !excluded.contains(task.prompt) { tasks.append(task) }
        }
        return tasks
    }

    let config = GPTConfig(contextLength: recipe.contextLength, layers: recipe.layers, heads: recipe.heads, channels: recipe.channels)
    let model = GPT(config: config, seed: recipe.modelSeed)
    print("learning check: \(taskName)")
    print("model: \(recipe.layers) layers, \(recipe.heads) heads, \(recipe.channels) channels, context \(recipe.contextLength), \(model.parameterCount) parameters; BLAS threads 1")
    print("held-out: \(heldOut.count) tasks (seed 2), never trained on; probe for the warm-start stop: \(probe.count) tasks (seed 3)")
    print("")
    print(pad("phase", 12) + pad("step", 7) + pad("loss", 9) + pad("probe acc", 11) + pad("held-out acc", 14) + "seconds")

    // Warm start: supervised on reference solutions, stopped as soon as the probe accuracy is low but non-zero.
    let warmOptimizer = AdamW(model: model, learningRate: recipe.warmLearningRate, weightDecay: 0, maxGradNorm: 1)
    let plan = WarmStartPlan(maxSteps: recipe.warmMaxSteps, batch: recipe.warmBatch, learningRate: recipe.warmLearningRate,
                             targetAccuracy: recipe.warmTarget, evalEvery: recipe.warmEvalEvery, maxNewTokens: maxNewTokens)
    // consecutive training tasks, so GRPO goes on where the warm start stopped
    let warm = try plan.run(model: model, optimizer: warmOptimizer, environment: environment,
                            tasks: WarmStartTaskSource { _, batch in nextTrainingTasks(batch) }, probe: probe)
    let warmSteps = warm.steps, lastLoss = warm.finalLoss
    if warm.reachedTarget {
        print(pad("warm start", 12) + pad("\(warmSteps)", 7) + pad(fmt(lastLoss, 3), 9) + pad(fmt(warm.probeAccuracy ?? 0, 3), 11) + pad("", 14) + fmt(elapsed(), 1))
    }
    let accuracyBefore = Evaluation.evaluate(model: model, environment: environment, tasks: heldOut, maxNewTokens: maxNewTokens)
    let warmSeconds = elapsed()
    print(pad("before GRPO", 12) + pad("\(warmSteps)", 7) + pad(fmt(lastLoss, 3), 9) + pad("", 11) + pad(fmt(accuracyBefore, 3), 14) + fmt(warmSeconds, 1))

    // GRPO: sample groups at temperature 1, correctness reward, group-normalised advantages, zero-signal groups dropped.
    let trainer = GRPOTrainer(
        model: model, optimizer: AdamW(model: model, learningRate: recipe.grpoLearningRate, weightDecay: 0, maxGradNorm: 1),
        config: GRPOTrainerConfig(learningRate: recipe.grpoLearningRate, loss: GRPOConfig(), microBatchSize: 256,
                                  sampling: TokenDistribution(temperature: recipe.temperature)))
    let shaping = RewardShaping.correctnessOnly
    var dropped = 0, kept = 0
    var rewardSum = 0.0, rewardCount = 0
    var accuracyAfter = accuracyBefore
    var lastMetrics: GRPOStepMetrics?
    for step in 1...recipe.grpoSteps {
        var samples: [TrainingSample] = []
        for (i, task) in nextTrainingTasks(recipe.prompts).enumerated() {
            let prompt = PromptFormat.bytes.promptTokens(task.prompt)
            let options = SamplingOptions(temperature: recipe.temperature, maxNewTokens: maxNewTokens, seed: UInt64(step) &* 1_000_003 &+ UInt64(i))
            let group = model.sample(prompt: prompt, count: recipe.groupSize, options: options)
            let scored = GroupScoring.score(task: task, completions: group.map(\.tokens), environment: environment, shaping: shaping)
            rewardSum += scored.rewards.reduce(0) { $0 + $1.total }
            rewardCount += scored.rewards.count
            guard let advantages = scored.advantages else { dropped += 1; continue }
            kept += 1
            for (completion, advantage) in zip(group, advantages) where !completion.tokens.isEmpty {
                samples.append(TrainingSample(promptTokens: prompt, completionTokens: completion.tokens,
                                              behaviourLogprobs: completion.logprobs, advantage: advantage))
            }
        }
        if !samples.isEmpty { lastMetrics = try trainer.step(samples: samples) }
        if step % recipe.evalEvery == 0 || step == recipe.grpoSteps {
            let probeAccuracy = Evaluation.evaluate(model: model, environment: environment, tasks: probe, maxNewTokens: maxNewTokens)
            var heldOutText = ""
            if step == recipe.grpoSteps {
                accuracyAfter = Evaluation.evaluate(model: model, environment: environment, tasks: heldOut, maxNewTokens: maxNewTokens)
                heldOutText = fmt(accuracyAfter, 3)
            }
            print(pad("grpo", 12) + pad("\(step)", 7) + pad(fmt(lastMetrics?.loss ?? 0, 3), 9) + pad(fmt(probeAccuracy, 3), 11)
                  + pad(heldOutText, 14) + fmt(elapsed(), 1)
                  + "   reward \(fmt(rewardSum / Double(max(rewardCount, 1)), 3)), groups kept \(kept) dropped \(dropped)"
                  + ", clip hi/lo/delta \(fmt(lastMetrics?.lossMetrics.clipFractionHigh ?? 0, 3))/\(fmt(lastMetrics?.lossMetrics.clipFractionLow ?? 0, 3))/\(fmt(lastMetrics?.lossMetrics.clipFractionDelta ?? 0, 3))"
                  + ", entropy \(fmt(lastMetrics?.lossMetrics.entropy ?? 0, 3))")
            rewardSum = 0
            rewardCount = 0
        }
    }
    let wall = elapsed()
    print("")
    print("held-out accuracy: \(fmt(accuracyBefore * 100, 1))% after warm start -> \(fmt(accuracyAfter * 100, 1))% after \(recipe.grpoSteps) GRPO steps"
          + " (\(fmt((accuracyAfter - accuracyBefore) * 100, 1)) points), \(fmt(wall, 1)) s wall; zero-signal groups dropped: \(dropped) of \(dropped + kept)")
    print("recipe: warm start batch \(recipe.warmBatch), lr \(recipe.warmLearningRate), until probe >= \(recipe.warmTarget); GRPO \(recipe.prompts) prompts x \(recipe.groupSize) completions, lr \(recipe.grpoLearningRate), temperature \(recipe.temperature), eps 0.2/0.2, delta 4, AdamW(0.9, 0.999) grad clip 1")
    if json {
        let object: [String: Any] = [
            "task": taskName, "accuracy_before": accuracyBefore, "accuracy_after": accuracyAfter, "wall_seconds": wall,
            "warm_start_steps": warmSteps, "grpo_steps": recipe.grpoSteps, "group_size": recipe.groupSize, "prompts_per_step": recipe.prompts,
            "groups_dropped": dropped, "groups_kept": kept, "parameters": model.parameterCount,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

private func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count) }
private func fmt(_ x: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", x) }
