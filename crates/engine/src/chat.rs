//! Chat templates: turning a conversation into the prompt text a model was
//! trained on, with the template the model file carries.
//!
//! Templates are Jinja, as in Hugging Face's `tokenizer_config.json`, and
//! rendered with minijinja plus the Python string methods (`strip`,
//! `startswith`, …) that real templates call. A model without a template
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

fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// Today's date (UTC) in the few `strftime` codes chat templates use:
/// `%d`, `%m`, `%Y`, `%b`, `%B`, `%%`. Other codes are kept as written.
fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format_date(format, y, m, d)
}

fn format_date(format: &str, y: i64, m: u32, d: u32) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m as usize).saturating_sub(1).min(11)];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
        let compile = move || {
            let mut env = Environment::new();
            env.set_fuel(Some(TEMPLATE_FUEL));
            env.set_recursion_limit(TEMPLATE_RECURSION);
            env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            env.add_function("raise_exception", raise_exception);
            env.add_function("strftime_now", |format: String| strftime_now(&format));
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
            is_fallback: false,
            fallback_name: "ChatML",
        })
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
                // Left undefined without tools, as templates test
                // `tools is defined` as often as `tools`.
                tools => tools.map_or(Value::UNDEFINED, Value::from_serialize),
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

    #[test]
    fn dates_for_templates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(format_date("%d %b %Y", 2024, 7, 26), "26 Jul 2024");
        assert_eq!(format_date("%B %m %% %q", 2024, 12, 1), "December 12 % %q");
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
