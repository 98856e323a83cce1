/// Builds the environment a spec names; the one place a name becomes a type.
public enum EnvironmentFactory {
    public static let names = ["arithmetic", "reverse", "sort", "jsonl", "code"]

    public static func make(_ spec: EnvironmentSpec) throws -> any Environment {
        switch spec.name {
        case "arithmetic": return try ArithmeticEnvironment(spec: spec)
        case "reverse": return try ReverseEnvironment(spec: spec)
        case "sort": return try SortEnvironment(spec: spec)
        case "jsonl": return try DatasetEnvironment(spec: spec)
        case "code": return try CodeEnvironment(spec: spec)
        default:
            throw EnvironmentError(environment: spec.name, option: "name", problem: "unknown environment; expected one of \(names.joined(separator: ", "))")
        }
    }
}
