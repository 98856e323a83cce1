import Foundation

/// Programming tasks from JSONL with tests; the candidate program and the tests run together in `CodeSandbox`.
///
/// Each line: `{"prompt": "...", "tests": "assert f(1) == 2" | ["assert ...", ...], "solution"?: "...", "id"?: "..."}`.
/// Correctness is 1 when the program plus tests exits 0, else 0 with the sandbox's reason.
/// The completion may wrap the program in a ```python fence; the first fenced block is used if there is one.
public struct CodeEnvironment: Environment {
    public let name = "code"
    public let path: String
    public let sandbox: CodeSandbox
    public let rows: [RLTask]

    public init(path: String, limits: SandboxLimits = SandboxLimits()) throws {
        self.path = path
        sandbox = CodeSandbox(limits: limits)
        var rows: [RLTask] = []
        for (line, object) in try JSONLines.read(path: path) {
            let prompt = try JSONLines.string(object, "prompt", path: path, line: line)
            let tests: String
            switch object["tests"] {
            case let text as String: tests = text
            case let list as [Any]:
                guard let strings = list as? [String] else {
                    throw DatasetError(path: path, line: line, field: "tests", problem: "array holds a non-string")
                }
                tests = strings.joined(separator: "\n")
            case nil: throw DatasetError(path: path, line: line, field: "tests", problem: "missing")
            default: throw DatasetError(path: path, line: line, field: "tests", problem: "not a string or array of strings")
            }
            guard !tests.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw DatasetError(path: path, line: line, field: "tests", problem: "empty")
            }
            let solution = try JSONLines.optionalString(object, "solution", path: path, line: line) ?? ""
            let id = try JSONLines.optionalString(object, "id", path: path, line: line) ?? "code-\(line)"
            let difficulty = try JSONLines.optionalNumber(object, "difficulty", path: path, line: line) ?? 0.5
            rows.append(RLTask(id: id, prompt: prompt, answer: solution, metadata: ["tests": tests], difficulty: difficulty))
        }
        guard !rows.isEmpty else { throw DatasetError(path: path, line: 0, field: "-", problem: "no tasks in file") }
        self.rows = rows
    }

    public init(spec: EnvironmentSpec) throws {
        guard let path = spec.datasetPath else {
            throw EnvironmentError(environment: "code", option: "datasetPath", problem: "missing")
        }
        let wall = spec.timeLimitSeconds ?? 5
        guard wall > 0, wall <= 600 else {
            throw EnvironmentError(environment: "code", option: "timeLimitSeconds", problem: "\(wall) is outside (0, 600]")
        }
        let limits = SandboxLimits(
            wallSeconds: wall, memoryBytes: (spec.memoryLimitMB ?? 512) << 20,
            maxProcesses: spec.maxProcesses ?? 16, maxOutputBytes: spec.maxOutputBytes ?? (1 << 20))
        try self.init(path: path, limits: limits)
    }

    public func task(seed: UInt64, index: Int) -> RLTask { rows[JSONLines.permuted(index: index, count: rows.count, seed: seed)] }

    public func referenceSolution(for task: RLTask) -> String { task.answer }

    public func verify(completion: String, task: RLTask) -> RewardComponents {
        guard let program = Self.extractProgram(completion) else { return .wrong(format: 0, "missing answer: no program") }
        let fenced = completion.contains("```")
        let result = sandbox.run(program: program + "\n\n" + (task.metadata["tests"] ?? ""))
        let format: Double = fenced || !completion.contains("`") ? 1 : 0
        return result.passed ? RewardComponents(correctness: 1, format: format) : .wrong(format: format, result.reason ?? "failed")
    }

    /// The first ``` fenced block (language tag dropped), else the whole completion; nil when empty.
    public static func extractProgram(_ completion: String) -> String? {
        var text = completion
        if let open = completion.range(of: "```") {
            var rest = completion[open.upperBound...]
            if let newline = rest.firstIndex(of: "\n") { rest = rest[rest.index(after: newline)...] } else { rest = "" }
            if let close = rest.range(of: "```") { rest = rest[..<close.lowerBound] }
            text = String(rest)
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : text
    }
}
