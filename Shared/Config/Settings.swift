import Foundation

/// One knob: the same name in the TOML file (`[section] key`), the environment (`TRIBUTARY_SECTION_KEY`)
/// and on the command line (`--section.key VALUE`). A numeric knob declares its range here, so `--help` shows it and
/// one check serves the start, a run file, a StartRun and `tributary set`.
public struct Setting: Sendable {
    public var key: String
    public var defaultValue: String
    public var help: String
    /// The values a numeric setting takes; nil for text, lists and booleans.
    public var range: SettingRange?

    public init(_ key: String, _ defaultValue: String, _ help: String, range: SettingRange? = nil) {
        self.key = key
        self.defaultValue = defaultValue
        self.help = help
        self.range = range
    }

    /// A setting whose default is true or false: on the command line `--key` alone means true.
    public var isBoolean: Bool { defaultValue == "true" || defaultValue == "false" }
    static let booleanWords = ["true": true, "false": false, "1": true, "0": false]

    public var environmentName: String { "TRIBUTARY_" + key.uppercased().replacingOccurrences(of: ".", with: "_") }

    /// Refuses `text` (from `origin`) unless it is a number in this setting's range; any text passes a setting without one.
    public func check(_ text: String, origin: String) throws {
        guard let range else { return }
        _ = try range.value(of: text, key: key, origin: origin)
    }
}

/// The finite values a numeric setting takes: integers in a closed range, or finite numbers between two bounds, each
/// bound included or not. NaN, ±inf and anything outside are refused with the key, the value given and the range.
public struct SettingRange: Sendable, Equatable, CustomStringConvertible {
    enum Bounds: Sendable, Equatable {
        case integers(ClosedRange<Int>)
        case reals(lower: Double, upper: Double, lowerIncluded: Bool, upperIncluded: Bool)
    }

    let bounds: Bounds

    /// Whole numbers from `range.lowerBound` through `range.upperBound`: [a, b].
    public static func integers(_ range: ClosedRange<Int>) -> SettingRange { SettingRange(bounds: .integers(range)) }
    /// Finite numbers with both bounds included: [a, b].
    public static func reals(_ range: ClosedRange<Double>) -> SettingRange {
        SettingRange(bounds: .reals(lower: range.lowerBound, upper: range.upperBound, lowerIncluded: true, upperIncluded: true))
    }
    /// Finite numbers above `lower` (excluded) up to `upper` (included): (a, b].
    public static func reals(above lower: Double, through upper: Double) -> SettingRange {
        SettingRange(bounds: .reals(lower: lower, upper: upper, lowerIncluded: false, upperIncluded: true))
    }
    /// Finite numbers from `lower` (included) up to `upper` (excluded): [a, b).
    public static func reals(from lower: Double, below upper: Double) -> SettingRange {
        SettingRange(bounds: .reals(lower: lower, upper: upper, lowerIncluded: true, upperIncluded: false))
    }

    /// Interval notation: [1, 4096], (0, 1], [0, 1).
    public var description: String {
        switch bounds {
        case let .integers(range):
            return "[\(range.lowerBound), \(range.upperBound)]"
        case let .reals(lower, upper, lowerIncluded, upperIncluded):
            return "\(lowerIncluded ? "[" : "(")\(Self.format(lower)), \(Self.format(upper))\(upperIncluded ? "]" : ")")"
        }
    }

    /// Whether a number lies in the range (an integer range takes only whole numbers).
    public func contains(_ value: Double) -> Bool {
        switch bounds {
        case let .integers(range):
            return value.isFinite && value == value.rounded() && Double(range.lowerBound) <= value && value <= Double(range.upperBound)
        case let .reals(lower, upper, lowerIncluded, upperIncluded):
            return value.isFinite && (lowerIncluded ? value >= lower : value > lower) && (upperIncluded ? value <= upper : value < upper)
        }
    }

    /// The number `text` gives, refused unless it is one of the range's: the error names `key`, the value as given,
    /// where it came from and the range.
    public func value(of text: String, key: String, origin: String) throws -> Double {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let given = "setting '\(key)' = \(trimmed.isEmpty ? "''" : trimmed) (from \(origin))"
        switch bounds {
        case let .integers(range):
            guard let value = Int(trimmed) else { throw SettingsError(problem: "\(given) is not an integer in \(self)") }
            guard range.contains(value) else { throw SettingsError(problem: "\(given) is outside \(self)") }
            return Double(value)
        case .reals:
            guard let value = Double(trimmed) else { throw SettingsError(problem: "\(given) is not a number in \(self)") }
            guard value.isFinite else { throw SettingsError(problem: "\(given) is not a finite number in \(self)") }
            guard contains(value) else { throw SettingsError(problem: "\(given) is outside \(self)") }
            return value
        }
    }

