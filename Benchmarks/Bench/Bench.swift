import ArgumentParser

/// `tributary-bench SUITE [--json]`: prints a table of figures, and with `--json` one final JSON line.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary-bench",
        abstract: "Tributary's benchmarks. Uses the brokers started by scripts/brokers.sh; starts none itself.",
        subcommands: [MessagingSuite.self, ModelSuite.self, LearningSuite.self, PipelineSuite.self, TokenizerSuite.self, AdversarySuite.self])
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
