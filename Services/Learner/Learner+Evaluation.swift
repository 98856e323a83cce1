import Config
import Foundation
import Model
import RL
import Runtime

extension Learner {
    /// Supervised steps on reference solutions until a probe set (no held-out prompt) reaches the target, then fresh
    /// optimizer moments for GRPO, as the learning check does.
    func warmStart() async throws {
        let plan = config.warmStartPlan
        guard plan.maxSteps > 0 else { return }
        context.status.set(state: "warm start", detail: "up to \(plan.maxSteps) supervised steps")
        let (trainer, environment, format, seed, heldOut) = (self.trainer, self.environment, self.format, config.seed, heldOutPrompts)
        let summary = try await compute.run {
            try plan.run(model: trainer.value.model, optimizer: trainer.value.optimizer, environment: environment, format: format,
                         tasks: .window(environment: environment, seed: seed &+ 7, excluding: heldOut),
                         probe: WarmStartPlan.probe(environment: environment, seed: seed &+ 3, candidates: 400, count: 200, excluding: heldOut))
        }
        context.logger.notice("warm start: \(summary.steps) supervised steps, final loss \(String(format: "%.4f", summary.finalLoss)), probe accuracy \(summary.probeAccuracy.map { String(format: "%.3f", $0) } ?? "not measured")")
        let model = trainer.value.model
        trainer.value = GRPOTrainer(model: model, optimizer: try config.makeOptimizer(for: model), config: config.trainerConfig)
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