    /// A bound as a person writes it: 1 not 1.0, 0.001, 1e-06.
    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
    }
}

public struct SettingsError: Error, Sendable, CustomStringConvertible {
    public var problem: String
    public init(problem: String) { self.problem = problem }
    public var description: String { problem }
}

/// Effective settings, layered: defaults < TOML file (`--config`) < environment < flags.
public struct Settings: Sendable {
    public private(set) var values: [String: String]
    public private(set) var origins: [String: String]
    public let specs: [Setting]
    public let configPath: String?
    public let dryRun: Bool

    /// Parses the command line; prints help and exits for `--help`.
    public static func load(role: String, abstract: String, specs: [Setting], arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Settings {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(helpText(role: role, abstract: abstract, specs: specs))
            exit(0)
        }
        let known = Dictionary(uniqueKeysWithValues: specs.map { ($0.key, $0) })
        var values = Dictionary(uniqueKeysWithValues: specs.map { ($0.key, $0.defaultValue) })
        var origins = Dictionary(uniqueKeysWithValues: specs.map { ($0.key, "default") })
        var flags: [(String, String)] = []
        var configPath: String?
        var dryRun = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else { throw SettingsError(problem: "unexpected argument '\(argument)' (see --help)") }
            var name = String(argument.dropFirst(2))
            if name == "dry-run" { dryRun = true; continue }
            var inline: String?
            if let equals = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard name == "config" || known[name] != nil else {
                throw SettingsError(problem: "unknown flag --\(name)\(SettingsCatalog.suggestion(for: name, among: specs.map(\.key) + ["config", "dry-run"], flag: true)) (see --help)")
            }
            let value: String
            if let inline {
                value = inline
            } else if let spec = known[name], spec.isBoolean, index == arguments.count || Setting.booleanWords[arguments[index].lowercased()] == nil {
                value = "true"  // a bare boolean flag
            } else {
                guard index < arguments.count else { throw SettingsError(problem: "flag --\(name) needs a value") }
                value = arguments[index]
                index += 1
            }
            if name == "config" { configPath = value; continue }
            flags.append((name, value))
        }
        if let configPath {
            let parsed = try TOML.parse(contentsOf: configPath)
            try SettingsCatalog.checkKnown(parsed.keys, source: configPath, specs: specs)
            try SettingsCatalog.checkRanges(parsed.mapValues(\.description), source: configPath, specs: specs)
            for (key, value) in parsed {
                // A run file carries every role's sections; a role takes the keys it knows.
                guard known[key] != nil else { continue }
                values[key] = value.description
                origins[key] = "file"
            }
        }
        for spec in specs {
            if let value = environment[spec.environmentName] {
                values[spec.key] = value
                origins[spec.key] = "env"
            }
        }
        for (key, value) in flags {
            values[key] = value
            origins[key] = "flag"
        }
        let settings = Settings(values: values, origins: origins, specs: specs, configPath: configPath, dryRun: dryRun)
        try settings.checkRanges()
        return settings
    }

    /// Settings from TOML text alone (a StartRun message), over the defaults.
    public static func fromTOML(_ text: String, specs: [Setting], source: String) throws -> Settings {
        var values = Dictionary(uniqueKeysWithValues: specs.map { ($0.key, $0.defaultValue) })
        var origins = Dictionary(uniqueKeysWithValues: specs.map { ($0.key, "default") })
        let known = Set(specs.map(\.key))
        let parsed = try TOML.parse(text, source: source)
        try SettingsCatalog.checkKnown(parsed.keys, source: source, specs: specs)
        try SettingsCatalog.checkRanges(parsed.mapValues(\.description), source: source, specs: specs)
        for (key, value) in parsed where known.contains(key) {
            values[key] = value.description
            origins[key] = source
        }
        return Settings(values: values, origins: origins, specs: specs, configPath: nil, dryRun: false)
    }

    public subscript(key: String) -> String? { values[key] }

    /// Changes one setting, refusing a value outside its range (`tributary set`, and the learner when it applies one).
    public mutating func set(_ key: String, _ value: String, origin: String) throws {
        guard let spec = specs.first(where: { $0.key == key }) else {
            throw SettingsError(problem: "unknown setting '\(key)'\(SettingsCatalog.suggestion(for: key, among: specs.map(\.key)))")
        }
        try spec.check(value, origin: origin)
        values[key] = value
        origins[key] = origin
    }

    public func string(_ key: String) throws -> String {
        guard let value = values[key] else { throw SettingsError(problem: "setting '\(key)' is not defined for this role") }
        return value
    }

    private func parsed<T>(_ key: String, _ kind: String, _ parse: (String) -> T?) throws -> T {
        let text = try string(key)
        guard let value = parse(text.trimmingCharacters(in: .whitespaces)) else {
            throw SettingsError(problem: "setting '\(key)' = '\(text)' (from \(origins[key] ?? "?")) is not \(kind)")
        }
        return value
    }

    /// Every value against its setting's range: a bad one stops the process at start, naming the key.
    public func checkRanges() throws {
        for spec in specs { try spec.check(values[spec.key] ?? "", origin: origins[spec.key] ?? "default") }
    }

    /// The declared range of `key`, checked first, so a read names the same range as the start did.
    private func checkDeclaredRange(_ key: String) throws {
        guard let spec = specs.first(where: { $0.key == key }) else { return }
        try spec.check(try string(key), origin: origins[key] ?? "default")
    }

    /// An integer setting, in its declared range. `range` narrows it further where a caller needs (prefer declaring the
    /// range in the `Setting`: only that one shows in `--help` and is checked at start and on `set`).
    public func int(_ key: String, in range: ClosedRange<Int>? = nil) throws -> Int {
        try checkDeclaredRange(key)
        let value = try parsed(key, "an integer") { Int($0) }
        if let range, !range.contains(value) {
            throw SettingsError(problem: "setting '\(key)' = \(value) (from \(origins[key] ?? "?")) is outside \(SettingRange.integers(range))")
        }
        return value
    }

    /// A finite number, in its declared range.
    public func double(_ key: String) throws -> Double {
        try checkDeclaredRange(key)
        return try parsed(key, "a finite number") { Double($0).flatMap { $0.isFinite ? $0 : nil } }
    }
    public func float(_ key: String) throws -> Float { Float(try double(key)) }
    public func bool(_ key: String) throws -> Bool {
        try parsed(key, "true or false") { ["true": true, "false": false, "1": true, "0": false][$0.lowercased()] }
    }

    public func list(_ key: String) throws -> [String] {
        try string(key).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Every setting with its value and where it came from; secrets in URLs are masked.
    public func effectiveDescription(role: String, excluding excluded: Set<String> = []) -> String {
        var lines = ["\(role) effective configuration:"]
        let shown = specs.filter { !excluded.contains($0.key) }
        let width = shown.map(\.key.count).max() ?? 10
        for spec in shown {
            let value = Self.masked(values[spec.key] ?? "")
            lines.append("  \(spec.key.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)  (\(origins[spec.key] ?? "default"))")
        }
        return lines.joined(separator: "\n")
    }

    static func masked(_ value: String) -> String {
        guard let at = value.firstIndex(of: "@"), let scheme = value.range(of: "://"), scheme.upperBound < at else { return value }
        let credentials = value[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return value }
        return value.replacingCharacters(in: value.index(after: colon)..<at, with: "****")
    }

    /// The run file's text for the given keys (what a StartRun carries).
    public func toml(keys: [String]) -> String {
        TOML.render(Dictionary(uniqueKeysWithValues: keys.compactMap { key in values[key].map { (key, $0) } }))
    }

    public static func helpText(role: String, abstract: String, specs: [Setting]) -> String {
        var lines = ["USAGE: \(role) [--config run.toml] [--SECTION.KEY VALUE ...] [--dry-run]", "", abstract, "",
                     "Every setting can come from the TOML file ([section] key = value), the environment",
                     "(TRIBUTARY_SECTION_KEY) or a flag (--section.key VALUE; a true/false setting also as a bare --section.key);",
                     "flags win, then the environment, then the file. An unknown key in a file or a flag is an error, and so is",
                     "a number outside its setting's range (shown as [a, b], with ( or ) where a bound is excluded).",
                     "--dry-run prints the effective configuration and exits.", "", "SETTINGS:"]
        let width = specs.map(\.key.count).max() ?? 10
        for spec in specs {
            let range = spec.range.map { ", in \($0)" } ?? ""
            lines.append("  --\(spec.key.padding(toLength: width, withPad: " ", startingAt: 0))  \(spec.help) (default: \(spec.defaultValue.isEmpty ? "\"\"" : spec.defaultValue)\(range); env \(spec.environmentName))")
        }
        return lines.joined(separator: "\n")
    }
}
