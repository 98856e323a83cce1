import Config
import Foundation

/// A run file checked the way the learner will read it, and the TOML text a StartRun carries.
public struct RunFile: Sendable {
    public let settings: Settings
    public let config: RunConfig
    /// What goes into StartRun.config_toml: the file as written, or, when it names no run id, the full effective settings with one.
    public let startText: String
    /// Whether the file itself says `[run] id`.
    public let namesRunID: Bool

    /// Parses and validates `text`; `fallbackRunID` names the run when the file does not.
    public init(text: String, source: String, fallbackRunID: String) throws {
        // fromTOML refuses a key no role knows; another role's keys (rollout, learner, connections) ride along
        var settings = try Settings.fromTOML(text, specs: RunConfig.settings, source: source)
        namesRunID = settings.origins["run.id"] == source
        if !namesRunID { try settings.set("run.id", fallbackRunID, origin: "--run") }
        config = try RunConfig(settings)
        self.settings = settings
        startText = namesRunID ? text : settings.toml(keys: RunConfig.settings.map(\.key))
    }
}

/// `tributary set KEY VALUE`: only live keys, and only values the learner would accept.
public enum LiveSetting {
    /// Checks `key` is live and `value` gives a valid RunConfig over `base` (the run's current settings); returns that config.
    @discardableResult
    public static func validate(key: String, value: String, base: Settings) throws -> RunConfig {
        guard RunConfig.settings.contains(where: { $0.key == key }) else {
            throw SettingsError(problem: "'\(key)' is not a run setting\(SettingsCatalog.suggestion(for: key, among: RunConfig.settings.map(\.key))); live settings: \(RunConfig.liveKeys.sorted().joined(separator: ", "))")
        }
        try RunConfig.checkLive(key: key)
        var updated = base
        try updated.set(key, value, origin: "tributary set")
        return try RunConfig(updated)
    }
}

/// Who a drain or shutdown is for: `all`, `ROLE` or `ROLE.INSTANCE`, as a routing key of the control exchange.
public struct ControlTarget: Sendable, Equatable, CustomStringConvertible {
    public static let roles = ["rollout", "reward", "learner", "broadcaster", "validator"]
    public var role: String?
    public var instance: String?

    public init(parsing text: String) throws {
        if text == "all" { return }
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard Self.roles.contains(parts[0]) else {
            throw SettingsError(problem: "unknown target '\(text)': expected all, ROLE or ROLE.INSTANCE with ROLE one of \(Self.roles.joined(separator: ", "))")
        }
        role = parts[0]
        if parts.count == 2 {
            guard !parts[1].isEmpty, !parts[1].contains(where: { $0 == "*" || $0 == "#" || $0.isWhitespace }) else {
                throw SettingsError(problem: "bad instance in '\(text)': give the instance name a heartbeat shows (tributary status)")
            }
            instance = parts[1]
        }
    }

    public var routingKey: String {
        guard let role else { return "all" }
        return instance.map { "\(role).\($0)" } ?? role
    }

    /// Whether a service with this role and instance takes the command.
    public func matches(role: String, instance: String) -> Bool {
        guard let target = self.role else { return true }
        return target == role && (self.instance == nil || self.instance == instance)
    }

    public var description: String { routingKey }
}
