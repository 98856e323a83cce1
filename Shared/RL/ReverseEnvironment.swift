import Foundation

/// String reversal: `reverse:abc=` → `cba`.
public struct ReverseEnvironment: Environment {
    public let name = "reverse"
    public let lengths: ClosedRange<Int>
    public let alphabet: [Character]

    public init(lengths: ClosedRange<Int> = 3...6, alphabet: [Character] = Self.letters) {
        self.lengths = lengths
        self.alphabet = alphabet
    }

    public init(spec: EnvironmentSpec) throws {
        self.init(lengths: try Self.lengths(spec), alphabet: try Self.alphabet(spec, default: "letters"))
    }

    public func task(seed: UInt64, index: Int) -> RLTask {
        var random = TaskRandom(seed: seed, index: index, salt: 0x2E7)
        let length = random.int(in: lengths)
        let text = String((0..<length).map { _ in alphabet[random.int(in: 0...(alphabet.count - 1))] })
        return RLTask(
            id: "reverse-\(seed)-\(index)", prompt: "reverse:\(text)=", answer: String(text.reversed()),
            metadata: ["input": text], difficulty: Double(length - lengths.lowerBound) / Double(max(1, lengths.count - 1)))
    }

    public func referenceSolution(for task: RLTask) -> String { task.answer }

    public func verify(completion: String, task: RLTask) -> RewardComponents {
        SequenceChecking.verify(completion: completion, expected: task.answer, alphabet: alphabet)
    }
}

/// Sorting a list of digits or letters: `sort:3172=` → `1237`.
public struct SortEnvironment: Environment {
    public let name = "sort"
    public let lengths: ClosedRange<Int>
    public let alphabet: [Character]

    public init(lengths: ClosedRange<Int> = 3...6, alphabet: [Character] = ReverseEnvironment.digits) {
        self.lengths = lengths
        self.alphabet = alphabet
    }

    public init(spec: EnvironmentSpec) throws {
        self.init(lengths: try ReverseEnvironment.lengths(spec), alphabet: try ReverseEnvironment.alphabet(spec, default: "digits"))
    }

    public func task(seed: UInt64, index: Int) -> RLTask {
        var random = TaskRandom(seed: seed, index: index, salt: 0x5027)
        let length = random.int(in: lengths)
        let items = (0..<length).map { _ in alphabet[random.int(in: 0...(alphabet.count - 1))] }
        return RLTask(
            id: "sort-\(seed)-\(index)", prompt: "sort:\(String(items))=", answer: String(items.sorted()),
            metadata: ["input": String(items)], difficulty: Double(length - lengths.lowerBound) / Double(max(1, lengths.count - 1)))
    }

    public func referenceSolution(for task: RLTask) -> String { task.answer }

    public func verify(completion: String, task: RLTask) -> RewardComponents {
        SequenceChecking.verify(completion: completion, expected: task.answer, alphabet: alphabet)
    }
}

extension ReverseEnvironment {
    public static let letters: [Character] = Array("abcdefghijklmnopqrstuvwxyz")
    public static let digits: [Character] = Array("0123456789")

    static func lengths(_ spec: EnvironmentSpec) throws -> ClosedRange<Int> {
        let low = spec.minLength ?? 3
        let high = spec.maxLength ?? 6
        guard low >= 1, high >= low, high <= 64 else {
            throw EnvironmentError(environment: spec.name, option: "minLength/maxLength", problem: "\(low)...\(high) must satisfy 1 <= min <= max <= 64")
        }
        return low...high
    }

    static func alphabet(_ spec: EnvironmentSpec, default name: String) throws -> [Character] {
        switch spec.alphabet ?? name {
        case "letters": return letters
        case "digits": return digits
        case let other: throw EnvironmentError(environment: spec.name, option: "alphabet", problem: "\"\(other)\"; expected letters or digits")
        }
    }
}

/// Shared verifier for sequence tasks: whitespace around is ignored; format is "only characters of the alphabet".
enum SequenceChecking {
    static func verify(completion: String, expected: String, alphabet: [Character]) -> RewardComponents {
        let text = completion.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return .wrong(format: 0, "missing answer") }
        let allowed = Set(alphabet)
        guard text.allSatisfy({ allowed.contains($0) }) else {
            return .wrong(format: 0, "malformed answer: characters outside the alphabet")
        }
        return text == expected ? RewardComponents(correctness: 1, format: 1) : .wrong(format: 1, "wrong answer")
    }
}
