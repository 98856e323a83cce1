import Foundation
import Testing
import RL

@Suite struct DatasetEnvironmentTests {
    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rl-test-\(UUID().uuidString).jsonl").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func loadsAndServesTasksReproducibly() throws {
        let path = try write("""
            {"prompt": "1/2 as a decimal?", "answer": "0.5"}

            {"prompt": "6*7?", "answer": 42, "id": "mul", "metadata": {"source": "test"}, "difficulty": 0.2}
            {"prompt": "10-3?", "answer": "7"}
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let env = try EnvironmentFactory.make(.jsonl(path: path, checker: "numeric"))
        let tasks = env.tasks(seed: 9, range: 0..<3)
        #expect(Set(tasks.map(\.prompt)).count == 3, "one epoch visits every line once")
        #expect(tasks == env.tasks(seed: 9, range: 0..<3))
        let mul = try #require(tasks.first { $0.id == "mul" })
        #expect(mul.answer == "42" && mul.metadata["source"] == "test" && mul.difficulty == 0.2)
        #expect(env.verify(completion: "42.0", task: mul).isCorrect)
        for task in tasks { #expect(env.verify(completion: env.referenceSolution(for: task), task: task).isCorrect) }
    }

    @Test(arguments: [
        (#"{"prompt": "a", "answer": "1"}\n{"answer": "2"}"#, 2, "prompt"),
        (#"{"prompt": "a", "answer": "1"}\n\n{"prompt": 5, "answer": "2"}"#, 3, "prompt"),
        (#"{"prompt": "a"}"#, 1, "answer"),
        (#"{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "1"#, 2, "-"),
        (#"{"prompt": "a", "answer": "1", "metadata": {"k": 3}}"#, 1, "metadata.k"),
        (#"{"prompt": "a", "answer": "x"}"#, 1, "answer"),
    ])
    func malformedLinesNameFileLineAndField(text: String, line: Int, field: String) throws {
        let path = try write(text.replacingOccurrences(of: #"\n"#, with: "\n"))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try DatasetEnvironment(path: path, checker: .numeric)
            Issue.record("expected an error for \(text)")
        } catch let error as DatasetError {
            #expect(error.path == path)
            #expect(error.line == line)
            #expect(error.field == field)
            #expect(error.description.contains("\(path):\(line)"))
        }
    }

    @Test func codeDatasetErrorsNameTheTestsField() throws {
        let path = try write(#"{"prompt": "write f", "tests": ["assert f(1) == 2", 3]}"#)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: DatasetError(path: path, line: 1, field: "tests", problem: "array holds a non-string")) {
            try CodeEnvironment(path: path)
        }
    }
}
