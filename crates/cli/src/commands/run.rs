//! `lucid run`: run a model on a prompt, or chat with it.
//!
//! With a prompt, the answer streams to stdout (or, with `--json`, one JSON
//! object is printed at the end). Without one, an interactive chat reads
//! turns from stdin and keeps the conversation; the session's cache reuses
//! the conversation so far, so each turn only processes what is new.
//!
//! A model named `provider:model` (`openai:gpt-4o-mini`, `anthropic:…`,
//! `gemini:…`, `compat:NAME`) is reached through `lucid-providers` with the
//! same options and the same streaming.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::Context;
use lucid_engine::{
    ChatMessage, GenerateParams, Generated, LoadedModel, Role, SamplingParams, Session, StopReason,
};
use serde::Serialize;

use crate::local;

#[derive(clap::Args)]
pub struct Args {
    /// A catalog name (`smollm2`, `gemma3`) or a path to a model file.
    model: String,
    /// The prompt; without one, start an interactive chat.
    prompt: Option<String>,
    /// Complete the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Print one JSON object with the tokens, text and timings instead of
    /// streaming (for a `provider:model`: the text, finish reason and usage,
    /// asked for in one request that does not stream).
    #[arg(long)]
    json: bool,
    /// A system message for the chat (default: the catalog's for the model;
    /// `--system ""` for the chat template's own).
    #[arg(long)]
    system: Option<String>,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Sampling temperature; 0 always picks the most likely token (default:
    /// the catalog's for the model, else 0.8).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Keep the most likely tokens whose probabilities add up to p (default:
    /// the catalog's for the model, else 0.95).
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Drop tokens less likely than min-p times the most likely one.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05)]
    min_p: f32,
    /// Penalize tokens seen recently (1: off).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Threads for the forward pass (default: the cores available).
    #[arg(long)]
    threads: Option<usize>,
    /// Largest context in tokens (default: the model's).
    #[arg(long)]
    ctx_size: Option<usize>,
    /// Keep generating past the model's end-of-generation tokens (up to
    /// --max-tokens or the context).
    #[arg(long)]
    ignore_eos: bool,
    /// Print control tokens (`<|im_end|>`, `<end_of_turn>`) as their text;
    /// by default they are left out of the output.
    #[arg(long)]
    show_special: bool,
    #[command(flatten)]
    draft: local::DraftArgs,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    model: &'a str,
    prompt_tokens: &'a [u32],
    tokens: &'a [u32],
    text: &'a str,
    finish_reason: &'static str,
    timings: JsonTimings,
}

#[derive(Serialize)]
struct JsonTimings {
    prefill_tokens: usize,
    prefill_ms: f64,
    prefill_tokens_per_s: f64,
    decode_tokens: usize,
    decode_ms: f64,
    decode_tokens_per_s: f64,
    /// Tokens guessed with --draft, and how many the model kept.
    draft_tokens: usize,
    draft_accepted: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Ok(remote) = lucid_providers::ModelRef::parse(&args.model)
        && !matches!(remote, lucid_providers::ModelRef::Local { .. })
    {
        return run_remote(&args);
    }
    let local::Local { model, entry, .. } = local::load_local(&args.model)?;
    anyhow::ensure!(
        model.model.role() == lucid_engine::ModelRole::Generator,
        "{} is an embedding model ({}): it turns text into vectors and does not generate; \
         use `lucid embed {}` (or `lucid explain` to compare texts)",
        args.model,
        model.model.info().architecture,
        args.model
    );
    if !args.raw {
        warn_if_base(&model, entry);
    }
    let defaults = &model.defaults;
    let threads = args.threads.unwrap_or_else(local::default_threads);
    let mut session = Session::new(&model, threads, args.ctx_size);
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature.or(defaults.temperature).unwrap_or(0.8),
            top_k: args.top_k,
            top_p: args.top_p.or(defaults.top_p).unwrap_or(0.95),
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            seed: args.seed,
            ..SamplingParams::default()
        },
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
        show_special: args.show_special,
        draft: args.draft.drafting(),
    };
    // An explicit empty system message means "the template's own".
    let system = match &args.system {
        Some(s) if s.is_empty() => System::TemplateOwn,
        Some(s) => System::Given(s.clone()),
        None => System::ModelDefault,
    };
    match &args.prompt {
        Some(prompt) => {
            let tokens = if args.raw {
                model.raw_prompt(prompt)?
            } else {
                let mut messages = system.first_messages();
                messages.push(ChatMessage::new(Role::User, prompt.clone()));
                system.prompt(&model, &messages)?
            };
            let generated = if args.json {
                session.generate(&tokens, &params, |_| ControlFlow::Continue(()))?
            } else {
                stream(&mut session, &tokens, &params, || false)?
            };
            if args.json {
                print_json(&args.model, &generated)?;
            }
            warn_if_context_full(&generated, session.context_limit());
            Ok(())
        }
        None => crate::chat::chat(&model, &mut session, &params, &system),
    }
}

