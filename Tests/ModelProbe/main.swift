import Foundation
import Model
import ModelAgreement

// Writes the model's results for fixed inputs as JSON, under whatever OpenBLAS kernels this process loaded
// (OPENBLAS_CORETYPE picks them). The Model tests run it under each kernel family the CPU can execute.
let arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 2, let threads = Int(arguments.first!), threads >= 1 else {
    FileHandle.standardError.write(Data("usage: tributary-model-probe THREADS OUTPUT.json\n".utf8))
    exit(2)
}
let report = KernelReport.measure(threads: threads)
let encoder = JSONEncoder()
encoder.outputFormatting = [.sortedKeys]
try encoder.encode(report).write(to: URL(fileURLWithPath: arguments.last!))
