import Foundation
import ModelAgreement
import Testing
import TestSupport
@testable import Model

/// OpenBLAS picks its kernels by CPU (and by shape), so floats differ between machines by rounding. This suite
/// makes that difference show up on any one CPU: it runs `tributary-model-probe` under every kernel family this
/// CPU can execute (OPENBLAS_CORETYPE is read when the library loads, hence a process each), with one and two
/// threads, and checks that decodes, log-probs and gradients agree with this process's to rounding, and that
/// backward passes its finite-difference check under each.
@Suite struct KernelFamilyTests {
    /// Prescott (generic SSE3) runs everywhere; Haswell needs AVX2 and FMA; SkylakeX needs AVX-512 F, BW and VL.
    static func executableFamilies() -> [String] {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flagsLine = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        var families = ["Prescott"]
        if flags.isSuperset(of: ["avx2", "fma"]) { families.append("Haswell") }
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl"]) { families.append("SkylakeX") }
        return families
    }

    /// The probe sits beside this test binary in the build directory (TRIBUTARY_BIN_DIR overrides).
    static var probePath: String {
        let directory = ProcessInfo.processInfo.environment["TRIBUTARY_BIN_DIR"]
            ?? ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
            .split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return directory + "/tributary-model-probe"
    }

    static func probe(coreType: String, threads: Int) throws -> KernelReport {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("probe-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try runCommand([probePath, String(threads), output.path], environment: ["OPENBLAS_CORETYPE": coreType])
        guard run.status == 0 else { throw ProbeFailed(coreType: coreType, threads: threads, status: run.status, output: run.output) }
        return try JSONDecoder().decode(KernelReport.self, from: Data(contentsOf: output))
    }

    struct ProbeFailed: Error, CustomStringConvertible {
        var coreType: String, threads: Int, status: Int32, output: String
        var description: String { "tributary-model-probe under \(coreType), \(threads) threads, exited \(status): \(output)" }
    }

    /// x86-64 only: OPENBLAS_CORETYPE names x86 kernel families (Debian's OpenBLAS is built to switch between them).
    #if arch(x86_64)
    static let isX86 = true
    #else
    static let isX86 = false
    #endif

    @Test(.enabled(if: isX86, "OPENBLAS_CORETYPE selects x86-64 kernel families"))
    func resultsAgreeAcrossKernelFamiliesAndThreads() throws {
        let families = Self.executableFamilies()
        #expect(families.contains("Prescott"))
        let here = KernelReport.measure(threads: nil)
        let model = KernelReport.model()  // the full forward that decides where a near-tie allows tokens to part
        var worstVerifiedLogprob: Float = 0
        for family in families {
            for threads in [1, 2] {
                let report = try Self.probe(coreType: family, threads: threads)
                let label = "\(family), \(threads) threads"
                // OpenBLAS really ran that family (its name, e.g. "Haswell", "SkylakeX", "Prescott")
                #expect(report.coreName.lowercased() == family.lowercased(), "\(label): OpenBLAS chose \(report.coreName)")
                #expect(report.finiteDifferenceChecked > 50 && report.finiteDifferenceWorst < 3e-2, "\(label): backward vs finite differences \(report.finiteDifferenceWorst)")
                #expect(report.decodes.count == here.decodes.count)
                for (theirs, ours) in zip(report.decodes, here.decodes) {
                    let c = compareDecodes(theirs.completions, ours.completions, prompts: ours.prompts, options: ours.options, model: model)
                    #expect(c.disagreements.isEmpty, "\(label), \(ours.name): \(c.disagreements)")
                    #expect(c.comparedTokens > 0, "\(label), \(ours.name): nothing compared; near-ties: \(c.ties)")
                    // what a validator on another machine does: each completion of that kernel family verifies here
                    for (i, group) in theirs.completions.enumerated() {
                        let prompt = ours.prompts[i].isEmpty ? [model.bosToken] : Array(ours.prompts[i].suffix(model.contextLength))
                        for (k, completion) in group.enumerated() {
                            let v = CompletionVerifier.verify(policy: model, prompt: prompt, completion: completion.sampled,
                                                              options: ours.options, promptIndex: i, sample: k)
                            // the greedy scenario's longest prompt holds ids past the vocabulary: a validator refuses it
                            if prompt.contains(where: { Int($0) >= model.vocabSize }) {
                                #expect(v.failures.map(\.check) == ["shape"])
                            } else {
                                #expect(v.passed, "\(label), \(ours.name) prompt \(i) sample \(k): \(v.failures)")
                                worstVerifiedLogprob = max(worstVerifiedLogprob, v.maxLogprobError)
                            }
                        }
                    }
                }
                #expect(report.logprobs.count == here.logprobs.count)
                let lp = zip(report.logprobs, here.logprobs).enumerated().first { !Rounding.agree($0.element.0, $0.element.1) }
                #expect(lp == nil, "\(label): logprob \(lp.map { "\($0.offset): \($0.element)" } ?? "")")
                let g = Rounding.firstDisagreement(gradients: report.gradients, here.gradients)
                #expect(g == nil, "\(label): gradient \(g.map { "\($0): \(report.gradients[$0]) vs \(here.gradients[$0])" } ?? "")")
            }
        }
        print("verifiable inference across kernel families \(families) and 1-2 threads, verified by \(BLAS.coreName): max |logprob error| \(worstVerifiedLogprob)")
    }
}
