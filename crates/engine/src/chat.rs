//! Chat templates: turning a conversation into the prompt text a model was
//! trained on, with the template the model file carries.
//!
//! Templates are Jinja, as in Hugging Face's `tokenizer_config.json`, and
//! rendered with minijinja in the environment transformers'
//! `apply_chat_template` renders them in (`chat/transformers.rs`: its whitespace
//! control, its `tojson`, `raise_exception` and `strftime_now`, and the
//! Python string methods real templates call), so a prompt is the one the
//! model was trained on to the byte. A model without a template
//! gets the format its vocabulary was trained for when that can be told from
//! its special tokens (Gemma's `<start_of_turn>`), and ChatML otherwise,
//! which is also what llama.cpp falls back to.
//!
//! A template comes from a model file, which anyone can write, so rendering
//! one is bounded: [`TEMPLATE_FUEL`] instructions per render (loops nested
//! to run for hours stop at once), [`TEMPLATE_RECURSION`] levels of macro
//! calls, [`MAX_TEMPLATE_OUTPUT`] bytes of output, and [`MAX_TEMPLATE_SOURCE`]
//! bytes of source, compiled on a thread with a stack large enough for the
//! deepest expression that much source can write. A template that cannot
//! render a plain conversation within those bounds is refused when the
//! model loads ([`ChatTemplate::with_fallback`]), not at its first request.
//!
//! What these bounds do not cover is memory: a template that grows one
//! string exponentially (`{% set ns.s = ns.s ~ ns.s %}` in a loop)
//! allocates gigabytes before any instruction count or output cap can see
//! it. A program that renders strangers' templates calls
//! [`isolated::isolate`], and renders then run in worker processes with a
//! memory bound ([`isolated`]).

pub mod isolated;
mod transformers;

use minijinja::{Environment, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// ChatML, the fallback for models that carry no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Gemma's turn format, for Gemma models whose file carries no template: a
/// system message goes in front of the first user turn, as Gemma's own
/// template puts it.
pub const GEMMA: &str = "{{ bos_token }}{%- set prefix = '' -%}{%- set turns = messages -%}{%- if messages and messages[0]['role'] == 'system' -%}{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}{%- endif -%}{%- for message in turns -%}{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

/// The template for a model whose file has none, chosen by the special
/// tokens its vocabulary has (`has_token`).
pub fn fallback_template(has_token: impl Fn(&str) -> bool) -> &'static str {
    if has_token("<start_of_turn>") && has_token("<end_of_turn>") {
        GEMMA
    } else {
        CHATML
    }
}

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering an assistant's tool call.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One turn of a conversation, as chat templates read it (`role`,
/// `content`, and for tool use `tool_calls` and `tool_call_id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// The tools an assistant's turn called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call a tool's result answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool whose result this is (on a tool's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// A call of a tool, in the shape chat templates read (OpenAI's, with the
/// arguments as an object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: serde_json::Value,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The source, for rendering in a worker process.
    source: String,
    /// Whether the source reads a `tools` variable.
    reads_tools: bool,
    bos_token: String,
    eos_token: String,
    /// The date `strftime_now` prints.
    clock: transformers::Clock,
    /// Whether this is the model's own template or a fallback.
    pub is_fallback: bool,
    /// What the fallback is, for display.
    pub fallback_name: &'static str,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("is_fallback", &self.is_fallback)
            .finish()
    }
}

/// Instructions one render may execute: a chat template renders a
/// conversation of hundreds of messages in a few hundred thousand.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Nested macro calls and includes one render may make.
pub const TEMPLATE_RECURSION: usize = 128;

/// Bytes one render may write: far beyond any context's worth of text.
pub const MAX_TEMPLATE_OUTPUT: usize = 64 << 20;

/// Bytes of template source accepted: real chat templates are under 20 KB.
pub const MAX_TEMPLATE_SOURCE: usize = 256 << 10;

/// Stack for compiling a template: the parser limits nesting, but a long
/// chain of filters (`x|e|e|e…`) is compiled by recursion as deep as the
/// chain is long.
const COMPILE_STACK: usize = 256 << 20;

