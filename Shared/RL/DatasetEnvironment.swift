import Foundation

/// Prompt/answer pairs from a JSONL file, checked by exact match, numeric equivalence or a regular expression.
///
/// Each line: `{"prompt": "...", "answer": "..." | number, "id"?: "...", "metadata"?: {"k": "v"}, "difficulty"?: number}`.
/// Blank lines are skipped. `task(seed:index:)` walks a seed-dependent permutation of the lines, epoch after epoch.
public struct DatasetEnvironment: Environment {
    public let name = "jsonl"
    public let path: String
    public let checker: AnswerChecking.Checker
    public let answerMarker: String?
    public let rows: [RLTask]

    public init(path: String, checker: AnswerChecking.Checker = .exact, answerMarker: String? = nil) throws {
        self.path = path
        self.checker = checker
        self.answerMarker = answerMarker
        let objects = try JSONLines.read(path: path)
        var rows: [RLTask] = []
        for (line, object) in objects {
            let prompt = try JSONLines.string(object, "prompt", path: path, line: line)
            let answer = try JSONLines.stringOrNumber(object, "answer", path: path, line: line)
            if checker == .regex, (try? NSRegularExpression(pattern: answer)) == nil {
                throw DatasetError(path: path, line: line, field: "answer", problem: "not a valid regular expression")
            }
            if checker == .numeric, NumericValue(parsing: answer) == nil {
                throw DatasetError(path: path, line: line, field: "answer", problem: "\"\(answer.prefix(40))\" is not a number")
            }
            let id = try JSONLines.optionalString(object, "id", path: path, line: line) ?? "jsonl-\(line)"
            let metadata = try JSONLines.stringMap(object, "metadata", path: path, line: line)
            let difficulty = try JSONLines.optionalNumber(object, "difficulty", path: path, line: line) ?? 0.5
            rows.append(RLTask(id: id, prompt: prompt, answer: answer, metadata: metadata, difficulty: difficulty))
        }
        guard !rows.isEmpty else { throw DatasetError(path: path, line: 0, field: "-", problem: "no tasks in file") }
        self.rows = rows
    }

    public init(spec: EnvironmentSpec) throws {
        guard let path = spec.datasetPath else {
            throw EnvironmentError(environment: "jsonl", option: "datasetPath", problem: "missing")
        }
        let name = spec.checker ?? "exact"
        guard let checker = AnswerChecking.Checker(rawValue: name) else {
            throw EnvironmentError(environment: "jsonl", option: "checker", problem: "\"\(name)\"; expected exact, numeric or regex")
        }
        try self.init(path: path, checker: checker, answerMarker: spec.answerMarker)
    }

    public func task(seed: UInt64, index: Int) -> RLTask { rows[JSONLines.permuted(index: index, count: rows.count, seed: seed)] }

    public func referenceSolution(for task: RLTask) -> String {
        guard checker != .regex else { return task.metadata["solution"] ?? task.answer }
        return answerMarker.map { marker in marker.hasSuffix("boxed") ? "\(marker){\(task.answer)}" : "\(marker) \(task.answer)" } ?? task.answer
    }

    public func verify(completion: String, task: RLTask) -> RewardComponents {
        AnswerChecking.check(completion: completion, expected: task.answer, checker: checker, marker: answerMarker)
    }
}

/// Reading JSON-lines files with errors that name file, line and field.
enum JSONLines {
    static func read(path: String) throws -> [(line: Int, object: [String: Any])] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DatasetError(path: path, line: 0, field: "-", problem: "cannot read file as UTF-8")
        }
        var result: [(Int, [String: Any])] = []
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let value = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) else {
                throw DatasetError(path: path, line: offset + 1, field: "-", problem: "not valid JSON")
            }
            guard let object = value as? [String: Any] else {
                throw DatasetError(path: path, line: offset + 1, field: "-", problem: "not a JSON object")
            }
            result.append((offset + 1, object))
        }
        return result
    }

    static func string(_ object: [String: Any], _ field: String, path: String, line: Int) throws -> String {
        guard let raw = object[field] else { throw DatasetError(path: path, line: line, field: field, problem: "missing") }
        guard let value = raw as? String else { throw DatasetError(path: path, line: line, field: field, problem: "not a string") }
        return value
    }

    static func optionalString(_ object: [String: Any], _ field: String, path: String, line: Int) throws -> String? {
        guard let raw = object[field], !(raw is NSNull) else { return nil }
        guard let value = raw as? String else { throw DatasetError(path: path, line: line, field: field, problem: "not a string") }
        return value
    }

    static func stringOrNumber(_ object: [String: Any], _ field: String, path: String, line: Int) throws -> String {
        guard let raw = object[field] else { throw DatasetError(path: path, line: line, field: field, problem: "missing") }
        if let value = raw as? String { return value }
        if let number = raw as? NSNumber { return number.stringValue }
        throw DatasetError(path: path, line: line, field: field, problem: "not a string or number")
    }

    static func optionalNumber(_ object: [String: Any], _ field: String, path: String, line: Int) throws -> Double? {
        guard let raw = object[field], !(raw is NSNull) else { return nil }
        guard let number = raw as? NSNumber else { throw DatasetError(path: path, line: line, field: field, problem: "not a number") }
        return number.doubleValue
    }

    static func stringMap(_ object: [String: Any], _ field: String, path: String, line: Int) throws -> [String: String] {
        guard let raw = object[field], !(raw is NSNull) else { return [:] }
        guard let map = raw as? [String: Any] else { throw DatasetError(path: path, line: line, field: field, problem: "not an object") }
        var result: [String: String] = [:]
        for (key, value) in map {
            guard let text = value as? String else {
                throw DatasetError(path: path, line: line, field: "\(field).\(key)", problem: "not a string")
            }
            result[key] = text
        }
        return result
    }

    /// A seed-dependent bijection on 0..<count per epoch (affine map with a multiplier coprime to count).
    static func permuted(index: Int, count: Int, seed: UInt64) -> Int {
        let epoch = index >= 0 ? index / count : 0
        let position = ((index % count) + count) % count
        var random = TaskRandom(seed: seed, index: epoch, salt: 0xDA7A)
        var multiplier = 1 + Int(random.next() % UInt64(max(1, count)))
        while gcd(multiplier, count) != 1 { multiplier += 1 }
        let offset = Int(random.next() % UInt64(count))
        return (multiplier.multipliedReportingOverflow(by: position).partialValue % count + offset) % count
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
