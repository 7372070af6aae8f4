//! The interactive chat of `lucid run MODEL` (no prompt): one user turn per
//! line (or a `"""` block), replies streamed, slash commands handled here and
//! never sent to the model, and Ctrl-C that stops a reply without leaving.
//!
//! Ctrl-C while a reply is generated stops that reply (what was written so
//! far stays in the conversation); at the prompt it says how to leave, and a
//! second Ctrl-C in a row leaves (exit status 130, as a shell's).
//!
//! At a terminal the lines are read with a line editor (arrows, Ctrl-R),
//! and what was typed is kept in `$LUCID_HOME/history` for the next chat.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use anyhow::Context;
use lucid_engine::{ChatMessage, GenerateParams, LoadedModel, Role, Session, StopReason};

use crate::commands::run::{System, stream, warn_if_context_full};

/// What `/help` prints.
const HELP: &str = "/system [TEXT]     show or set the system message (the conversation goes on)
/set [NAME VALUE]  show or change a setting: temperature, top_p, top_k, min_p,
                   repeat_penalty, seed (or `none`), max_tokens
/reset             forget the conversation (the system message stays)
/save FILE         write the conversation to FILE (JSON)
/load FILE         continue the conversation saved in FILE
/bye               leave (also /exit, Ctrl-D, or Ctrl-C twice at the prompt)
/help              this list (also /?)
\"\"\"                begin or end a message of several lines
Ctrl-C stops a reply and keeps the chat. A line starting with / is a
command; anything else goes to the model.";

/// Where Ctrl-C lands: the reply being generated, or the prompt.
#[derive(Default)]
struct Interrupt {
    generating: AtomicBool,
    /// Set by Ctrl-C during a reply; the reply stops at its next token.
    stop_reply: AtomicBool,
    /// Ctrl-C presses at the prompt since the last line was read.
    at_prompt: AtomicU8,
}

impl Interrupt {
    /// Installs the Ctrl-C handler for the rest of the process.
    fn install() -> anyhow::Result<Arc<Interrupt>> {
        let state = Arc::new(Interrupt::default());
        let handler = Arc::clone(&state);
        ctrlc::set_handler(move || handler.pressed()).context("installing the Ctrl-C handler")?;
        Ok(state)
    }

    fn pressed(&self) {
        if self.generating.load(Ordering::SeqCst) {
            self.stop_reply.store(true, Ordering::SeqCst);
            return;
        }
        if self.at_prompt.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!();
            std::process::exit(130);
        }
        eprintln!("\n(Ctrl-C again, /bye or Ctrl-D leaves)");
    }
}

/// Runs the chat until end of input, `/bye` or a second Ctrl-C.
pub fn chat(
    model: &LoadedModel,
    session: &mut Session<'_>,
    params: &GenerateParams,
    system: &System,
) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let interrupt = Interrupt::install()?;
    if interactive {
        eprintln!(
            "Chatting with {}. /help lists the commands, /bye or Ctrl-D leaves.",
            model.meta.name
        );
    }
    let mut chat = Chat {
        model,
        params: params.clone(),
        system: system.clone(),
        history: system.first_messages(),
    };
    let mut input = if interactive {
        Input::terminal(history_path())?
    } else {
        Input::Piped(std::io::stdin().lock().lines())
    };
    let mut interrupted_at_prompt = false;
    loop {
        let line = match input.read(">>> ")? {
            Line::Text(line) => line,
            Line::End => break,
            // The line editor reads Ctrl-C as a key: the same rule as the
            // handler's when no editor runs.
            Line::Interrupted if interrupted_at_prompt => {
                eprintln!();
                std::process::exit(130);
            }
            Line::Interrupted => {
                interrupted_at_prompt = true;
                eprintln!("(Ctrl-C again, /bye or Ctrl-D leaves)");
                continue;
            }
        };
        interrupted_at_prompt = false;
        interrupt.at_prompt.store(0, Ordering::SeqCst);
        let mut text = line.trim().to_string();
        if let Some(first) = text.strip_prefix("\"\"\"") {
            text = read_block(first, &mut input)?;
        }
        if text.is_empty() {
            continue;
        }
        if text.starts_with('/') {
            match chat.command(&text, session) {
                Ok(Flow::Leave) => break,
                Ok(Flow::Stay) => {}
                Err(e) => eprintln!("{e:#}"),
            }
            continue;
        }
        chat.history.push(ChatMessage::new(Role::User, text));
        let tokens = chat.system.prompt(model, &chat.history)?;
        interrupt.stop_reply.store(false, Ordering::SeqCst);
        interrupt.generating.store(true, Ordering::SeqCst);
        let generated = stream(session, &tokens, &chat.params, || {
            interrupt.stop_reply.swap(false, Ordering::SeqCst)
        });
        interrupt.generating.store(false, Ordering::SeqCst);
        let generated = match generated {
            Ok(g) => g,
            Err(e) => {
                // The turn is dropped, the chat goes on (a setting the
                // sampler refuses, a conversation larger than the context).
                chat.history.pop();
                eprintln!("lucid: {e:#}");
                continue;
            }
        };
        if generated.stop == StopReason::Cancelled {
            eprintln!("(reply stopped)");
        }
        warn_if_context_full(&generated, session.context_limit());
        chat.history
            .push(ChatMessage::new(Role::Assistant, generated.text));
    }
    Ok(())
}

