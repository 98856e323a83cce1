import Foundation
import Runtime
import Store

extension Learner {
    /// The step's metrics (stream entry, batch audit, run state, gauges, status, one log line).
    func record(_ trained: TrainedStep, _ batch: Batch) async throws {
        let loss = trained.metrics.lossMetrics
        let waited = batch.waited.seconds
        let stepSeconds = (ContinuousClock.now - batch.started).seconds
        let metrics = StepMetrics(
            step: step, version: Int(version), rewardMean: batch.rewardMean, accuracy: batch.accuracy, loss: trained.metrics.loss,
            clipLow: loss.clipFractionLow, clipHigh: loss.clipFractionHigh, clipDelta: loss.clipFractionDelta, meanRatio: loss.meanRatio,
            entropy: loss.entropy, kl: loss.kl, gradNorm: trained.metrics.gradNorm, learningRate: trained.metrics.learningRate,
            waitSeconds: waited, trainSeconds: trained.trainSeconds, stepSeconds: stepSeconds,
            tokensPerSecond: Double(trained.tokens) / max(trained.trainSeconds, 1e-6), groups: batch.groups.count,
            staleDropped: batch.staleDropped, zeroSignal: batch.zeroSignal, duplicates: batch.duplicates, staleness: batch.staleness,
            asyncLevel: config.asyncLevel)
        // the step's metrics and the run state in one fenced transaction (its batch log entry went with its commit)
        var commands = [RunMetrics.appendCommand(metrics, names: names)]
        if let state = RunState(step: step, version: version, rewardMean: batch.rewardMean).writeCommand(names: names) { commands.append(state) }
        try await lease.exec(commands)
        gauges.step.record(step)
        gauges.rewardMean.record(batch.rewardMean)
        gauges.accuracy.record(batch.accuracy)
        gauges.stepTime.recordNanoseconds(Int64(stepSeconds * 1e9))
        gauges.waitTime.recordNanoseconds(Int64(waited * 1e9))
        context.status.update {
            $0.policyVersion = Int(metrics.version)
            $0.throughput = metrics.tokensPerSecond
            $0.detail = "step \(metrics.step)"
        }
        context.logger.info("step \(step): reward \(String(format: "%.3f", batch.rewardMean)) accuracy \(String(format: "%.3f", batch.accuracy)) loss \(String(format: "%.4f", trained.metrics.loss)) kl \(String(format: "%.5f", loss.kl)) wait \(String(format: "%.2f", waited)) s, step \(String(format: "%.2f", stepSeconds)) s, stale \(batch.staleDropped), zero-signal \(batch.zeroSignal)")
    }
}
