/// Builds the environment a spec names; the one place a name becomes a type.
public enum EnvironmentFactory {
    public static let names = ["arithmetic", "reverse", "sort", "jsonl", "code"]

    /// The environment to score with. A code environment refuses (`SandboxUnavailable`) when this process's sandbox
    /// policy refuses the machine's isolation.
    public static func make(_ spec: EnvironmentSpec) throws -> any Environment {
        try make(spec, checkSandbox: true)
    }

    /// Checks a spec (its options, its dataset) without asking whether this machine could run its verifier: `tributary
    /// run start` checks a code run on a machine that never runs a candidate program.
    public static func validate(_ spec: EnvironmentSpec) throws {
        _ = try make(spec, checkSandbox: false)
    }

    static func make(_ spec: EnvironmentSpec, checkSandbox: Bool) throws -> any Environment {
        switch spec.name {
        case "arithmetic": return try ArithmeticEnvironment(spec: spec)
        case "reverse": return try ReverseEnvironment(spec: spec)
        case "sort": return try SortEnvironment(spec: spec)
        case "jsonl": return try DatasetEnvironment(spec: spec)
        case "code": return try CodeEnvironment(spec: spec, checkSandbox: checkSandbox)
        default:
            throw EnvironmentError(environment: spec.name, option: "name", problem: "unknown environment; expected one of \(names.joined(separator: ", "))")
        }
    }
}
