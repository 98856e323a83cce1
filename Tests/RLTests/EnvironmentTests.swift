import Foundation
import Testing
import RL

@Suite struct EnvironmentTests {
    @Test(arguments: [
        EnvironmentSpec.arithmetic(digits: 2, operands: 3, operations: ["add", "subtract", "multiply"]),
        .reverse(), .sort(), .sort(alphabet: "letters"),
    ])
    func tasksAreReproducibleFromTheirSeed(spec: EnvironmentSpec) throws {
        let a = try EnvironmentFactory.make(spec)
        let b = try EnvironmentFactory.make(spec)
        let first = a.tasks(seed: 42, range: 0..<50)
        #expect(first == b.tasks(seed: 42, range: 0..<50))
        #expect(first != a.tasks(seed: 43, range: 0..<50))
        #expect(Set(first.map(\.prompt)).count > 10, "tasks vary with the index")
        for task in first {
            #expect(a.verify(completion: a.referenceSolution(for: task), task: task).isCorrect, "\(task.prompt) \(task.answer)")
        }
    }

    @Test func arithmeticEvaluatesWithPrecedence() throws {
        let env = ArithmeticEnvironment(digits: 2, operands: 3, operations: [.add, .subtract, .multiply])
        for task in env.tasks(seed: 1, range: 0..<200) {
            var expression = task.metadata["expression"]!
            // Evaluate independently with python's rules encoded by hand: split terms on + and -, multiply inside.
            var total = 0, sign = 1
            expression += "+"
            var term = 1, number = 0
            for ch in expression {
                if let digit = ch.wholeNumberValue { number = number * 10 + digit; continue }
                term *= number; number = 0
                if ch == "*" { continue }
                total += sign * term; term = 1
                sign = ch == "-" ? -1 : 1
            }
            #expect(String(total) == task.answer, "\(task.prompt)")
        }
    }

    @Test func arithmeticVerifierEdgeCases() {
        let env = ArithmeticEnvironment()
        let task = RLTask(id: "t", prompt: "12-34=", answer: "-22")
        #expect(env.verify(completion: "-22", task: task).isCorrect)
        #expect(env.verify(completion: "  -22\n", task: task).isCorrect, "surrounding whitespace is fine")
        #expect(env.verify(completion: "\u{2212}22", task: task).isCorrect, "typographic minus")
        #expect(!env.verify(completion: "22", task: task).isCorrect, "sign matters")
        let missing = env.verify(completion: "   ", task: task)
        #expect(missing.correctness == 0 && missing.format == 0 && missing.reason == "missing answer")
        let malformed = env.verify(completion: "-22 apples", task: task)
        #expect(malformed.correctness == 0 && malformed.format == 0)
        #expect(env.verify(completion: "-22.0", task: task).format == 0, "an integer task wants an integer")
        let wrong = env.verify(completion: "+22", task: task)
        #expect(wrong.format == 1 && wrong.correctness == 0)
        let positive = RLTask(id: "p", prompt: "1+2=", answer: "3")
        #expect(env.verify(completion: "+3", task: positive).isCorrect)
        #expect(env.verify(completion: "003", task: positive).isCorrect)
    }

    @Test func sequenceVerifierEdgeCases() {
        let reverse = ReverseEnvironment()
        let task = RLTask(id: "r", prompt: "reverse:abc=", answer: "cba")
        #expect(reverse.verify(completion: " cba \n", task: task).isCorrect)
        #expect(reverse.verify(completion: "abc", task: task).format == 1)
        #expect(!reverse.verify(completion: "abc", task: task).isCorrect)
        #expect(reverse.verify(completion: "c b a", task: task).format == 0)
        #expect(reverse.verify(completion: "", task: task).reason == "missing answer")
        let sort = SortEnvironment()
        let sortTask = RLTask(id: "s", prompt: "sort:312=", answer: "123")
        #expect(sort.verify(completion: "123", task: sortTask).isCorrect)
        #expect(sort.verify(completion: "1,2,3", task: sortTask).format == 0)
    }

    @Test func numericCheckerAcceptsEquivalentForms() {
        func check(_ completion: String, _ expected: String, marker: String? = nil) -> RewardComponents {
            AnswerChecking.check(completion: completion, expected: expected, checker: .numeric, marker: marker)
        }
        #expect(check("0.5", "1/2").isCorrect)
        #expect(check("2/4", "0.50").isCorrect)
        #expect(check("\\frac{3}{4}", "0.75").isCorrect)
        #expect(check("-3/6", "-0.5").isCorrect)
        #expect(check("1,000", "1000").isCorrect)
        #expect(check("$12", "12").isCorrect)
        #expect(check(" 7 ", "7.000").isCorrect)
        #expect(check("+7", "7").isCorrect)
        #expect(!check("-7", "7").isCorrect)
        #expect(!check("0.333", "1/3").isCorrect)
        #expect(check("1/0", "1").format == 0, "division by zero is malformed")
        #expect(check("seven", "7").format == 0)
        #expect(check("12,34", "1234").format == 0, "misplaced thousands separator")
        #expect(check("so the answer is\n#### 42", "42", marker: "####").isCorrect)
        #expect(check("#### 1 then #### 43 ", "43", marker: "####").isCorrect, "the last marker wins")
        #expect(check("no marker 42", "42", marker: "####").reason?.contains("missing answer") == true)
        #expect(check("thus \\boxed{\\frac{1}{2}}.", "0.5", marker: "\\boxed").isCorrect)
        #expect(check("thus \\boxed{1/2", "0.5", marker: "\\boxed").format == 0, "unbalanced braces")
        #expect(check("123456789012345678901234567890", "123456789012345678901234567890").isCorrect, "big numbers compare approximately")
    }

    @Test func exactAndRegexCheckers() {
        #expect(AnswerChecking.check(completion: " Paris\n", expected: "Paris", checker: .exact, marker: nil).isCorrect)
        #expect(!AnswerChecking.check(completion: "paris", expected: "Paris", checker: .exact, marker: nil).isCorrect)
        #expect(AnswerChecking.check(completion: "colour", expected: "colou?r", checker: .regex, marker: nil).isCorrect)
        #expect(!AnswerChecking.check(completion: "colours", expected: "colou?r", checker: .regex, marker: nil).isCorrect, "regex must match the whole answer")
        #expect(AnswerChecking.check(completion: "", expected: "x", checker: .exact, marker: nil).format == 0)
    }

    @Test func unknownSpecsAreErrorsNamingTheOption() {
        #expect(throws: EnvironmentError.self) { try EnvironmentFactory.make(EnvironmentSpec(name: "chess")) }
        do {
            _ = try EnvironmentFactory.make(.arithmetic(operations: ["divide"]))
            Issue.record("expected an error")
        } catch let error as EnvironmentError {
            #expect(error.option == "operations")
        } catch { Issue.record("unexpected \(error)") }
        #expect(throws: EnvironmentError.self) { try EnvironmentFactory.make(EnvironmentSpec(name: "jsonl")) }
    }

    @Test func specRoundTripsThroughJSON() throws {
        let spec = EnvironmentSpec.arithmetic(digits: 3, operands: 2, operations: ["add", "multiply"])
        let decoded = try JSONDecoder().decode(EnvironmentSpec.self, from: JSONEncoder().encode(spec))
        #expect(decoded == spec)
        let plain = try JSONDecoder().decode(EnvironmentSpec.self, from: Data(#"{"name":"reverse","maxLength":4}"#.utf8))
        #expect(plain.maxLength == 4 && plain.minLength == nil)
    }
}
