import ArgumentParser
import Chaos

/// `tributary-bench SUITE [--json]`: prints a table of figures, and with `--json` one final JSON line.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-bench",
        abstract: "Tributary's benchmarks. Uses the brokers started by scripts/brokers.sh; starts none itself.",
        subcommands: [MessagingSuite.self, ModelSuite.self, VerifySuite.self, VerifyHonestCommand.self, LearningSuite.self, PipelineSuite.self, TokenizerSuite.self, AdversarySuite.self, ChaosSuite.self, DistanceSuite.self])
}

struct SuiteOptions: ParsableArguments {
    @Flag(help: "End with one line holding a JSON object of the figures.") var json = false
}

struct MessagingSuite: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "messaging", abstract: "AMQP, Redis and zstd throughput.")
    @OptionGroup var options: SuiteOptions
    func run() throws { try runMessagingBench(json: options.json) }
}

struct ModelSuite: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model", abstract: "Transformer training and decoding speed, MFU and memory.")
    @OptionGroup var options: SuiteOptions
    @Option(help: "Architecture: gpt2 (L4 C256 H4, byte vocabulary) or llama (L4 C256 H4 KV2 I688, vocabulary 512, tied).")
    var arch: String = "gpt2"
    func run() throws {
        guard arch == "gpt2" || arch == "llama" else { throw ValidationError("--arch must be gpt2 or llama, got \(arch)") }
        try runModelBench(json: options.json, arch: arch)
    }
}

struct VerifySuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verifiable inference: proof bytes, generation against verification time, false positives and detection of each attack.")
    @OptionGroup var options: SuiteOptions
    @Option(help: "Architecture: gpt2 (L4 C256 H4, byte vocabulary) or llama (L4 C256 H4 KV2 I688, vocabulary 512, tied), weights spread so logits have σ ≈ 1.")
    var arch: String = "gpt2"
    @Option(help: "Groups (tasks) to sample, verify and lie about.") var groups = 16
    @Option(help: "Completions per group (the rollout worker's group size).") var samples = 8
    @Option(help: "New tokens per completion at most (eos stops earlier).") var newTokens = 128
    @Option(help: "Honest groups for the false-positive sweep across kernels, threads and group sizes (0: skip).") var fpGroups = 10_200
    @Option(help: "Steps of the pipeline run without and with one validator at p = 0.1 (0: skip; needs scripts/brokers.sh start).") var pipelineSteps = 0
    func run() throws {
        guard arch == "gpt2" || arch == "llama" else { throw ValidationError("--arch must be gpt2 or llama, got \(arch)") }
        guard groups >= 1, samples >= 1, newTokens >= 2, newTokens <= 225, fpGroups >= 0, pipelineSteps >= 0 else {
            throw ValidationError("need --groups >= 1, --samples >= 1, 2 <= --new-tokens <= 225 (context 256, prompts of 32), --fp-groups >= 0 and --pipeline-steps >= 0")
        }
        try runVerifyBench(json: options.json, arch: arch, groups: groups, samples: samples, newTokens: newTokens, fpGroups: fpGroups,
                           pipelineSteps: pipelineSteps)
    }
}

/// The child process of the verify bench's false-positive sweep (not a suite of its own).
struct VerifyHonestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify-honest", abstract: "Internal: honest groups for the verify bench's sweep.",
                                                    shouldDisplay: false)
    @Option var model: String
    @Option var threads: Int
    @Option var groups: Int
    @Option var seed: UInt64
    @Option var output: String
    func run() throws {
        guard threads >= 1, groups >= 1 else { throw ValidationError("need --threads >= 1 and --groups >= 1") }
        try runVerifyHonest(model: model, threads: threads, groups: groups, seed: seed, output: output)
    }
}

struct LearningSuite: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "learning", abstract: "Single-process warm start then GRPO; held-out accuracy before and after.")
    @OptionGroup var options: SuiteOptions
    func run() throws { try runLearningBench(json: options.json) }
}