/// The lines of a `"""` block after its opening line (`first`, what
/// followed the quotes), up to the line that ends with `"""`.
fn read_block(first: &str, input: &mut Input) -> anyhow::Result<String> {
    let mut block = Vec::new();
    let mut current = first.to_string();
    loop {
        if let Some(end) = current.strip_suffix("\"\"\"") {
            block.push(end.to_string());
            break;
        }
        block.push(current);
        match input.read("... ")? {
            Line::Text(line) => current = line,
            // End of input closes the block; Ctrl-C drops it.
            Line::End => break,
            Line::Interrupted => return Ok(String::new()),
        }
    }
    Ok(block.join("\n").trim().to_string())
}

/// Where the chat's lines come from.
enum Input {
    /// A terminal: a line editor, with the history of earlier chats.
    Terminal {
        editor: Box<rustyline::DefaultEditor>,
        history: Option<PathBuf>,
    },
    /// A pipe or a file: plain lines, no prompts.
    Piped(std::io::Lines<std::io::StdinLock<'static>>),
}

/// One read from [`Input`].
enum Line {
    Text(String),
    /// Ctrl-C at the prompt (only the line editor reports it; elsewhere the
    /// Ctrl-C handler sees it).
    Interrupted,
    End,
}

/// Lines kept in the history file.
const HISTORY_LINES: usize = 1000;

impl Input {
    fn terminal(history: Option<PathBuf>) -> anyhow::Result<Input> {
        let config = rustyline::Config::builder()
            .max_history_size(HISTORY_LINES)
            .context("configuring the line editor")?
            .auto_add_history(false)
            .build();
        let mut editor =
            rustyline::DefaultEditor::with_config(config).context("starting the line editor")?;
        if let Some(path) = &history
            && path.exists()
            && let Err(e) = editor.load_history(path)
        {
            eprintln!(
                "lucid: the chat history {} was not read: {e}",
                path.display()
            );
        }
        Ok(Input::Terminal {
            editor: Box::new(editor),
            history,
        })
    }

    fn read(&mut self, prompt: &str) -> anyhow::Result<Line> {
        match self {
            Input::Piped(lines) => match lines.next() {
                Some(line) => Ok(Line::Text(line.context("reading stdin")?)),
                None => Ok(Line::End),
            },
            Input::Terminal { editor, history } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        remember(editor, history, &line);
                    }
                    Ok(Line::Text(line))
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Ok(Line::Interrupted),
                Err(rustyline::error::ReadlineError::Eof) => Ok(Line::End),
                Err(e) => Err(e).context("reading the terminal"),
            },
        }
    }
}

/// Adds a line to the history and writes the history file at once, so that
/// a chat that ends any way (Ctrl-C twice, a closed terminal) keeps it. A
/// file that cannot be written is said once and then left alone.
fn remember(editor: &mut rustyline::DefaultEditor, history: &mut Option<PathBuf>, line: &str) {
    // Refused only for a duplicate of the last entry or an empty line.
    let _ = editor.add_history_entry(line);
    if let Some(path) = history.as_deref()
        && let Err(e) = editor.save_history(path)
    {
        eprintln!(
            "lucid: the chat history is not kept: writing {} failed: {e}",
            path.display()
        );
        *history = None;
    }
}

/// `$LUCID_HOME/history`, or none where the store has no home.
fn history_path() -> Option<PathBuf> {
    let store = lucid_store::Store::open_default().ok()?;
    Some(store.home().join("history"))
}

/// What the chat loop does after a command.
enum Flow {
    Stay,
    Leave,
}

