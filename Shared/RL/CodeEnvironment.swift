import Foundation

/// Programming tasks from JSONL with tests; a harness runs the candidate program, then the tests, in `CodeSandbox`.
///
/// Each line: `{"prompt": "...", "tests": "assert f(1) == 2" | ["assert ...", ...], "solution"?: "...", "id"?: "..."}`.
/// Correctness is 1 only when the harness prints, after the last test, a random nonce it was given on stdin: a
/// candidate that exits early (`os._exit(0)`, `SystemExit`) never reaches that line, whatever its exit status. Every
/// `==` in the tests compares exact built-in types, so an object whose `__eq__` always says True does not pass.
/// (The candidate shares the harness's interpreter: one that searches the harness's frames for the nonce is out of scope.)
/// The completion may wrap the program in a ```python fence; the first fenced block is used if there is one.
public struct CodeEnvironment: Environment {
    public let name = "code"
    public let path: String
    public let sandbox: CodeSandbox
    public let rows: [RLTask]

    /// `policy`: which isolation the sandbox accepts (default: this process's). With `checkSandbox` the environment
    /// refuses to exist when that policy refuses this machine, so a process that would score code says why at once
    /// instead of scoring every program 0; without it (a spec checked where nothing will run) only the sandbox refuses.
    public init(path: String, limits: SandboxLimits = SandboxLimits(), policy: SandboxPolicy? = nil, checkSandbox: Bool = true) throws {
        self.path = path
        sandbox = CodeSandbox(limits: limits, policy: policy ?? .process)
        if checkSandbox { try sandbox.policy.check() }
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

    public init(spec: EnvironmentSpec, checkSandbox: Bool = true) throws {
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
        try self.init(path: path, limits: limits, checkSandbox: checkSandbox)
    }

    public func task(seed: UInt64, index: Int) -> RLTask { rows[JSONLines.permuted(index: index, count: rows.count, seed: seed)] }

    public func referenceSolution(for task: RLTask) -> String { task.answer }

    public func verify(completion: String, task: RLTask) -> RewardComponents {
        guard let program = Self.extractProgram(completion) else { return .wrong(format: 0, "missing answer: no program") }
        let fenced = completion.contains("```")
        let nonce = (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined()
        let result = sandbox.run(program: Self.harness, files: ["candidate.py": program, "tests.py": task.metadata["tests"] ?? ""],
                                 stdin: nonce + "\n")
        let format: Double = fenced || !completion.contains("`") ? 1 : 0
        guard result.passed else { return .wrong(format: format, result.reason ?? "failed") }
        let finished = result.stdout.split(separator: "\n").last.map(String.init) == "\(nonce) passed"
        return finished ? RewardComponents(correctness: 1, format: format) : .wrong(format: format, "exited before the tests finished")
    }

    /// Reads the nonce, runs candidate.py as a module, then tests.py in its namespace with strict `==`, then prints the
    /// nonce. Everything it names starts with `_t_` so a candidate's definitions cannot shadow it.
    static let harness = """
    import ast as _t_ast, runpy as _t_runpy, sys as _t_sys

    def _t_strict(a, b):
        numbers = (int, float)
        if type(a) in numbers and type(b) in numbers:
            return a == b
        if type(a) is not type(b):
            return False
        if type(a) in (list, tuple):
            return len(a) == len(b) and all(_t_strict(x, y) for x, y in zip(a, b))
        if type(a) is dict:
            return a.keys() == b.keys() and all(_t_strict(a[k], b[k]) for k in a)
        if type(a) in (str, bool, bytes, complex, set, frozenset, type(None)):
            return a == b
        return False

    class _t_StrictEquality(_t_ast.NodeTransformer):
        def visit_Compare(self, node):
            self.generic_visit(node)
            if len(node.ops) == 1 and isinstance(node.ops[0], _t_ast.Eq):
                call = _t_ast.Call(_t_ast.Name("_t_strict", _t_ast.Load()), [node.left, node.comparators[0]], [])
                return _t_ast.copy_location(call, node)
            return node

    def _t_main():
        nonce = _t_sys.stdin.readline().strip()
        _t_sys.stdin.close()
        with open("tests.py") as f:
            tests = _t_ast.fix_missing_locations(_t_StrictEquality().visit(_t_ast.parse(f.read())))
        namespace = _t_runpy.run_path("candidate.py", run_name="candidate")
        namespace["_t_strict"] = _t_strict
        exec(compile(tests, "tests.py", "exec"), namespace)
        _t_sys.stdout.write("\\n" + nonce + " passed\\n")
        _t_sys.stdout.flush()

    _t_main()
    """

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
