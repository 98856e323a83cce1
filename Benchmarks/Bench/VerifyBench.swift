import Foundation
import Model
import ModelAgreement

/// `tributary-bench verify`: what verifiable inference costs and catches.
/// - Generation as a rollout worker does it (one group of `samples` completions per task, Gumbel-max draws with their
///   hidden-state proofs) against verification as the validator does it (the group's completions in one prefill, then
///   the checks): tokens per second each, their ratio (`validation_speedup`) and the proof's share of generation.
/// - Each lie of `Lie` told about every group: the share of groups detected, which checks fired, and how many groups a
///   liar sends before the validator's rule (probation, ban) bans it at p = 0.1.
/// - Honest groups sampled by child processes under OpenBLAS Prescott, Haswell and the native kernels, 1 and 2
///   threads, group sizes 1 to 64 and four sampling settings, verified here: the false positive rate.
/// - With `pipelineSteps` > 0, the pipeline bench's run at async 2 without and with one validator at p = 0.1.
func runVerifyBench(json: Bool, arch: String, groups: Int, samples: Int, newTokens: Int, fpGroups: Int, pipelineSteps: Int) throws {
    BLAS.relaunchWithNativeKernelsIfNeeded()
    let threads = 2
    BLAS.setThreads(threads)
    let model = verifyBenchModel(arch: arch)
    // the validator's default (validation.proof_thresholds = float32); TOPLOC's proof thresholds are looser, so a group
    // that passes here passes there too
    let tolerances = VerificationTolerances(proof: .float32)
    let V = model.vocabSize, promptLength = 32
    // the version before this one: the same model one AdamW step (the quickstart's learning rate) earlier
    let older = model.copy()
    Liar.trainOneStep(model, seed: 9)
    var rng = SeededGenerator(seed: 2)
    let prompts = (0..<groups).map { _ in (0..<promptLength).map { _ in Int32(rng.next() % UInt64(min(V, 256))) } }
    // a task's settings, its seed its own; completions run to the token limit unless they draw eos
    func options(_ group: Int) -> SamplingOptions {
        SamplingOptions(temperature: 1, topP: 0.95, maxNewTokens: newTokens, seed: 1000 + UInt64(group), stopAtEOS: true)
    }

    // generation, one group per task as a rollout worker does it (proofs included)
    _ = model.sample(prompt: prompts[0], count: samples, options: SamplingOptions(maxNewTokens: 8, seed: 0))
    var generated: [[SampledCompletion]] = []
    let g0 = benchNow()
    for i in 0..<groups { generated.append(model.sample(prompt: prompts[i], count: samples, options: options(i))) }
    let generateSeconds = benchNow() - g0
    let tokens = generated.joined().map(\.tokens.count).reduce(0, +)

    // verification as the validator does it: one group at a time, its completions in one prefill
    var falsePositives: [String] = []
    var worstLogprob: Float = 0
    let v0 = benchNow()
    for i in 0..<groups {
        let verdicts = CompletionVerifier.verify(policy: model, prompt: prompts[i], completions: generated[i], options: options(i), promptIndex: 0,
                                                 tolerances: tolerances)
        for (k, v) in verdicts.enumerated() {
            worstLogprob = max(worstLogprob, v.maxLogprobError)
            if !v.passed { falsePositives.append("group \(i) sample \(k): \(v.failures)") }
        }
    }
    let verifySeconds = benchNow() - v0
    // the forward pass alone: each group's sequences padded to its longest, one call
    let f0 = benchNow()
    for i in 0..<groups {
        let sequences = generated[i].filter { !$0.tokens.isEmpty }.map { prompts[i] + $0.tokens.dropLast() }
        guard let T = sequences.map(\.count).max() else { continue }
        let padded = sequences.flatMap { $0 + [Int32](repeating: 0, count: T - $0.count) }
        _ = model.logitsAndHiddenStates(tokens: padded, batch: sequences.count, time: T)
    }
    let forwardSeconds = benchNow() - f0
    // one completion at a time, as before batching
    let s0 = benchNow()
    for i in 0..<min(groups, 4) {
        for (k, c) in generated[i].enumerated() {
            _ = CompletionVerifier.verify(policy: model, prompt: prompts[i], completion: c, options: options(i), promptIndex: 0, sample: k,
                                          tolerances: tolerances)
        }
    }
    let singleSeconds = (benchNow() - s0) / Double(generated.prefix(4).joined().map(\.tokens.count).reduce(0, +))

    // the proof's share of generation: every completion's rows committed again, timed alone
    var commitSeconds = 0.0
    for i in 0..<groups {
        for c in generated[i] where !c.tokens.isEmpty {
            let hidden = model.hiddenStates(tokens: prompts[i] + c.tokens.dropLast())
            let C = hidden.count / (promptLength + c.tokens.count - 1)
            let rows = Array(hidden[((promptLength - 1) * C)...])
            let c0 = benchNow()
            _ = InferenceProof.commit(hidden: rows, rows: c.tokens.count, channels: C)
            commitSeconds += benchNow() - c0
        }
    }

    // each lie, told about every group
    let probation = 1, ban = 2, fraction = 0.1  // the validator's defaults (validation.*)
    var lieRows: [(lie: Lie, detected: Int, completionsDetected: Int, completions: Int, checks: [String: Int], toBan: (mean: Double, p50: Int, p99: Int))] = []
    for lie in Lie.allCases {
        let liar = Liar(lie, claimed: model, older: older)
        var detected = 0, completionsDetected = 0, completions = 0
        var checks: [String: Int] = [:]
        for i in 0..<groups {
            let forged = liar.group(prompt: prompts[i], count: samples, options: options(i))
            let verdicts = CompletionVerifier.verify(policy: model, prompt: prompts[i], completions: forged, options: options(i), promptIndex: 0,
                                                     tolerances: tolerances)
            if verdicts.contains(where: { !$0.passed }) { detected += 1 }
            for v in verdicts {
                completions += 1
                if !v.passed { completionsDetected += 1 }
                for f in v.failures { checks[f.check, default: 0] += 1 }
            }
        }
        let rate = Double(detected) / Double(groups)
        lieRows.append((lie, detected, completionsDetected, completions, checks,
                        verifyBenchGroupsToBan(detection: rate, fraction: fraction, probation: probation, ban: ban)))
    }

    // false positives over honest groups from other kernels, thread counts and batch shapes
    var sweep: VerifyBenchSweep?
    if fpGroups > 0 { sweep = try verifyBenchFalsePositiveSweep(model: model, groups: fpGroups, tolerances: tolerances) }

    // the pipeline without and with one validator at p = 0.1
    var pipeline: (without: PipelineRunResult, with: PipelineRunResult)?
    if pipelineSteps > 0 { pipeline = try verifyBenchPipeline(steps: pipelineSteps, fraction: fraction) }

    let chunkBytes = InferenceProof.byteCount(rows: 32, channels: model.hiddenStates(tokens: [0]).count)!
    let generateRate = Double(tokens) / generateSeconds, verifyRate = Double(tokens) / verifySeconds
    let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
    print("verify benchmark (\(arch)): \(model.parameterCount) parameters, vocabulary \(V), \(groups) groups of \(samples) completions "
          + "(prompts of \(promptLength) tokens, up to \(newTokens) new, temperature 1 top-p 0.95, eos stops), \(threads) BLAS threads, "
          + "OpenBLAS core \(BLAS.coreName), load \(load)")
    var figures: [(key: String, value: Double)] = [
        ("proof_bytes_per_32_tokens", Double(chunkBytes)),
        ("generation_tokens_per_s", generateRate),
        ("validation_tokens_per_s", verifyRate),
        ("validation_speedup", verifyRate / generateRate),
        ("validation_forward_only_tokens_per_s", Double(tokens) / forwardSeconds),
        ("validation_tokens_per_s_one_completion_at_a_time", 1 / singleSeconds),
        ("proof_overhead_fraction", commitSeconds / generateSeconds),
        ("honest_false_positive_rate_here", Double(falsePositives.count) / Double(groups * samples)),
        ("honest_max_logprob_error_here_x1e6", 1e6 * Double(worstLogprob)),
    ]
    for row in lieRows {
        figures.append(("detection_rate: \(row.lie.slug)", Double(row.detected) / Double(groups)))
        figures.append(("groups_to_ban_at_p0.1_mean: \(row.lie.slug)", row.toBan.mean.isFinite ? row.toBan.mean : -1))
    }
    if let sweep {
        figures.append(("false_positive_rate", Double(sweep.falsePositiveGroups) / Double(max(sweep.groups, 1))))
        figures.append(("false_positive_groups", Double(sweep.falsePositiveGroups)))
        figures.append(("honest_groups_checked", Double(sweep.groups)))
        figures.append(("honest_completions_checked", Double(sweep.completions)))
        figures.append(("honest_max_logprob_error_across_kernels_x1e6", 1e6 * Double(sweep.worstLogprob)))
        figures.append(("honest_fewest_exponent_matches_share", sweep.fewestMatches))
        figures.append(("honest_max_mean_mantissa_error", sweep.worstMeanMantissa))
    }
    if let pipeline {
        figures.append(("steps_per_min_no_validator", pipeline.without.stepsPerMinute))
        figures.append(("steps_per_min_one_validator_p0.1", pipeline.with.stepsPerMinute))
        figures.append(("steps_per_min_ratio", pipeline.with.stepsPerMinute / pipeline.without.stepsPerMinute))
    }
    var extra: [String: String] = ["arch": arch, "openblas_core": BLAS.coreName, "load_average_1m": load,
                                   "generation": "one group of \(samples) per sample() call, as a rollout worker",
                                   "validation": "one group per verify() call, its completions in one prefill"]
    for row in lieRows {
        let fired = row.checks.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        extra["lie: \(row.lie.slug)"] = "\(row.lie.rawValue): \(row.detected) of \(groups) groups, \(row.completionsDetected) of \(row.completions) "
            + "completions; checks failed: \(fired); groups sent until banned at p = 0.1: mean \(String(format: "%.1f", row.toBan.mean)), "
            + "median \(row.toBan.p50), p99 \(row.toBan.p99)"
    }
    if let sweep { extra["false positive sweep"] = sweep.summary }
    if let pipeline {
        extra["pipeline without validator"] = pipeline.without.report
        extra["pipeline with one validator"] = pipeline.with.report
    }
    for row in lieRows { print(extra["lie: \(row.lie.slug)"]!) }
    if let sweep { print("false-positive sweep: \(sweep.summary)") }
    for f in falsePositives.prefix(5) { print("false positive here: \(f)") }
    for f in sweep?.examples ?? [] { print("false positive in the sweep: \(f)") }
    printFigures(title: "verifiable inference (\(arch))", figures, extra: extra, json: json)
}

