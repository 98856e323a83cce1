/// A spec that cannot become an environment: says which environment and which option, and why.
public struct EnvironmentError: Error, Sendable, Equatable, CustomStringConvertible {
    public var environment: String
    public var option: String
    public var problem: String

    public init(environment: String, option: String, problem: String) {
        self.environment = environment
        self.option = option
        self.problem = problem
    }

    public var description: String { "environment \(environment): option \(option): \(problem)" }
}

/// A dataset line that cannot become a task: names the file, the 1-based line and the field.
public struct DatasetError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var field: String
    public var problem: String

    public init(path: String, line: Int, field: String, problem: String) {
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
    }

    public var description: String { "\(path):\(line): field \"\(field)\": \(problem)" }
}
