/// Names an environment and its options; plain optionals so it reads the same in a StartRun message, TOML or JSON.
///
/// Options a given environment does not use are ignored; missing ones take the defaults documented on each field.
public struct EnvironmentSpec: Codable, Sendable, Equatable, Hashable {
    /// `arithmetic`, `reverse`, `sort`, `jsonl` or `code`.
    public var name: String

    /// arithmetic: digits per operand (default 2).
    public var digits: Int?
    /// arithmetic: operands per expression (default 2).
    public var operands: Int?
    /// arithmetic: any of `add`, `subtract`, `multiply` (or `+`, `-`, `*`); default `[add]`.
    public var operations: [String]?

    /// reverse / sort: shortest string or list (default 3).
    public var minLength: Int?
    /// reverse / sort: longest string or list (default 6).
    public var maxLength: Int?
    /// reverse / sort: `letters` or `digits` (reverse default `letters`, sort default `digits`).
    public var alphabet: String?

    /// jsonl / code: path to the dataset, one JSON object a line.
    public var datasetPath: String?
    /// jsonl: `exact`, `numeric` or `regex` (default `exact`).
    public var checker: String?
    /// jsonl: when set, the answer is what follows the last occurrence of this marker (e.g. `####`, `\boxed`).
    public var answerMarker: String?

    /// code: wall-clock limit per program in seconds (default 5).
    public var timeLimitSeconds: Double?
    /// code: address-space limit in MiB (default 512).
    public var memoryLimitMB: Int?
    /// code: process limit for the sandbox user (default 16).
    public var maxProcesses: Int?
    /// code: bytes of stdout+stderr kept before the run counts as a huge output (default 1 MiB).
    public var maxOutputBytes: Int?

    public init(
        name: String, digits: Int? = nil, operands: Int? = nil, operations: [String]? = nil,
        minLength: Int? = nil, maxLength: Int? = nil, alphabet: String? = nil,
        datasetPath: String? = nil, checker: String? = nil, answerMarker: String? = nil,
        timeLimitSeconds: Double? = nil, memoryLimitMB: Int? = nil, maxProcesses: Int? = nil, maxOutputBytes: Int? = nil
    ) {
        self.name = name
        self.digits = digits
        self.operands = operands
        self.operations = operations
        self.minLength = minLength
        self.maxLength = maxLength
        self.alphabet = alphabet
        self.datasetPath = datasetPath
        self.checker = checker
        self.answerMarker = answerMarker
        self.timeLimitSeconds = timeLimitSeconds
        self.memoryLimitMB = memoryLimitMB
        self.maxProcesses = maxProcesses
        self.maxOutputBytes = maxOutputBytes
    }

    public static func arithmetic(digits: Int = 2, operands: Int = 2, operations: [String] = ["add"]) -> EnvironmentSpec {
        EnvironmentSpec(name: "arithmetic", digits: digits, operands: operands, operations: operations)
    }

    public static func reverse(minLength: Int = 3, maxLength: Int = 6, alphabet: String = "letters") -> EnvironmentSpec {
        EnvironmentSpec(name: "reverse", minLength: minLength, maxLength: maxLength, alphabet: alphabet)
    }

    public static func sort(minLength: Int = 3, maxLength: Int = 6, alphabet: String = "digits") -> EnvironmentSpec {
        EnvironmentSpec(name: "sort", minLength: minLength, maxLength: maxLength, alphabet: alphabet)
    }

    public static func jsonl(path: String, checker: String = "exact", answerMarker: String? = nil) -> EnvironmentSpec {
        EnvironmentSpec(name: "jsonl", datasetPath: path, checker: checker, answerMarker: answerMarker)
    }

    public static func code(path: String, timeLimitSeconds: Double = 5, memoryLimitMB: Int = 512, maxProcesses: Int = 16) -> EnvironmentSpec {
        EnvironmentSpec(name: "code", datasetPath: path, timeLimitSeconds: timeLimitSeconds, memoryLimitMB: memoryLimitMB, maxProcesses: maxProcesses)
    }
}