struct PipelineSuite: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pipeline", abstract: "The distributed loop at async level 0 and 2: learner wait, steps per minute, broadcast time.")
    @OptionGroup var options: SuiteOptions
    func run() throws { try runPipelineBench(json: options.json) }
}

struct TokenizerSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Hugging Face byte-level BPE encoding and decoding speed on one core (MB/s). Run from the repository root.")
    @OptionGroup var options: SuiteOptions
    @Option(name: .customLong("tokenizer"), help: "A tokenizer.json to measure (repeatable); default: the three fixture tokenizers.") var tokenizers: [String] = []
    @Option(help: "A UTF-8 text file to encode; default: about 4 MB built from the fixture corpus.") var text: String?
    func run() throws { try runTokenizerBench(json: options.json, tokenizerPaths: tokenizers, textPath: text) }
}

struct AdversarySuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adversary", abstract: "Every attack of the trust model during a short real training run, against the same run without them; signing costs.")
    @OptionGroup var options: SuiteOptions
    func run() throws { try runAdversaryBench(json: options.json) }
}

struct ChaosSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Issue 13's fault table: a fault-free run, then one run per fault (kills, broker restarts, pauses, a partition, a second learner, a reused run id, bad settings, purged tasks).",
        discussion: "Starts brokers of its own on free ports (it kills them); fault 9 needs root (a network namespace). Prints the seed; the same seed injects at the same steps.")
    @OptionGroup var options: SuiteOptions
    @Option(help: "Faults by the issue's numbers, e.g. 1,2,3a,7 (3 is 3a and 3b), or all.") var faults = "all"
    @Option(help: "Steps per run.") var steps = 100
    @Option(help: "Seed of the fault steps (default: drawn and printed).") var seed: UInt64?
    @Option(help: "Seconds fault 8 keeps a scorer stopped.") var scorerPause = 30.0
    @Option(help: "Seconds fault 9 keeps a worker cut off.") var partition = 60.0

    func run() throws {
        guard let chosen = Fault.parse(faults) else {
            throw ValidationError("--faults: \(faults) is not a list of \(Fault.allCases.map(\.number).joined(separator: ", ")) or all")
        }
        try runChaosBench(json: options.json, faults: chosen, steps: steps, seed: seed, scorerPause: scorerPause, partition: partition)
    }
}

struct DistanceSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distance",
        abstract: "Issue 14: the rollout workers on a remote host (network namespace) behind each link profile, with a relay; throughput, fetches, link bytes, a join.",
        discussion: "Needs root (scripts/netlab.sh). Starts brokers of its own on free ports, and a checkpoint Redis that the relay replicates.")
    @OptionGroup var options: SuiteOptions
    @Option(help: "Link profiles: loopback, 50 (50 ms RTT), 150 (150 ms RTT, 50 Mbit/s), 300 (300 ms RTT, 10 Mbit/s).") var profiles = "loopback,50,150,300"
    @Option(help: "Async levels, e.g. 0,1,2,4.") var levels = "2"
    @Option(help: "Steps per run.") var steps = 30
    @Option(help: "Seed (default: drawn and printed).") var seed: UInt64?
    func run() throws {
        var chosen: [LinkProfile?] = []
        for item in profiles.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch item {
            case "loopback": chosen.append(nil)
            case "50": chosen.append(.rtt50)
            case "150": chosen.append(.rtt150Rate50)
            case "300": chosen.append(.rtt300Rate10)
            default: throw ValidationError("--profiles: '\(item)' is not loopback, 50, 150 or 300")
            }
        }
        let levels = try self.levels.split(separator: ",").map { item -> Int in
            guard let level = Int(item.trimmingCharacters(in: .whitespaces)), (0...64).contains(level) else {
                throw ValidationError("--levels: '\(item)' is not an async level from 0 to 64")
            }
            return level
        }
        guard !chosen.isEmpty, !levels.isEmpty, steps >= 4 else { throw ValidationError("need a profile, a level and --steps >= 4") }
        try runDistanceBench(json: options.json, profiles: chosen, levels: levels, steps: steps, seed: seed)
    }
}
