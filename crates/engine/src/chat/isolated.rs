//! Rendering chat templates in worker processes with a memory bound.
//!
//! Fuel, recursion and output bounds stop every runaway a template can
//! write but one: a string or list that doubles in a loop reaches gigabytes
//! in a few dozen instructions, and an allocation that fails aborts the
//! process that made it. A program that renders templates for others (a
//! server, a CLI loading a stranger's model) therefore calls [`isolate`]
//! once at start: from then on every render runs in a worker process (the
//! same program, started with an argument that makes it call [`serve`]),
//! which limits its own memory to [`WORKER_MEMORY`]. A worker that runs out
//! dies alone; the render that drove it fails with an error naming the
//! bound, and the next render starts a fresh worker.
//!
//! Without [`isolate`] (a library user, unit tests) templates render in the
//! calling process, with every bound but memory.
//!
//! The protocol is one JSON line per request on the worker's stdin and one
//! JSON line per reply on its stdout. Workers keep the templates they have
//! compiled and are kept for the next render. At most [`MAX_WORKERS`] run
//! at once, so a crowd of hostile requests holds at most
//! `MAX_WORKERS × WORKER_MEMORY` of memory; a render waits for a free
//! worker, which is soon, since each render is bounded in time by its fuel.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Serialize};

use super::{ChatMessage, ChatTemplate};
use crate::error::{EngineError, Result};

/// Address space a worker may map, all of it (its program, the compiler's
/// large stack, its heap): a worker rendering a real template peaks near
/// 420 MiB, nearly all of it reserved and never touched.
pub const WORKER_MEMORY: u64 = 1 << 30;

/// Workers alive at once, busy or idle.
pub const MAX_WORKERS: usize = 4;

/// Compiled templates a worker keeps (a server usually has one or two).
const WORKER_CACHE: usize = 8;

/// How to start a worker, once [`isolate`] has said so.
static WORKERS: OnceLock<Workers> = OnceLock::new();

/// From now on, renders run in workers started as `program args…`, which
/// must call [`serve`] on its stdin and stdout after limiting its memory to
/// [`WORKER_MEMORY`]. Only the first call counts.
pub fn isolate(program: PathBuf, args: Vec<OsString>) {
    let _ = WORKERS.set(Workers {
        program,
        args,
        pool: Mutex::new(Pool::default()),
        freed: Condvar::new(),
    });
}

/// What the parent sends: the template by its source, so a worker needs no
/// state to answer.
#[derive(Serialize)]
struct RequestRef<'a> {
    source: &'a str,
    bos_token: &'a str,
    eos_token: &'a str,
    messages: &'a [ChatMessage],
    tools: Option<&'a serde_json::Value>,
    add_generation_prompt: bool,
    /// The day `strftime_now` prints (days since 1970-01-01), when pinned.
    date: Option<i64>,
}

#[derive(Deserialize)]
struct Request {
    source: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<ChatMessage>,
    tools: Option<serde_json::Value>,
    add_generation_prompt: bool,
    #[serde(default)]
    date: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Prompt(String),
    Failed(String),
}

