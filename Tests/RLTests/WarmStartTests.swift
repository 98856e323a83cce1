import Model
import Testing
@testable import RL

@Suite struct WarmStartTests {
    let environment = ArithmeticEnvironment(digits: 1)

    /// Without a target it runs the whole budget and never probes.
    @Test func runsTheStepBudgetWithoutATarget() throws {
        let model = tinyModel()
        let plan = WarmStartPlan(maxSteps: 7, batch: 4, learningRate: 1e-2, targetAccuracy: 0, evalEvery: 2, maxNewTokens: 3)
        var asked: [Int] = []
        let source = WarmStartTaskSource { step, batch in
            asked.append(step)
            return environment.tasks(seed: 1, range: (step * batch)..<((step + 1) * batch))
        }
        let before = model.flatParameters
        let summary = try plan.run(model: model, optimizer: AdamW(model: model, learningRate: 1e-2), environment: environment,
                                   tasks: source, probe: environment.tasks(seed: 2, range: 0..<4))
        #expect(summary.steps == 7 && !summary.reachedTarget && summary.probeAccuracy == nil)
        #expect(asked == Array(0..<7))
        #expect(summary.finalLoss > 0)
        #expect(model.flatParameters != before)
    }

    /// It probes every `evalEvery` steps and stops at the first probe that reaches the target.
    @Test func stopsWhenTheProbeReachesTheTarget() throws {
        let model = tinyModel()
        let task = environment.task(seed: 0, index: 0)
        let plan = WarmStartPlan(maxSteps: 300, batch: 1, learningRate: 1e-2, targetAccuracy: 1, evalEvery: 10, maxNewTokens: 4)
        let summary = try plan.run(model: model, optimizer: AdamW(model: model, learningRate: 1e-2, weightDecay: 0), environment: environment,
                                   tasks: WarmStartTaskSource { _, _ in [task] }, probe: [task])
        #expect(summary.reachedTarget && summary.probeAccuracy == 1)
        #expect(summary.steps < 300 && summary.steps % 10 == 0, "stopped after \(summary.steps) steps")
        #expect(Evaluation.evaluate(model: model, environment: environment, tasks: [task], maxNewTokens: 4) == 1)
    }

    /// The learner's source: a pure function of the step, never a held-out prompt; a step left empty takes no update.
    @Test func windowSourceExcludesHeldOutPrompts() throws {
        let heldOut = Set(environment.tasks(seed: 2, range: 0..<40).map(\.prompt))
        let source = WarmStartTaskSource.window(environment: environment, seed: 7, excluding: heldOut)
        var sawShort = false
        for step in 0..<10 {
            let tasks = source.tasks(step: step, batch: 8)
            #expect(tasks.allSatisfy { !heldOut.contains($0.prompt) })
            #expect(tasks.map(\.prompt) == source.tasks(step: step, batch: 8).map(\.prompt))
            let window = environment.tasks(seed: 7, range: (step * 8)..<((step + 1) * 8))
            #expect(tasks.map(\.prompt) == window.filter { !heldOut.contains($0.prompt) }.map(\.prompt))
            sawShort = sawShort || tasks.count < 8
        }
        #expect(sawShort, "1-digit sums repeat, so some window loses a held-out prompt")

        let model = tinyModel()
        let before = model.flatParameters
        let summary = try WarmStartPlan(maxSteps: 3, batch: 4, learningRate: 1e-2, maxNewTokens: 3)
            .run(model: model, optimizer: AdamW(model: model, learningRate: 1e-2), environment: environment,
                 tasks: WarmStartTaskSource { _, _ in [] }, probe: [])
        #expect(summary.steps == 3 && model.flatParameters == before)
    }

    @Test func probeSkipsHeldOutPrompts() {
        let heldOut = Set(environment.tasks(seed: 2, range: 0..<30).map(\.prompt))
        let probe = WarmStartPlan.probe(environment: environment, seed: 3, candidates: 400, count: 20, excluding: heldOut)
        #expect(probe.count == 20 && probe.allSatisfy { !heldOut.contains($0.prompt) })
    }

    @Test func badPlansAreRefusedByName() {
        let model = tinyModel()
        func run(_ plan: WarmStartPlan) throws {
            _ = try plan.run(model: model, optimizer: AdamW(model: model, learningRate: 1e-2), environment: environment,
                             tasks: WarmStartTaskSource { _, _ in [] }, probe: [])
        }
        #expect(throws: WarmStartPlanError(field: "batch", value: "0", expected: ">= 1")) {
            try run(WarmStartPlan(maxSteps: 1, batch: 0, learningRate: 1e-2, maxNewTokens: 3))
        }
        #expect(throws: WarmStartPlanError.self) { try run(WarmStartPlan(maxSteps: 1, batch: 1, learningRate: 0, maxNewTokens: 3)) }
        #expect(throws: WarmStartPlanError.self) { try run(WarmStartPlan(maxSteps: 1, batch: 1, learningRate: 1e-2, targetAccuracy: 2, maxNewTokens: 3)) }
        #expect(throws: WarmStartPlanError.self) { try run(WarmStartPlan(maxSteps: 1, batch: 1, learningRate: 1e-2, evalEvery: 0, maxNewTokens: 3)) }
    }
}
