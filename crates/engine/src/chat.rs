//! Chat templates: turning a conversation into the prompt text a model was
//! trained on, with the template the model file carries.
//!
//! Templates are Jinja, as in Hugging Face's `tokenizer_config.json`, and
//! rendered with minijinja plus the Python string methods (`strip`,
//! `startswith`, …) that real templates call. A model without a template
//! gets the format its vocabulary was trained for when that can be told from
//! its special tokens (Gemma's `<start_of_turn>`), and ChatML otherwise,
//! which is also what llama.cpp falls back to.

use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
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
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |format: String| strftime_now(&format));
        env.add_template_owned("chat", source.unwrap_or(fallback).to_string())
            .map_err(|e| {
                EngineError::Template(format!("the model's chat template does not compile: {e}"))
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            is_fallback: source.is_none(),
            fallback_name: if fallback == GEMMA {
                "Gemma's turn format"
            } else {
                "ChatML"
            },
        })
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending where
    /// the assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| EngineError::Template(format!("rendering failed: {e}")))
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

    #[test]
    fn a_broken_template_is_a_clear_error() {
        let err = ChatTemplate::new(Some("{% for %}"), "", "").unwrap_err();
        assert!(err.to_string().contains("chat template"), "{err}");
    }
}