/// Says once, before a chat, that the model was never trained to chat: the
/// catalog marks it as a base model, or its file has no chat template. Its
/// replies to a chat template are then often nonsense, and `--raw` is what
/// it was trained for.
fn warn_if_base(model: &LoadedModel, entry: Option<&lucid_catalog::ModelEntry>) {
    let why = match entry.and_then(|e| e.tuning) {
        Some(lucid_catalog::Tuning::Base) => "is a base (pre-trained) model, not trained to chat",
        Some(lucid_catalog::Tuning::Instruct) => return,
        None if model.template.is_fallback => "has no chat template of its own (a base model?)",
        None => return,
    };
    eprintln!(
        "lucid: {} {why}: its chat replies are often nonsense. \
         --raw completes a text as the model was trained to.",
        model.meta.name
    );
}

/// `lucid run provider:model`: the same request through a vendor's API or an
/// OpenAI-compatible endpoint.
fn run_remote(args: &Args) -> anyhow::Result<()> {
    use futures::StreamExt;
    use lucid_providers::{ChatEvent, ChatRequest, Message};

    let Some(prompt) = &args.prompt else {
        anyhow::bail!(
            "an interactive chat needs a local model; give a prompt for {}",
            args.model
        );
    };
    if args.raw {
        anyhow::bail!(
            "--raw is a local-model option: {} takes chat messages",
            args.model
        );
    }
    for (given, flag) in [
        (args.ignore_eos, "--ignore-eos"),
        (args.show_special, "--show-special"),
        (args.draft.draft.is_some(), "--draft"),
    ] {
        if given {
            anyhow::bail!(
                "{flag} is a local-model option: {}'s provider decides how it generates, where a reply ends and what it shows",
                args.model
            );
        }
    }
    let config = lucid_providers::Config::default_path().filter(|p| p.is_file());
    let router = lucid_providers::Router::from_env_and_config(config.as_deref())
        .context("reading the providers configuration")?;
    let mut messages = Vec::new();
    if let Some(s) = args.system.as_ref().filter(|s| !s.is_empty()) {
        messages.push(Message::system(s.clone()));
    }
    messages.push(Message::user(prompt.clone()));
    let mut req = ChatRequest::new(args.model.clone(), messages);
    req.params.max_tokens = Some(args.max_tokens as u32);
    req.params.temperature = args.temperature;
    req.params.top_p = args.top_p;
    req.params.seed = args.seed.map(|s| s as i64);
    req.params.stop = args.stop.clone();
    // `--json` prints one object at the end, so it asks for the answer in
    // one piece; otherwise the text streams to stdout as it comes.
    req.stream = !args.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.json {
            let answer = router.chat(&req).await?;
            return print_remote_json(&args.model, &answer);
        }
        let mut stream = router.chat_stream(&req).await?;
        let mut out = std::io::stdout().lock();
        while let Some(event) = stream.next().await {
            if let ChatEvent::Delta { text, .. } = event?
                && out
                    .write_all(text.as_bytes())
                    .and_then(|_| out.flush())
                    .is_err()
            {
                // The reader went away (`lucid run … | head`): dropping the
                // stream closes the connection, which cancels the request.
                return Ok(());
            }
        }
        let _ = writeln!(out);
        Ok(())
    })
}