/// The worker's loop: answers each request line until its input ends.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut cache: Vec<(String, String, String, ChatTemplate)> = Vec::new();
    for line in input.lines() {
        let reply = match serde_json::from_str::<Request>(&line?) {
            Err(e) => Reply::Failed(format!("a malformed render request: {e}")),
            Ok(req) => {
                let found = cache.iter().position(|(source, bos, eos, _)| {
                    *source == req.source && *bos == req.bos_token && *eos == req.eos_token
                });
                let template = match found {
                    Some(i) => Ok(&cache[i].3),
                    None => ChatTemplate::compile(&req.source, &req.bos_token, &req.eos_token).map(
                        |t| {
                            if cache.len() == WORKER_CACHE {
                                cache.remove(0);
                            }
                            cache.push((req.source, req.bos_token, req.eos_token, t));
                            &cache[cache.len() - 1].3
                        },
                    ),
                };
                match template.and_then(|t| {
                    t.clock.pin(req.date);
                    t.render_here(&req.messages, req.tools.as_ref(), req.add_generation_prompt)
                }) {
                    Ok(prompt) => Reply::Prompt(prompt),
                    Err(e) => Reply::Failed(e.to_string()),
                }
            }
        };
        let mut text = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
        text.push('\n');
        output.write_all(text.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// Renders through a worker when [`isolate`] was called; `None` otherwise.
pub(super) fn render(
    template: &ChatTemplate,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
) -> Option<Result<String>> {
    let workers = WORKERS.get()?;
    Some(workers.render(&RequestRef {
        source: &template.source,
        bos_token: &template.bos_token,
        eos_token: &template.eos_token,
        messages,
        tools,
        add_generation_prompt,
        date: template.clock.pinned(),
    }))
}

struct Workers {
    program: PathBuf,
    args: Vec<OsString>,
    pool: Mutex<Pool>,
    /// Signalled when a worker is returned or one ends.
    freed: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Worker>,
    /// Workers started and not ended, busy or idle.
    alive: usize,
}

impl Workers {
    fn render(&self, request: &RequestRef<'_>) -> Result<String> {
        let line = serde_json::to_string(request)
            .map_err(|e| EngineError::Template(format!("cannot send the render request: {e}")))?;
        // A worker may have been ended from outside while it waited (a
        // signal, the OOM killer): the render is tried once more on a new
        // one. One that ran out of memory is not tried again.
        let mut last = String::new();
        for _ in 0..2 {
            let mut worker = self.take()?;
            let answer = worker.ask(&line);
            let mut pool = self.lock();
            let result = match answer {
                Ok(Reply::Prompt(prompt)) => Ok(prompt),
                Ok(Reply::Failed(why)) => Err(EngineError::Template(why)),
                Err(_) => {
                    pool.alive -= 1;
                    drop(pool);
                    self.freed.notify_one();
                    let (why, out_of_memory) = worker.death();
                    if out_of_memory {
                        return Err(EngineError::Template(why));
                    }
                    last = why;
                    continue;
                }
            };
            pool.idle.push(worker);
            self.freed.notify_one();
            return result;
        }
        Err(EngineError::Template(last))
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle worker, a new one while fewer than [`MAX_WORKERS`] live, or
    /// the next one returned.
    fn take(&self) -> Result<Worker> {
        let mut pool = self.lock();
        loop {
            if let Some(worker) = pool.idle.pop() {
                return Ok(worker);
            }
            if pool.alive < MAX_WORKERS {
                pool.alive += 1;
                drop(pool);
                let started = self.spawn();
                if started.is_err() {
                    self.lock().alive -= 1;
                    self.freed.notify_one();
                }
                return started;
            }
            pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn spawn(&self) -> Result<Worker> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // In a process group of its own, so that the terminal's Ctrl-C
        // (which stops a reply in the chat) does not end the worker too; it
        // ends when this process closes its input.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| {
            EngineError::Template(format!(
                "cannot start a chat-template worker ({}): {e}",
                self.program.display()
            ))
        })?;
        match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => Ok(Worker {
                child,
                stdin,
                stdout: BufReader::new(stdout),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(EngineError::Template(
                    "a chat-template worker started without its pipes".into(),
                ))
            }
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn ask(&mut self, line: &str) -> std::io::Result<Reply> {
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        let mut answer = String::new();
        if self.stdout.read_line(&mut answer)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }

    /// Why a worker stopped answering, from its exit and its last words,
    /// and whether it ran out of memory.
    fn death(&mut self) -> (String, bool) {
        let status = self.child.wait();
        let mut last_words = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            let _ = stderr.take(4096).read_to_string(&mut last_words);
        }
        if last_words.contains("memory allocation") {
            let why = format!(
                "the chat template needed more than the {} MiB of memory a render may use \
                 (a string or list grown without bound?)",
                WORKER_MEMORY >> 20
            );
            return (why, true);
        }
        let how = match status {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        };
        let said = last_words.lines().last().unwrap_or("").trim();
        let why = format!("the chat template's render process stopped ({how}) {said}");
        (why.trim_end().to_string(), false)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;

    fn ask(source: &str, messages: &[ChatMessage]) -> Reply {
        let line = serde_json::to_string(&RequestRef {
            source,
            bos_token: "<s>",
            eos_token: "</s>",
            messages,
            tools: None,
            add_generation_prompt: true,
            date: None,
        })
        .unwrap();
        let mut out = Vec::new();
        serve(format!("{line}\n{line}\n").as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let replies: Vec<Reply> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(replies.len(), 2, "{text}");
        replies.into_iter().next().unwrap()
    }

    /// A worker renders exactly as the calling process would, and reports
    /// a template's failure as its text.
    #[test]
    fn a_worker_renders_as_the_caller_would() {
        let messages = [ChatMessage::new(Role::User, "Hello")];
        let source =
            "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}";
        let here = ChatTemplate::new(Some(source), "<s>", "</s>")
            .unwrap()
            .render_here(&messages, None, true)
            .unwrap();
        match ask(source, &messages) {
            Reply::Prompt(p) => assert_eq!(p, here),
            Reply::Failed(e) => panic!("{e}"),
        }
        match ask("{{ raise_exception('no') }}", &messages) {
            Reply::Failed(e) => assert!(e.contains("no"), "{e}"),
            Reply::Prompt(p) => panic!("rendered {p:?}"),
        }
        let mut out = Vec::new();
        serve("not json\n".as_bytes(), &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("malformed"));
    }

    /// A template's pinned date travels with the request; the next request
    /// without one gets the clock's, though the worker kept the template.
    #[test]
    fn a_worker_prints_the_pinned_date() {
        let source = "{{ strftime_now('%Y-%m-%d') }}";
        let request = |date| {
            serde_json::to_string(&RequestRef {
                source,
                bos_token: "",
                eos_token: "",
                messages: &[],
                tools: None,
                add_generation_prompt: true,
                date,
            })
            .unwrap()
        };
        let pinned = request(super::super::transformers::days_from_civil(2025, 3, 5));
        let mut out = Vec::new();
        serve(
            format!("{pinned}\n{}\n", request(None)).as_bytes(),
            &mut out,
        )
        .unwrap();
        let replies: Vec<Reply> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        match &replies[..] {
            [Reply::Prompt(first), Reply::Prompt(second)] => {
                assert_eq!(first, "2025-03-05");
                assert_ne!(second, "2025-03-05");
            }
            _ => panic!("two prompts expected"),
        }
    }
}