/// The bench model: L=4, C=256, 4 heads, context 256 (GPT-2 with the byte vocabulary, or a Llama with GQA 4:2, SwiGLU
/// 688, vocabulary 512, tied), random weights plus N(0, 1/√C) so that the logits spread (σ ≈ 1) like a trained model's.
func verifyBenchModel(arch: String) -> any Policy {
    let T = 256, C = 256, L = 4, heads = 4
    let model: any Policy = arch == "llama"
        ? Llama(config: LlamaConfig(vocabSize: 512, contextLength: T, layers: L, channels: C, intermediateSize: 688, heads: heads,
                                    kvHeads: 2, tiedEmbeddings: true, bosToken: 1, eosToken: 2), seed: 1)
        : GPT(config: GPTConfig(vocabSize: ByteTokenizer.vocabSize, contextLength: T, layers: L, heads: heads, channels: C), seed: 1)
    var rng = SeededGenerator(seed: 1001)
    let sigma = 1 / Float(C).squareRoot()
    model.withParameters { p, _ in for i in 0..<p.count { p[i] += rng.nextNormal() * sigma } }
    return model
}

/// Groups a liar sends until banned under the validator's rule (each group drawn with probability `fraction`, every
/// group once on probation; a drawn group fails with probability `detection`), over 100,000 simulated liars: mean,
/// median and 99th percentile. A liar never detected is never banned (Int.max).
func verifyBenchGroupsToBan(detection: Double, fraction: Double, probation: Int, ban: Int) -> (mean: Double, p50: Int, p99: Int) {
    guard detection > 0 else { return (.infinity, .max, .max) }
    var rng = SeededGenerator(seed: 5)
    func uniform() -> Double { Double(rng.next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
    var counts: [Int] = []
    for _ in 0..<100_000 {
        var sent = 0, failures = 0
        while failures < ban {
            sent += 1
            let drawn = failures >= probation || uniform() < fraction
            if drawn && uniform() < detection { failures += 1 }
        }
        counts.append(sent)
    }
    counts.sort()
    return (Double(counts.reduce(0, +)) / Double(counts.count), counts[counts.count / 2], counts[counts.count * 99 / 100])
}

struct VerifyBenchSweep {
    var groups = 0
    var completions = 0
    var falsePositiveGroups = 0
    var worstLogprob: Float = 0
    /// Over every proof chunk's check: the fewest exponent matches as a share of k, the largest mean mantissa error.
    var fewestMatches = 1.0
    var worstMeanMantissa = 0.0
    var examples: [String] = []
    var perConfig: [String] = []
    var summary: String { "\(groups) groups (\(completions) completions): " + perConfig.joined(separator: "; ") }
}

/// The sampling settings of the sweep, one per group in turn.
let verifyBenchSweepSettings: [(name: String, options: SamplingOptions)] = [
    ("t1 top-p 0.95", SamplingOptions(temperature: 1, topP: 0.95, maxNewTokens: 24, seed: 0)),
    ("t0.7 top-k 20", SamplingOptions(temperature: 0.7, topK: 20, maxNewTokens: 24, seed: 0)),
    ("greedy", SamplingOptions(temperature: 0, maxNewTokens: 24, seed: 0)),
    ("t1.3", SamplingOptions(temperature: 1.3, maxNewTokens: 24, seed: 0)),
]
/// Group sizes (batch shapes of the decode) and how many groups of each, per kernel and thread configuration.
let verifyBenchSweepSizes: [(size: Int, share: Double)] = [(1, 0.3), (2, 0.3), (4, 0.2), (8, 0.12), (16, 0.06), (64, 0.02)]

/// Honest groups sampled by `tributary-bench verify-honest` children under each OpenBLAS kernel family and thread
/// count, each group verified here (native kernels, 2 threads) as the validator does.
func verifyBenchFalsePositiveSweep(model: any Policy, groups: Int, tolerances: VerificationTolerances) throws -> VerifyBenchSweep {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-verify-sweep-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let modelFile = directory.appendingPathComponent("model.safetensors")
    try Data(model.safetensorsBytes()).write(to: modelFile)
    let native = BLAS.coreName
    let cores = ["Prescott", "Haswell"] + (["Prescott", "Haswell"].contains(native) ? [] : [native])
    let configs = cores.flatMap { core in [(core, 1), (core, 2)] }
    let perConfig = (groups + configs.count - 1) / configs.count
    var sweep = VerifyBenchSweep()
    for (index, (core, threads)) in configs.enumerated() {
        let output = directory.appendingPathComponent("groups-\(index).bin")
        let started = benchNow()
        let child = Process()
        child.executableURL = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        child.arguments = ["verify-honest", "--model", modelFile.path, "--threads", String(threads), "--groups", String(perConfig),
                           "--seed", String(100 + index), "--output", output.path]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = core
        child.environment = environment
        try child.run()
        child.waitUntilExit()
        guard child.terminationStatus == 0 else {
            throw BenchError(description: "verify-honest under \(core), \(threads) threads exited with \(child.terminationStatus)")
        }
        let sampledIn = benchNow() - started
        let sampled = try VerifyBenchHonestGroup.read(Data(contentsOf: output))
        var failedHere = 0, completionsHere = 0
        let v0 = benchNow()
        for group in sampled {
            let verdicts = CompletionVerifier.verify(policy: model, prompt: group.prompt, completions: group.completions, options: group.options,
                                                     promptIndex: 0, tolerances: tolerances)
            completionsHere += verdicts.count
            for v in verdicts {
                sweep.worstLogprob = max(sweep.worstLogprob, v.maxLogprobError)
                if let proof = v.proof, proof.topK > 0 {
                    sweep.fewestMatches = min(sweep.fewestMatches, Double(proof.exponentMatches) / Double(proof.topK))
                    sweep.worstMeanMantissa = max(sweep.worstMeanMantissa, proof.meanMantissaError)
                }
            }
            if let k = verdicts.firstIndex(where: { !$0.passed }) {
                failedHere += 1
                if sweep.examples.count < 5 { sweep.examples.append("\(core) \(threads) threads, group of \(group.completions.count), sample \(k): \(verdicts[k].failures)") }
            }
        }
        let verifiedIn = benchNow() - v0
        sweep.groups += sampled.count
        sweep.completions += completionsHere
        sweep.falsePositiveGroups += failedHere
        sweep.perConfig.append("\(core) x\(threads): \(sampled.count) groups, \(failedHere) refused (sampled in \(Int(sampledIn)) s, verified in \(Int(verifiedIn)) s)")
        print("  sweep \(core) x\(threads): \(sampled.count) groups, \(completionsHere) completions, \(failedHere) refused")
    }
    return sweep
}

/// `tributary-bench verify-honest`: the child of the sweep. Loads the model, samples `groups` honest groups (sizes and
/// settings in turn, prompts of 8 to 24 random tokens) with `threads` BLAS threads under whatever kernels
/// OPENBLAS_CORETYPE chose, and writes them to `output`.
func runVerifyHonest(model path: String, threads: Int, groups: Int, seed: UInt64, output: String) throws {
    BLAS.setThreads(threads)
    let model = try Policies.fromSafetensors(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    var rng = SeededGenerator(seed: seed)
    var plan: [Int] = []
    for (size, share) in verifyBenchSweepSizes { plan += Array(repeating: size, count: max(1, Int((Double(groups) * share).rounded()))) }
    var out = Data()
    // rounding may overfill the plan: drop groups of one first
    for (index, size) in plan.suffix(groups).enumerated() {
        let length = 8 + Int(rng.next() % 17)
        let prompt = (0..<length).map { _ in Int32(rng.next() % UInt64(min(model.vocabSize, 256))) }
        let setting = index % verifyBenchSweepSettings.count
        var options = verifyBenchSweepSettings[setting].options
        options.seed = rng.next()
        let group = VerifyBenchHonestGroup(prompt: prompt, setting: setting, seed: options.seed,
                                           completions: model.sample(prompt: prompt, count: size, options: options))
        group.append(to: &out)
    }
    try out.write(to: URL(fileURLWithPath: output))
}

/// One honest group on the wire between the sweep's child and parent (little-endian, lengths first).
struct VerifyBenchHonestGroup {
    var prompt: [Int32]
    var setting: Int
    var seed: UInt64
    var completions: [SampledCompletion]

    var options: SamplingOptions {
        var options = verifyBenchSweepSettings[setting].options
        options.seed = seed
        return options
    }

    func append(to out: inout Data) {
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(UInt32(prompt.count)); prompt.forEach { put($0) }
        put(UInt32(setting)); put(seed)
        put(UInt32(completions.count))
        for c in completions {
            put(UInt32(c.tokens.count)); c.tokens.forEach { put($0) }; c.logprobs.forEach { put($0.bitPattern) }
            put(UInt8(c.finishedWithEOS ? 1 : 0))
            put(UInt32(c.proof.count)); out.append(contentsOf: c.proof)
        }
    }

    static func read(_ data: Data) throws -> [VerifyBenchHonestGroup] {
        let bytes = [UInt8](data)
        var at = 0
        func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard at + MemoryLayout<T>.size <= bytes.count else { throw BenchError(description: "verify-honest output ends early at byte \(at)") }
            var v = T.zero
            for i in 0..<MemoryLayout<T>.size { v |= T(bytes[at + i]) << (8 * i) }
            at += MemoryLayout<T>.size
            return v
        }
        // a count is trusted only as far as the bytes left can hold its items
        func count(of size: Int) throws -> Int {
            let n = Int(try get(UInt32.self))
            guard n <= (bytes.count - at) / size else { throw BenchError(description: "verify-honest output claims \(n) items at byte \(at)") }
            return n
        }
        var groups: [VerifyBenchHonestGroup] = []
        while at < bytes.count {
            let prompt = try (0..<count(of: 4)).map { _ in try get(Int32.self) }
            let setting = Int(try get(UInt32.self)), seed = try get(UInt64.self)
            guard setting < verifyBenchSweepSettings.count else { throw BenchError(description: "verify-honest output names setting \(setting)") }
            var completions: [SampledCompletion] = []
            for _ in 0..<(try count(of: 9)) {
                let n = try count(of: 8)
                let tokens = try (0..<n).map { _ in try get(Int32.self) }
                let logprobs = try (0..<n).map { _ in Float(bitPattern: try get(UInt32.self)) }
                let eos = try get(UInt8.self) == 1
                let proof = try (0..<count(of: 1)).map { _ in try get(UInt8.self) }
                completions.append(SampledCompletion(tokens: tokens, logprobs: logprobs, finishedWithEOS: eos, proof: proof))
            }
            groups.append(VerifyBenchHonestGroup(prompt: prompt, setting: setting, seed: seed, completions: completions))
        }
        return groups
    }
}

/// The pipeline bench's training at async level 2, without a validator and with one at p = `fraction`.
func verifyBenchPipeline(steps: Int, fraction: Double) throws -> (without: PipelineRunResult, with: PipelineRunResult) {
    signal(SIGPIPE, SIG_IGN)
    pipelineBenchInstallStopHandlers()
    var recipe = PipelineRecipe.fromEnvironment()
    recipe.steps = steps
    recipe.asyncLevels = [2]
    let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-verify-pipeline-\(getpid())")
    try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
    recipe.validators = 0
    print("pipeline without a validator: \(recipe.summary) ...")
    let without = try pipelineBenchRun(run: "bench-verify-none-\(getpid())", asyncLevel: 2, recipe: recipe, binaries: binaries, logs: logs)
    print(without.report)
    recipe.validators = 1
    recipe.validationFraction = fraction
    print("pipeline with one validator: \(recipe.summary) ...")
    let with = try pipelineBenchRun(run: "bench-verify-one-\(getpid())", asyncLevel: 2, recipe: recipe, binaries: binaries, logs: logs)
    print(with.report)
    return (without, with)
}
