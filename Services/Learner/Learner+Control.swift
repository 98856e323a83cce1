import Config
import Runtime
import Signing
import Wire

extension Learner {
    /// Run commands: pause, resume, stop, and live settings (checked: a refused one is logged with its reason).
    func apply(_ command: ControlCommand) async throws {
        switch command.command {
        case .pause:
            paused = true
            try await setState(RunState(status: .paused))
            context.status.set(state: "paused", detail: "step \(step)")
        case .resume:
            paused = false
            try await setState(RunState(status: .running))
            context.status.set(state: "training", detail: "step \(step)")
        case .stop:
            stopRun = true
        case let .set(parameter):
            do {
                try RunConfig.checkLive(key: parameter.key)
                var updated = settings
                try updated.set(parameter.key, parameter.value, origin: "set \(command.messageID)")
                let newConfig = try RunConfig(updated)
                settings = updated
                config = newConfig
                trainer.value.config.learningRate = newConfig.learningRate
                try await setState(RunState(config: settings.toml(keys: RunConfig.settings.map(\.key))))
                context.logger.notice("set \(parameter.key) = \(parameter.value)")
            } catch {
                context.logger.error("set \(parameter.key) refused: \(error)")
            }
        case let .banWorker(ban):
            let key = Hex.encode(Array(ban.workerKey))
            guard ban.workerKey.count == 32 else {
                return context.logger.error("ban refused: worker key \(key) is not 32 bytes")
            }
            if ban.unban {
                try await workers.unban(key)
                bannedWorkers.remove(key)
            } else {
                try await workers.ban(key, reason: ban.reason)
                bannedWorkers.insert(key)
            }
            context.logger.notice("\(ban.unban ? "unbanned" : "banned") worker \(key)\(ban.reason.isEmpty ? "" : ": \(ban.reason)")")
            // the audit: who asked (the command's sender as it named itself), when (the entry's id), why
            let by = "\(command.envelope.sender.role).\(command.envelope.sender.instance)"
            _ = try await fabric.redis.xadd(names.eventsLogKey, fields: ["event": ban.unban ? "unban" : "ban", "key": key, "reason": ban.reason,
                                                                         "by": by, "step": String(step)], maxLength: 10_000)
        default:
            return
        }
    }
}
