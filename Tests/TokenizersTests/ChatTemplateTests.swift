import Testing
@testable import Tokenizers

/// Chat templates against transformers' apply_chat_template with the real Jinja templates (see chat.json).
@Suite struct ChatTemplateTests {
    /// The formats of the fixture: the two built-ins, and Qwen2.5's and SmolLM2's default system prompts as custom templates.
    static func template(named name: String) throws -> ChatTemplate {
        switch name {
        case "qwen2.5":
            return try ChatTemplate.resolve(ChatTemplate.chatMLSource + "\ndefault_system = \"You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\"")
        case "smollm2":
            return try ChatTemplate.resolve(ChatTemplate.chatMLSource + "\ndefault_system = \"You are a helpful AI assistant named SmolLM, trained by Hugging Face\"")
        default:
            return try #require(ChatTemplate.builtIn[name])
        }
    }

    @Test func rendersAsTransformersDoes() throws {
        let chat = try Fixtures.chat()
        #expect(Set(chat.cases.map(\.template)) == ["chatml", "llama3", "qwen2.5", "smollm2"])
        for fixture in chat.cases {
            let template = try Self.template(named: fixture.template)
            let messages = fixture.messages.map { ChatMessage(role: $0.role, content: $0.content) }
            let rendered = template.render(messages, addGenerationPrompt: fixture.addGenerationPrompt)
            #expect(sameScalars(rendered, fixture.rendered),
                    "\(fixture.template) generation=\(fixture.addGenerationPrompt): \"\(escaped(rendered))\" expected \"\(escaped(fixture.rendered))\"")
        }
    }

    /// The rendered prompt's special tokens are found inside the text: the ids match `tokenizers` on the Jinja output.
    @Test func renderedPromptsEncodeAsTokenizersDoes() throws {
        let chat = try Fixtures.chat()
        let tokenizers = try Dictionary(uniqueKeysWithValues: Fixtures.Flavour.allCases.map { ($0.rawValue, try Fixtures.tokenizer($0)) })
        for fixture in chat.cases {
            let tokenizer = try #require(tokenizers[fixture.flavour])
            #expect(tokenizer.encode(fixture.rendered, addSpecialTokens: false) == fixture.ids, "\(fixture.template): \"\(escaped(fixture.rendered))\"")
        }
    }

    @Test func resolvesBuiltInNames() throws {
        #expect(try ChatTemplate.resolve("chatml") == ChatTemplate.chatML)
        #expect(try ChatTemplate.resolve("llama3") == ChatTemplate.llama3)
        #expect(ChatTemplate.chatML != ChatTemplate.llama3)
    }

    /// Settings separated by `;` on one line (a one-line TOML string in a run file) parse to the same template.
    @Test func parsesSettingsOnOneLine() throws {
        let oneLine = try ChatTemplate.resolve(#"begin = "<|begin_of_text|>"; message = "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>"; generation = "<|start_header_id|>assistant<|end_header_id|>\n\n""#)
        #expect(oneLine == ChatTemplate.llama3)
        let withSemicolon = try ChatTemplate(parsing: #"message = "a;b {content}" ; generation = "x""#)
        #expect(withSemicolon.render([.user("c")], addGenerationPrompt: true) == "a;b cx")
    }

    @Test func roleSpecificMessagesOverrideTheDefault() throws {
        let template = try ChatTemplate(parsing: """
            message = "[{role}] {content}\\n"
            message.system = "<<{content|trim}>>"
            """)
        let rendered = template.render([.system("  rules "), .user("hi"), .assistant("{content}")], addGenerationPrompt: false)
        #expect(rendered == "<<rules>>[user] hi\n[assistant] {content}\n")
    }

    @Test(arguments: [
        ("message = \"{content}\"\nfoo = \"x\"", ChatTemplateError.unknownKey(line: 2, key: "foo")),
        ("message = \"{name}\"", ChatTemplateError.unknownPlaceholder(line: 1, placeholder: "name")),
        ("begin = \"x\"", ChatTemplateError.missingKey("message")),
        ("message = \"a\"\n\nmessage = \"b\"", ChatTemplateError.duplicateKey(line: 3, key: "message")),
        ("message = unquoted", ChatTemplateError.badLine(line: 1, why: "the value must be one double-quoted string")),
        ("# comment\nmessage = \"\\q\"", ChatTemplateError.badLine(line: 2, why: "unknown escape \\q")),
        ("message = \"{content\"", ChatTemplateError.badLine(line: 1, why: "unclosed {")),
    ])
    func refusesBadTemplatesNamingTheLine(_ source: String, _ expected: ChatTemplateError) {
        #expect(throws: expected) { try ChatTemplate(parsing: source) }
    }
}