/// A writer that fails once `limit` bytes have been written.
struct Capped {
    out: String,
    limit: usize,
}

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.out.len() + s.len() > self.limit {
            return Err(std::fmt::Error);
        }
        self.out.push_str(s);
        Ok(())
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = std::str::from_utf8(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        std::fmt::Write::write_str(self, text).map_err(|_| {
            std::io::Error::other(format!(
                "the chat template wrote more than {} MiB",
                self.limit >> 20
            ))
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChatTemplate {
    /// Compiles `source`, or ChatML when `None`.
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        Self::with_fallback(source, CHATML, bos_token, eos_token)
    }

    /// Compiles `source`, or `fallback` when `None`.
    pub fn with_fallback(
        source: Option<&str>,
        fallback: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate> {
        let mut template = ChatTemplate::compile(source.unwrap_or(fallback), bos_token, eos_token)?;
        template.is_fallback = source.is_none();
        template.fallback_name = if fallback == GEMMA {
            "Gemma's turn format"
        } else {
            "ChatML"
        };
        template.smoke_render()?;
        Ok(template)
    }

    /// Compiles `text`, without trying it.
    fn compile(text: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        if text.len() > MAX_TEMPLATE_SOURCE {
            return Err(EngineError::Template(format!(
                "the model's chat template is {} KiB, more than the {} KiB lucid accepts",
                text.len() >> 10,
                MAX_TEMPLATE_SOURCE >> 10
            )));
        }
        let owned = text.to_string();
        let clock = transformers::Clock::new();
        let env_clock = clock.clone();
        let compile = move || {
            let mut env: Environment<'static> = transformers::environment(env_clock);
            env.set_fuel(Some(TEMPLATE_FUEL));
            env.set_recursion_limit(TEMPLATE_RECURSION);
            env.add_template_owned("chat", owned).map(|()| env)
        };
        let env = std::thread::Builder::new()
            .name("chat-template".into())
            .stack_size(COMPILE_STACK)
            .spawn(compile)
            .map_err(|e| EngineError::Template(format!("cannot compile the chat template: {e}")))?
            .join()
            .map_err(|_| EngineError::Template("compiling the chat template failed".into()))?
            .map_err(|e| {
                EngineError::Template(format!("the model's chat template does not compile: {e}"))
            })?;
        Ok(ChatTemplate {
            env,
            reads_tools: text.contains("tools"),
            source: text.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            clock,
            is_fallback: false,
            fallback_name: "ChatML",
        })
    }

    /// The same template, printing `year-month-day` as today's date
    /// (`strftime_now`, which Llama 3.2's, Mistral Small 3's and gpt-oss's
    /// templates call) instead of the clock's: for prompts that must not
    /// change from one day to the next (tests, reproducible runs).
    pub fn with_date(self, year: i64, month: u32, day: u32) -> Result<ChatTemplate> {
        let days = transformers::days_from_civil(year, month, day).ok_or_else(|| {
            EngineError::Template(format!("{year}-{month:02}-{day:02} is not a date"))
        })?;
        self.clock.pin(Some(days));
        Ok(self)
    }

    /// Renders a short conversation, so a template that cannot (it loops
    /// past its fuel, raises on every input, writes without bound) is
    /// refused when the model loads. A template may refuse a system
    /// message (Gemma 2's raise an exception), so one without is tried too.
    fn smoke_render(&self) -> Result<()> {
        let user = ChatMessage::new(Role::User, "Hello");
        let reply = ChatMessage::new(Role::Assistant, "Hi! How can I help?");
        let system = ChatMessage::new(Role::System, "You are a helpful assistant.");
        let with_system = [system, user.clone(), reply.clone(), user.clone()];
        let without = [user.clone(), reply, user];
        match self.render(&with_system, true) {
            Ok(_) => Ok(()),
            Err(first) => self.render(&without, true).map(|_| ()).map_err(|_| {
                EngineError::Template(format!(
                    "the model's chat template cannot render a short conversation: {first}"
                ))
            }),
        }
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending where
    /// the assistant's reply begins.
    /// The render runs in a worker process once [`isolated::isolate`] has
    /// been called, and here otherwise.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with `tools` (OpenAI's tool list) in the
    /// template's `tools` variable.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        isolated::render(self, messages, tools, add_generation_prompt)
            .unwrap_or_else(|| self.render_here(messages, tools, add_generation_prompt))
    }

    /// Whether the template reads a `tools` variable, i.e. renders tools
    /// its own way (else [`crate::tools`] writes them into the conversation).
    pub fn reads_tools(&self) -> bool {
        self.reads_tools
    }

    /// Renders in this process.
    fn render_here(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(e.to_string()))?;
        let mut out = Capped {
            out: String::new(),
            limit: MAX_TEMPLATE_OUTPUT,
        };
        tmpl.render_captured_to(
            context! {
                messages => Value::from_serialize(messages),
                // `none` without tools, and `documents` always `none`, as
                // transformers passes them: `tools is defined` is true
                // there, and templates are written against that.
                tools => tools.map_or(Value::from(()), Value::from_serialize),
                documents => Value::from(()),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
            &mut out,
        )
        .map_err(|e| EngineError::Template(format!("rendering failed: {}", describe(&e))))?;
        Ok(out.out)
    }
}

/// A render error, saying which bound was hit when one was.
fn describe(e: &minijinja::Error) -> String {
    match e.kind() {
        ErrorKind::OutOfFuel => format!(
            "the chat template ran more than {TEMPLATE_FUEL} instructions (a runaway loop?)"
        ),
        ErrorKind::InvalidOperation if e.to_string().contains("recursion") => {
            format!("the chat template nests calls deeper than {TEMPLATE_RECURSION} levels")
        }
        ErrorKind::WriteFailure => format!(
            "the chat template wrote more than {} MiB",
            MAX_TEMPLATE_OUTPUT >> 20
        ),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SmolLM2-135M-Instruct's template, as its GGUF carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_adds_its_default_system_prompt() {
        let t = ChatTemplate::new(Some(SMOLLM2), "<|im_start|>", "<|im_end|>").unwrap();
        let out = t
            .render(&[ChatMessage::new(Role::User, "Hi")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn fallback_is_chatml_and_multi_turn() {
        let t = ChatTemplate::new(None, "", "").unwrap();
        assert!(t.is_fallback);
        let msgs = [
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hi"),
            ChatMessage::new(Role::Assistant, "Hello."),
            ChatMessage::new(Role::User, "Bye"),
        ];
        let out = t.render(&msgs, true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_fallback_puts_the_system_message_in_the_first_user_turn() {
        let t = ChatTemplate::with_fallback(None, GEMMA, "<bos>", "<eos>").unwrap();
        let msgs = [
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hi "),
            ChatMessage::new(Role::Assistant, "Hello."),
            ChatMessage::new(Role::User, "Bye"),
        ];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            fallback_template(|t| t == "<start_of_turn>" || t == "<end_of_turn>"),
            GEMMA
        );
        assert_eq!(fallback_template(|_| false), CHATML);
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% for m in messages %}{{ m['content'].strip() }}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}{% endfor %}";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new(Role::User, "  x  ")], false)
                .unwrap(),
            "x"
        );
        let err = t
            .render(&[ChatMessage::new(Role::System, "s")], false)
            .unwrap_err();
        assert!(err.to_string().contains("no system"), "{err}");
    }

    /// transformers' environment: `trim_blocks` and `lstrip_blocks`,
    /// `{% continue %}` and `{% break %}`, and `tools` and `documents`
    /// defined as `None` when not given. The expected text is
    /// transformers 5.25's render of the same template.
    #[test]
    fn renders_in_transformers_environment() {
        let src = "{% for m in messages %}\n    {% if m.role == \"user\" %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n\
                   {% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}\
                   |{{ tools is defined }}{{ tools is none }}{{ documents is none }}";
        let t = ChatTemplate::new(Some(src), "", "").unwrap();
        let msgs = [
            ChatMessage::new(Role::User, "a"),
            ChatMessage::new(Role::Assistant, "b"),
        ];
        assert_eq!(t.render(&msgs, false).unwrap(), "[a]\n02|TrueTrueTrue");
    }

    #[test]
    fn a_pinned_date_is_what_strftime_now_prints() {
        let t = ChatTemplate::new(Some("{{ strftime_now('%d %b %Y') }}"), "", "")
            .unwrap()
            .with_date(2025, 3, 5)
            .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "05 Mar 2025");
        let t = ChatTemplate::new(Some("x"), "", "").unwrap();
        assert!(t.with_date(2025, 2, 30).is_err());
    }

    /// Hostile templates from a model file end in an error within their
    /// bounds, never a hang, a stack overflow or an abort.
    #[test]
    fn hostile_templates_are_refused_at_load() {
        let nested_loops = "{% for a in range(100000) %}{% for b in range(100000) %}\
                            {{ a }}{% endfor %}{% endfor %}";
        let recursive_macro = "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}";
        let exponential_macro = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}\
                                 {% endif %}{% endmacro %}{{ f(20) }}";
        let huge_output = "{% for a in range(100000) %}{{ 'x' * 10000 }}{% endfor %}";
        for (what, source) in [
            ("nested loops", nested_loops.to_owned()),
            ("recursive macro", recursive_macro.to_owned()),
            ("exponential macro", exponential_macro.to_owned()),
            ("huge output", huge_output.to_owned()),
        ] {
            let start = std::time::Instant::now();
            let err = ChatTemplate::new(Some(&source), "", "").unwrap_err();
            let secs = start.elapsed().as_secs_f64();
            assert!(err.to_string().contains("chat template"), "{what}: {err}");
            assert!(secs < 10.0, "{what} took {secs:.1} s");
            eprintln!("{what}: refused in {secs:.2} s: {err}");
        }
        let too_long = "x".repeat(MAX_TEMPLATE_SOURCE + 1);
        assert!(ChatTemplate::new(Some(&too_long), "", "").is_err());
        // As long a chain of filters as the source limit allows compiles
        // (on the compiler's own large stack) and renders.
        let chained = format!("{{{{ 'A'{} }}}}", "|e".repeat(MAX_TEMPLATE_SOURCE / 2 - 10));
        let t = ChatTemplate::new(Some(&chained), "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "A");
    }

    #[test]
    fn a_template_that_fails_only_on_some_input_loads_and_fails_then() {
        let t = ChatTemplate::new(
            Some("{% for m in messages %}{% if m.content == 'boom' %}{{ raise_exception('no boom') }}{% endif %}{{ m.content }}{% endfor %}"),
            "",
            "",
        )
        .unwrap();
        let err = t
            .render(&[ChatMessage::new(Role::User, "boom")], true)
            .unwrap_err();
        assert!(err.to_string().contains("no boom"), "{err}");
    }

    #[test]
    fn a_broken_template_is_a_clear_error() {
        let err = ChatTemplate::new(Some("{% for %}"), "", "").unwrap_err();
        assert!(err.to_string().contains("chat template"), "{err}");
    }
}
