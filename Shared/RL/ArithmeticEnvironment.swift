/// Integer arithmetic: `12+34=` → `46`. Operands have up to `digits` digits; `*` binds tighter than `+` and `-`.
public struct ArithmeticEnvironment: Environment {
    public enum Operation: String, Sendable, CaseIterable {
        case add = "+", subtract = "-", multiply = "*"

        init?(option: String) {
            switch option {
            case "add", "+": self = .add
            case "subtract", "sub", "-": self = .subtract
            case "multiply", "mul", "*": self = .multiply
            default: return nil
            }
        }
    }

    public let name = "arithmetic"
    public let digits: Int
    public let operands: Int
    public let operations: [Operation]

    public init(digits: Int = 2, operands: Int = 2, operations: [Operation] = [.add]) {
        self.digits = digits
        self.operands = operands
        self.operations = operations
    }

    public init(spec: EnvironmentSpec) throws {
        let digits = spec.digits ?? 2
        let operands = spec.operands ?? 2
        guard (1...9).contains(digits) else {
            throw EnvironmentError(environment: "arithmetic", option: "digits", problem: "\(digits) is outside 1...9")
        }
        guard (2...8).contains(operands) else {
            throw EnvironmentError(environment: "arithmetic", option: "operands", problem: "\(operands) is outside 2...8")
        }
        var operations: [Operation] = []
        for option in spec.operations ?? ["add"] {
            guard let operation = Operation(option: option) else {
                throw EnvironmentError(environment: "arithmetic", option: "operations", problem: "unknown operation \"\(option)\"; expected add, subtract or multiply")
            }
            operations.append(operation)
        }
        guard !operations.isEmpty else {
            throw EnvironmentError(environment: "arithmetic", option: "operations", problem: "empty")
        }
        self.init(digits: digits, operands: operands, operations: operations)
    }

    public func task(seed: UInt64, index: Int) -> RLTask {
        var random = TaskRandom(seed: seed, index: index, salt: 0xA41)
        let limit = Self.power10(digits) - 1
        let values = (0..<operands).map { _ in random.int(in: 0...limit) }
        let ops = (0..<(operands - 1)).map { _ in operations[random.int(in: 0...(operations.count - 1))] }
        var prompt = String(values[0])
        for (op, value) in zip(ops, values.dropFirst()) { prompt += op.rawValue + String(value) }
        prompt += "="
        let answer = Self.evaluate(values: values, operations: ops)
        return RLTask(
            id: "arithmetic-\(seed)-\(index)", prompt: prompt, answer: String(answer),
            metadata: ["expression": String(prompt.dropLast())],
            difficulty: Self.difficulty(values: values, operations: ops, digits: digits))
    }

    public func referenceSolution(for task: RLTask) -> String { task.answer }

    public func verify(completion: String, task: RLTask) -> RewardComponents {
        AnswerChecking.integer(completion: completion, expected: task.answer)
    }

    /// Left-to-right with `*` first, on Int (9 digits × 8 operands fits easily in 64 bits only for + and -; products wrap).
    static func evaluate(values: [Int], operations: [Operation]) -> Int {
        var terms: [Int] = [values[0]]
        var signs: [Int] = [1]
        for (op, value) in zip(operations, values.dropFirst()) {
            switch op {
            case .multiply: terms[terms.count - 1] = terms[terms.count - 1] &* value
            case .add: terms.append(value); signs.append(1)
            case .subtract: terms.append(value); signs.append(-1)
            }
        }
        return zip(terms, signs).reduce(0) { $0 &+ $1.0 &* $1.1 }
    }

    /// Carries (for sums), or a fixed middle value when multiplication or subtraction is involved: a rough prior only.
    static func difficulty(values: [Int], operations: [Operation], digits: Int) -> Double {
        guard operations.allSatisfy({ $0 == .add }) else { return operations.contains(.multiply) ? 0.75 : 0.5 }
        var carries = 0
        var carry = 0
        var place = 1
        for _ in 0..<digits {
            let column = values.reduce(carry) { $0 + ($1 / place) % 10 }
            carry = column / 10
            if carry > 0 { carries += 1 }
            place *= 10
        }
        return Double(carries) / Double(digits)
    }

    static func power10(_ n: Int) -> Int { (0..<n).reduce(1) { acc, _ in acc * 10 } }
}
