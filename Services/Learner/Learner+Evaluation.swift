import Config
import Foundation
import Model
import RL
import Runtime

extension Learner {
    func warmStart() async throws {
        guard config.warmupSteps > 0 else { return }
        context.status.set(state: "warm start", detail: "\(config.warmupSteps) supervised steps")
        let trainer = self.trainer
        let environment = self.environment
        let config = self.config
        let format = self.format
        let heldOutPrompts = self.heldOutPrompts
        // The probe decides when to stop; it shares no prompt with the held-out set.
        let probe = environment.tasks(seed: config.seed &+ 3, range: 0..<400).filter { !heldOutPrompts.contains($0.prompt) }.prefix(200).map { $0 }
        let (loss, stepsTaken, probeAccuracy) = try await compute.run { () -> (Double, Int, Double) in
            var last = 0.0
            var probeAccuracy = 0.0
            for warmStep in 0..<config.warmupSteps {
                let tasks = environment.tasks(seed: config.seed &+ 7, range: (warmStep * config.warmupBatch)..<((warmStep + 1) * config.warmupBatch))
                let examples = tasks.filter { !heldOutPrompts.contains($0.prompt) }.map { task in
                    SupervisedExample(promptTokens: format.promptTokens(task.prompt),
                                      completionTokens: format.completionTokens(environment.referenceSolution(for: task)))
                }
                last = try SupervisedTraining.step(model: trainer.value.model, optimizer: trainer.value.optimizer, examples: examples,
                                                   learningRate: config.warmupLearningRate, microBatchSize: config.microBatch).loss
                if config.warmupTargetAccuracy > 0, (warmStep + 1) % 25 == 0 {
                    probeAccuracy = Evaluation.evaluate(model: trainer.value.model, environment: environment, tasks: probe, maxNewTokens: config.maxNewTokens, format: format)
                    if probeAccuracy >= config.warmupTargetAccuracy { return (last, warmStep + 1, probeAccuracy) }
                }
            }
            return (last, config.warmupSteps, probeAccuracy)
        }
        context.logger.notice("warm start: \(stepsTaken) supervised steps, final loss \(String(format: "%.4f", loss)), probe accuracy \(String(format: "%.3f", probeAccuracy))")
        // GRPO starts with fresh optimizer moments, as the learning check does.
        let model = trainer.value.model
        trainer.value = GRPOTrainer(model: model, optimizer: config.makeOptimizer(for: model), config: config.trainerConfig)
    }

    func evaluate() async throws -> Double {
        context.status.set(state: "evaluating", detail: "step \(step)")
        let trainer = self.trainer
        let tasks = heldOut
        let environment = self.environment
        let maxNewTokens = config.maxNewTokens
        let format = self.format
        return try await compute.run { Evaluation.evaluate(model: trainer.value.model, environment: environment, tasks: tasks, maxNewTokens: maxNewTokens, format: format) }
    }

    /// The KL penalty's reference: the policy as GRPO starts (after the warm start), frozen for the whole run.
    func freezeReference() {
        guard config.klCoefficient != 0 else { return }
        trainer.value.freezeReference()
        context.logger.notice("froze the reference policy for the KL penalty (trainer.kl_coefficient = \(config.klCoefficient))")
    }
}