/// The conversation and the settings the commands change.
struct Chat<'m> {
    model: &'m LoadedModel,
    params: GenerateParams,
    system: System,
    history: Vec<ChatMessage>,
}

impl Chat<'_> {
    fn command(&mut self, line: &str, session: &mut Session<'_>) -> anyhow::Result<Flow> {
        let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match name {
            "/bye" | "/exit" => return Ok(Flow::Leave),
            "/help" | "/?" => eprintln!("{HELP}"),
            "/reset" => {
                self.history.retain(|m| m.role == Role::System);
                session.reset();
                eprintln!("(conversation cleared)");
            }
            "/system" if rest.is_empty() => match self.system_message() {
                Some(s) => eprintln!("{s}"),
                None => eprintln!("(no system message)"),
            },
            "/system" => {
                self.system = System::Given(rest.to_string());
                self.history.retain(|m| m.role != Role::System);
                self.history
                    .insert(0, ChatMessage::new(Role::System, rest.to_string()));
                eprintln!("(system message set)");
            }
            "/set" if rest.is_empty() => eprintln!("{}", self.settings()),
            "/set" => {
                let (key, value) = rest
                    .split_once(' ')
                    .context("/set takes a name and a value: /set temperature 0.7")?;
                self.set(key, value.trim())?;
                eprintln!("({key} = {})", value.trim());
            }
            "/save" if !rest.is_empty() => {
                save(Path::new(rest), &self.history)?;
                eprintln!("(conversation saved to {rest})");
            }
            "/load" if !rest.is_empty() => {
                self.history = load(Path::new(rest))?;
                if let Some(s) = self.history.iter().find(|m| m.role == Role::System) {
                    self.system = System::Given(s.content.clone());
                }
                let n = self.history.len();
                let plural = if n == 1 { "" } else { "s" };
                eprintln!("(conversation loaded from {rest}: {n} message{plural})");
            }
            "/save" | "/load" => anyhow::bail!("{name} takes a file name: {name} chat.json"),
            _ => anyhow::bail!("unknown command {name}; /help lists them"),
        }
        Ok(Flow::Stay)
    }

    /// The system message the conversation is run with.
    fn system_message(&self) -> Option<String> {
        match &self.system {
            System::Given(s) => Some(s.clone()),
            System::ModelDefault => self.model.defaults.system.clone(),
            System::TemplateOwn => None,
        }
    }

    fn settings(&self) -> String {
        let s = &self.params.sampling;
        format!(
            "temperature {}\ntop_p {}\ntop_k {}\nmin_p {}\nrepeat_penalty {}\nseed {}\nmax_tokens {}",
            s.temperature,
            s.top_p,
            s.top_k,
            s.min_p,
            s.repeat_penalty,
            s.seed.map_or("none".to_string(), |s| s.to_string()),
            self.params.max_tokens
        )
    }

    /// Changes one setting; a value the sampler would refuse is refused
    /// here, and the settings stay as they were.
    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let number = || -> anyhow::Result<f32> {
            value
                .parse()
                .with_context(|| format!("{key} takes a number, not {value:?}"))
        };
        let count = || -> anyhow::Result<usize> {
            value
                .parse()
                .with_context(|| format!("{key} takes a whole number, not {value:?}"))
        };
        let mut params = self.params.clone();
        let s = &mut params.sampling;
        match key {
            "temperature" => s.temperature = number()?,
            "top_p" => s.top_p = number()?,
            "min_p" => s.min_p = number()?,
            "repeat_penalty" => s.repeat_penalty = number()?,
            "top_k" => s.top_k = count()?,
            "seed" if value == "none" => s.seed = None,
            "seed" => {
                s.seed = Some(
                    value
                        .parse()
                        .with_context(|| format!("seed takes a whole number, not {value:?}"))?,
                )
            }
            "max_tokens" => params.max_tokens = count()?,
            _ => anyhow::bail!("no setting {key}; /set lists them"),
        }
        params.sampling.validate()?;
        self.params = params;
        Ok(())
    }
}

/// How a conversation is saved: the messages, as chat APIs write them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    messages: Vec<ChatMessage>,
}

fn save(path: &Path, history: &[ChatMessage]) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(&Saved {
        messages: history.to_vec(),
    })?;
    std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn load(path: &Path) -> anyhow::Result<Vec<ChatMessage>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let saved: Saved = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a saved conversation ({{\"messages\": [{{\"role\": …, \"content\": …}}]}})",
            path.display()
        )
    })?;
    Ok(saved.messages)
}
