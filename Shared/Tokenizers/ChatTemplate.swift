/// How a conversation becomes the prompt text a model was trained on, in a small syntax of our own that covers
/// ChatML (Qwen2, SmolLM2) and the Llama 3 format without a Jinja interpreter.
///
/// A template is a few lines `key = "text"`; blank lines and lines starting with `#` are ignored. Texts are in double
/// quotes with the escapes `\n`, `\t`, `\r`, `\"` and `\\`. Keys:
///
/// - `message` (required): the text of each message. `{role}` is the message's role, `{content}` its text,
///   `{content|trim}` its text without leading and trailing whitespace (Jinja's `trim`); `{{` and `}}` are braces.
/// - `message.ROLE`: the text of messages with that role, in place of `message` (e.g. `message.system`).
/// - `begin`: text before the first message (Llama 3's `<|begin_of_text|>`).
/// - `default_system`: when the first message is not a system message, a system message with this content goes first
///   (Qwen2.5's "You are Qwen, ..."; SmolLM2's "You are a helpful AI assistant named SmolLM, ...").
/// - `generation`: text after the last message when a generation prompt is asked for (the assistant's header).
///
/// The built-in `llama3`:
///
///     begin = "<|begin_of_text|>"
///     message = "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>"
///     generation = "<|start_header_id|>assistant<|end_header_id|>\n\n"
///
/// Special tokens are plain text here; encode the rendered prompt with `addSpecialTokens: false`, as transformers'
/// `apply_chat_template` does, or Llama 3 gets a second `<|begin_of_text|>`.
public struct ChatTemplate: Sendable, Equatable {
    /// A piece of a message's text.
    enum Part: Sendable, Equatable {
        case text(String)
        case role
        case content
        case trimmedContent
    }

    var begin = ""
    var message: [Part] = []
    var roleMessages: [String: [Part]] = [:]
    var defaultSystem: String?
    var generation = ""

    /// The built-in templates by name: `chatml` and `llama3`.
    public static let builtIn: [String: ChatTemplate] = [
        "chatml": try! ChatTemplate(parsing: chatMLSource),
        "llama3": try! ChatTemplate(parsing: llama3Source),
    ]

    public static let chatMLSource = #"""
        # ChatML, as Qwen2 and SmolLM2 use it (their default system prompts: add default_system)
        message = "<|im_start|>{role}\n{content}<|im_end|>\n"
        generation = "<|im_start|>assistant\n"
        """#

    public static let llama3Source = #"""
        # Llama 3 (Meta-Llama-3-*-Instruct)
        begin = "<|begin_of_text|>"
        message = "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>"
        generation = "<|start_header_id|>assistant<|end_header_id|>\n\n"
        """#

    public static var chatML: ChatTemplate { builtIn["chatml"]! }
    public static var llama3: ChatTemplate { builtIn["llama3"]! }

    /// A built-in template by name, or else `nameOrSource` parsed as a template: what a run file's setting holds.
    public static func resolve(_ nameOrSource: String) throws -> ChatTemplate {
        if let template = builtIn[nameOrSource] { return template }
        return try ChatTemplate(parsing: nameOrSource)
    }

    /// The prompt text of `messages`, ending with the generation prompt if `addGenerationPrompt`.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        var turns = messages
        if let defaultSystem, let first = turns.first, first.role != "system" {
            turns.insert(.system(defaultSystem), at: 0)
        }
        var out = turns.isEmpty ? "" : begin
        for turn in turns {
            for part in roleMessages[turn.role] ?? message {
                switch part {
                case let .text(text): out += text
                case .role: out += turn.role
                case .content: out += turn.content
                case .trimmedContent: out += Self.trimmed(turn.content)
                }
            }
        }
        if addGenerationPrompt { out += generation }
        return out
    }

    /// Python's `str.strip()`, which Jinja's `trim` is: White_Space and the separators U+001C...U+001F.
    static func trimmed(_ text: String) -> String {
        func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace || (0x1C...0x1F).contains(s.value) }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !isSpace($0) })!
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[first...last])
        return String(out)
    }
}