/// `lucid run provider:model --json`'s output.
fn print_remote_json(model: &str, answer: &lucid_providers::ChatResponse) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "model": model,
            "text": answer.text,
            "finish_reason": answer.finish_reason.name(),
            "usage": answer.usage.map(|u| serde_json::json!({
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
            })),
        }))?
    );
    Ok(())
}

/// The prompt tokens of a conversation, rendered with the model's template.
/// Says on stderr when a reply was cut because the context filled up: the
/// answer is incomplete, and nothing else would tell.
pub(crate) fn warn_if_context_full(generated: &Generated, limit: usize) {
    if generated.stop == StopReason::ContextFull {
        eprintln!(
            "\nlucid: the reply stopped because the context of {limit} tokens is full; \
             a larger --ctx-size lets it go on"
        );
    }
}

/// Which system message a conversation starts with.
#[derive(Clone)]
pub(crate) enum System {
    /// The model's default, if it has one (`LoadedModel::chat_prompt`).
    ModelDefault,
    /// None: the chat template's own (`--system ""`).
    TemplateOwn,
    Given(String),
}

impl System {
    /// The messages a conversation starts with.
    pub(crate) fn first_messages(&self) -> Vec<ChatMessage> {
        match self {
            System::Given(s) => vec![ChatMessage::new(Role::System, s.clone())],
            System::ModelDefault | System::TemplateOwn => Vec::new(),
        }
    }

    /// The prompt tokens of `messages`, built as every entry point builds
    /// them.
    pub(crate) fn prompt(
        &self,
        model: &LoadedModel,
        messages: &[ChatMessage],
    ) -> anyhow::Result<Vec<u32>> {
        Ok(match self {
            System::TemplateOwn => model.encode_prompt(&model.template.render(messages, true)?)?,
            System::ModelDefault | System::Given(_) => model.chat_prompt(messages)?,
        })
    }
}

/// Generates, writing the text to stdout as it comes, until the model
/// stops, a limit is reached, the reader goes away or `stop_now` says so.
pub(crate) fn stream(
    session: &mut Session<'_>,
    tokens: &[u32],
    params: &GenerateParams,
    mut stop_now: impl FnMut() -> bool,
) -> anyhow::Result<Generated> {
    let mut out = std::io::stdout().lock();
    let mut broken_pipe = false;
    let generated = session.generate(tokens, params, |event| {
        if out
            .write_all(event.text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            // The reader went away (`lucid run … | head`): stop generating.
            broken_pipe = true;
            return ControlFlow::Break(());
        }
        if stop_now() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if !broken_pipe {
        let _ = writeln!(out);
    }
    Ok(generated)
}

fn print_json(model: &str, g: &Generated) -> anyhow::Result<()> {
    let t = &g.timings;
    let out = JsonOutput {
        model,
        prompt_tokens: &g.prompt_tokens,
        tokens: &g.tokens,
        text: &g.text,
        finish_reason: match g.stop {
            StopReason::MaxTokens | StopReason::ContextFull => "length",
            StopReason::EndOfGeneration | StopReason::StopString => "stop",
            StopReason::Cancelled => "cancelled",
        },
        timings: JsonTimings {
            prefill_tokens: t.prefill_tokens,
            prefill_ms: t.prefill.as_secs_f64() * 1e3,
            prefill_tokens_per_s: t.prefill_tokens_per_s(),
            decode_tokens: t.decode_tokens,
            decode_ms: t.decode.as_secs_f64() * 1e3,
            decode_tokens_per_s: t.decode_tokens_per_s(),
            draft_tokens: t.drafted,
            draft_accepted: t.draft_accepted,
        },
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
