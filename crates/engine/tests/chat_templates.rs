//! Real chat templates render with lucid exactly as Hugging Face
//! transformers renders them (`apply_chat_template(..., tokenize=False)`):
//! every conversation of every golden in `tests/goldens/templates/`, made by
//! `scripts/goldens/templates/make_template_goldens.py`, byte for byte. A
//! conversation the template refused under transformers (it raised) must
//! fail here too, with the template's own message.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use lucid_engine::chat::{ChatMessage, ChatTemplate};
use serde::Deserialize;
use serde_json::Value;

/// Every family whose template is held to transformers' output; a golden
/// missing from the directory fails the test rather than passing unseen.
const GOLDENS: &[&str] = &[
    "qwen2.5",
    "qwen3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "mistral-nemo",
    "mistral-small-3.2",
    "phi3.5",
    "gemma2",
    "gpt-oss",
];

#[derive(Deserialize)]
struct Golden {
    transformers: String,
    jinja2: String,
    /// The day `strftime_now` printed, `YYYY-MM-DD`.
    date: String,
    /// `bos_token` and `eos_token`, each left out where the model's
    /// tokenizer has none.
    variables: Variables,
    chat_template: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Variables {
    bos_token: Option<String>,
    eos_token: Option<String>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    /// As transformers received them; read into lucid's `ChatMessage`.
    messages: Vec<Value>,
    tools: Option<Value>,
    add_generation_prompt: bool,
    rendered: Option<String>,
    raises: Option<String>,
}

fn goldens_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/goldens/templates")
}

fn load(name: &str) -> Golden {
    let path = goldens_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The messages as lucid's type, checked to say exactly what transformers
/// was given: a field lucid's `ChatMessage` dropped or reordered would
/// make the comparison meaningless.
fn messages(case: &Case) -> Vec<ChatMessage> {
    case.messages
        .iter()
        .map(|m| {
            let message: ChatMessage = serde_json::from_value(m.clone())
                .unwrap_or_else(|e| panic!("{}: {m}: {e}", case.name));
            let back = serde_json::to_string(&message).unwrap();
            assert_eq!(
                back,
                m.to_string(),
                "{}: lucid's message differs",
                case.name
            );
            message
        })
        .collect()
}

fn template(golden: &Golden) -> ChatTemplate {
    let vars = &golden.variables;
    let template = ChatTemplate::new(
        Some(&golden.chat_template),
        vars.bos_token.as_deref().unwrap_or(""),
        vars.eos_token.as_deref().unwrap_or(""),
    )
    .expect("the template compiles");
    let date: Vec<&str> = golden.date.split('-').collect();
    let [y, m, d] = date.as_slice() else {
        panic!("a date that is not YYYY-MM-DD: {}", golden.date)
    };
    template
        .with_date(y.parse().unwrap(), m.parse().unwrap(), d.parse().unwrap())
        .unwrap()
}

/// Where two renders part: the byte offset, line and column of the first
/// difference and the text around it on each side.
fn diff(expected: &str, got: &str) -> String {
    let at = expected
        .char_indices()
        .zip(got.chars())
        .find(|((_, a), b)| a != b)
        .map_or(expected.len().min(got.len()), |((i, _), _)| i);
    let line = expected[..at].matches('\n').count() + 1;
    let column = at - expected[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    let context = |s: &str| {
        let mut start = at.saturating_sub(60);
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 60).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        format!(
            "{:?} ⟨here⟩ {:?}",
            &s[start..at.min(s.len())],
            &s[at.min(s.len())..end]
        )
    };
    format!(
        "first difference at byte {at} (line {line}, column {column}); lengths {} (transformers) and {} (lucid)\n  transformers: {}\n  lucid:        {}",
        expected.len(),
        got.len(),
        context(expected),
        context(got),
    )
}

#[test]
fn templates_render_as_transformers_renders_them() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for &name in GOLDENS {
        let golden = load(name);
        let template = template(&golden);
        for case in &golden.cases {
            let what = format!(
                "{name} / {} (add_generation_prompt={})",
                case.name, case.add_generation_prompt
            );
            let result = template.render_with_tools(
                &messages(case),
                case.tools.as_ref(),
                case.add_generation_prompt,
            );
            checked += 1;
            match (&case.rendered, &case.raises, result) {
                (Some(expected), None, Ok(got)) if *expected == got => {}
                (Some(expected), None, Ok(got)) => {
                    failures.push(format!("{what}: {}", diff(expected, &got)));
                }
                (Some(_), None, Err(e)) => {
                    failures.push(format!("{what}: transformers renders it, lucid fails: {e}"));
                }
                (None, Some(raised), Err(e)) if e.to_string().contains(raised.as_str()) => {}
                (None, Some(raised), Err(e)) => failures.push(format!(
                    "{what}: transformers raised {raised:?}, lucid failed otherwise: {e}"
                )),
                (None, Some(raised), Ok(got)) => failures.push(format!(
                    "{what}: transformers raised {raised:?}, lucid rendered {got:?}"
                )),
                _ => panic!("{what}: a case needs one of `rendered` and `raises`"),
            }
        }
        eprintln!(
            "{name}: {} cases (transformers {}, jinja2 {})",
            golden.cases.len(),
            golden.transformers,
            golden.jinja2
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} renders differ from transformers':\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The goldens in the directory are the ones listed, so a new golden is not
/// left unchecked.
#[test]
fn every_golden_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(goldens_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = GOLDENS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}
