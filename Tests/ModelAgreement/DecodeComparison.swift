import Model

/// One completion as it crosses a process boundary (the kernel probe prints these).
public struct Completion: Codable, Sendable, Equatable {
    public var tokens: [Int32]
    public var logprobs: [Float]
    public var finishedWithEOS: Bool
    /// The sampler's hidden-state proof (`InferenceProof`).
    public var proof: [UInt8]

    public init(_ c: SampledCompletion) {
        tokens = c.tokens
        logprobs = c.logprobs
        finishedWithEOS = c.finishedWithEOS
        proof = c.proof
    }

    /// The completion as the sampler returned it.
    public var sampled: SampledCompletion { SampledCompletion(tokens: tokens, logprobs: logprobs, finishedWithEOS: finishedWithEOS, proof: proof) }
}

/// What comparing two decodes of the same prompts found: how many tokens were compared, where a near-tie ended a
/// comparison early, and every disagreement that rounding cannot explain.
public struct DecodeComparison: Sendable {
    public var comparedTokens = 0
    public var ties: [String] = []
    public var disagreements: [String] = []
}

/// Compares completions of the same prompts from two computations (batched and alone, another kernel, …).
/// Walking each pair token by token against `model`'s full forward pass (a third computation): tokens must be
/// equal and log-probs agree to `Rounding` until a step whose choice is fragile (`Rounding.fragility`); from
/// there on the two may legitimately diverge, so the comparison of that pair stops. `promptIndex(i)` is prompt
/// i's index in the `sample` call that drew it, which keys its Gumbel noise.
public func compareDecodes(_ a: [[Completion]], _ b: [[Completion]], prompts: [[Int32]], options: SamplingOptions,
                           model: any Policy, promptIndex: (Int) -> Int = { $0 }) -> DecodeComparison {
    var result = DecodeComparison()
    guard a.count == b.count, a.count == prompts.count else {
        result.disagreements.append("prompt counts differ: \(a.count) vs \(b.count) for \(prompts.count) prompts")
        return result
    }
    let ctx = model.contextLength, V = model.vocabSize
    for i in prompts.indices {
        guard a[i].count == b[i].count else {
            result.disagreements.append("prompt \(i): \(a[i].count) vs \(b[i].count) samples")
            continue
        }
        // the sampler's view of the prompt: bos for an empty one, the last `ctx` tokens of a long one
        let prompt = prompts[i].isEmpty ? [model.bosToken] : Array(prompts[i].suffix(ctx))
        for k in a[i].indices {
            let x = a[i][k], y = b[i][k]
            let key = options.gumbelKey(prompt: promptIndex(i), sample: k)
            let sequence = prompt + x.tokens
            let full = model.logits(tokens: Array(sequence.prefix(ctx)))
            var j = 0
            while j < x.tokens.count, j < y.tokens.count {
                let row = prompt.count - 1 + j
                guard row < ctx else { break }
                if let why = Rounding.fragility(logits: full[(row * V)..<((row + 1) * V)], chosen: x.tokens[j],
                                                options: options, key: key, position: j) {
                    result.ties.append("prompt \(i) sample \(k) token \(j): \(why)")
                    break
                }
                if x.tokens[j] != y.tokens[j] {
                    result.disagreements.append("prompt \(i) sample \(k) token \(j): \(x.tokens[j]) vs \(y.tokens[j]), no tie")
                    break
                }
                if !Rounding.agree(x.logprobs[j], y.logprobs[j]) {
                    result.disagreements.append("prompt \(i) sample \(k) token \(j): logprob \(x.logprobs[j]) vs \(y.logprobs[j])")
                }
                result.comparedTokens += 1
                j += 1
            }
            let compared = j == x.tokens.count || j == y.tokens.count
            if compared && (x.tokens.count != y.tokens.count || x.finishedWithEOS != y.finishedWithEOS) {
                result.disagreements.append("prompt \(i) sample \(k): \(x.tokens.count) vs \(y.tokens.count) tokens, eos \(x.finishedWithEOS) vs \(y.finishedWithEOS)")
            }
        }
    }
    return result
}

/// `compareDecodes` for the `SampledCompletion`s of one process.
public func compareDecodes(_ a: [[SampledCompletion]], _ b: [[SampledCompletion]], prompts: [[Int32]],
                           options: SamplingOptions, model: any Policy, promptIndex: (Int) -> Int = { $0 }) -> DecodeComparison {
    compareDecodes(a.map { $0.map(Completion.init) }, b.map { $0.map(Completion.init) }, prompts: prompts,
                   options: options, model: model, promptIndex: promptIndex)
}
