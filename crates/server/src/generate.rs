//! Running local generations for a handler: submitting `n` copies of a
//! request, merging their event streams into one tagged by choice index,
//! recording metrics as events pass, and collecting them for non-streamed
//! answers. Shared by the OpenAI and Ollama handlers and the local provider.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;

use futures::stream::{self, SelectAll, Stream, StreamExt};
use lucid_engine::StopReason;
use lucid_scheduler::{Event, Finished, Generation, Request, Token};

use crate::error::ApiError;
use crate::state::{AppState, LocalModel};

/// One choice's events, tagged with its index.
pub type Tagged = Pin<Box<dyn Stream<Item = (usize, Event)> + Send>>;

/// Submits `n` generations of `req` (seeded ones get seeds `seed`, `seed+1`,
/// ...); all or none. `prompt_param` names the prompt's field for errors.
pub fn submit_n(
    model: &LocalModel,
    req: &Request,
    n: usize,
    prompt_param: &str,
) -> Result<Vec<Generation>, ApiError> {
    submit_each(model, vec![req.clone(); n], prompt_param)
}

/// Submits one generation per request, the `i`-th seeded `seed + i` when
/// seeded; all or none.
pub fn submit_each(
    model: &LocalModel,
    reqs: Vec<Request>,
    prompt_param: &str,
) -> Result<Vec<Generation>, ApiError> {
    let mut gens = Vec::with_capacity(reqs.len());
    for (i, mut r) in reqs.into_iter().enumerate() {
        if let Some(seed) = r.sampling.seed {
            r.sampling.seed = Some(seed.wrapping_add(i as u64));
        }
        // On error the generations already queued are dropped, which
        // cancels them.
        gens.push(
            model
                .scheduler
                .submit(r)
                .map_err(|e| ApiError::from_scheduler(e, prompt_param))?,
        );
    }
    Ok(gens)
}

/// The generations' events merged, each tagged with its choice index
/// (`first_index + i`), recording metrics on the way.
pub fn merge(
    state: &AppState,
    model: &str,
    gens: Vec<Generation>,
    first_index: usize,
) -> SelectAll<Tagged> {
    let mut all = SelectAll::new();
    for (i, g) in gens.into_iter().enumerate() {
        let state = state.clone();
        let model = model.to_owned();
        let mut first = true;
        let mut guard = DisconnectGuard {
            state: state.clone(),
            model: model.clone(),
            finished: false,
        };
        let s: Tagged = Box::pin(g.map(move |e| {
            // Use the guard as a whole so the closure owns it (a closure
            // that only names a field would capture just that field, and the
            // guard would be dropped here, at once).
            let guard = &mut guard;
            match &e {
                Event::Token(t) => {
                    if first {
                        state.metrics().first_token(&model, t.latency);
                        first = false;
                    } else {
                        state.metrics().token(&model, t.latency);
                    }
                }
                Event::Finished(f) => {
                    guard.finished = true;
                    state
                        .metrics()
                        .finished(&model, reason_label(f.reason), &f.usage);
                    // A model's keep-alive counts from the end of its last request.
                    state.served_models().renew(&model);
                }
                Event::Failed(_) => {
                    guard.finished = true;
                    state.served_models().renew(&model);
                }
            }
            (first_index + i, e)
        }));
        all.push(s);
    }
    all
}

/// Counts a generation whose consumer went away before its end (a client
/// that disconnected) as cancelled: its `Finished` event is never read.
struct DisconnectGuard {
    state: AppState,
    model: String,
    finished: bool,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.metrics().cancelled(&self.model);
        }
    }
}

/// What one choice amounted to.
#[derive(Debug, Default)]
pub struct Collected {
    pub text: String,
    pub tokens: Vec<Token>,
    pub finished: Option<Finished>,
}

/// Reads merged streams to the end; an engine failure, or a choice the
/// server stopped before its end ([`ApiError::cut_off`]), fails the request.
pub async fn collect(mut merged: SelectAll<Tagged>, n: usize) -> Result<Vec<Collected>, ApiError> {
    let mut out: Vec<Collected> = (0..n).map(|_| Collected::default()).collect();
    while let Some((i, e)) = merged.next().await {
        let Some(c) = out.get_mut(i) else { continue };
        match e {
            Event::Token(t) => {
                c.text.push_str(&t.text);
                c.tokens.push(t);
            }
            Event::Finished(f) => {
                c.text.push_str(&f.tail);
                c.finished = Some(f);
            }
            Event::Failed(e) => return Err(ApiError::from_scheduler(e, "prompt")),
        }
    }
    // A choice the server cut short, or whose stream ended without a
    // finish, is not a reply.
    if out.iter().any(|c| {
        c.finished
            .as_ref()
            .is_none_or(|f| f.reason == StopReason::Cancelled)
    }) {
        return Err(ApiError::cut_off());
    }
    Ok(out)
}

/// The finish reason on the wire (OpenAI's `finish_reason`, Ollama's
/// `done_reason`). A cancelled generation is never sent as finished (see
/// [`collect`] and the streaming handlers); should one reach here it says
/// so rather than claim `stop`.
pub fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::EndOfGeneration | StopReason::StopString => "stop",
        StopReason::Cancelled => "cancelled",
    }
}

/// The finish reason for metrics labels, which keeps cancellations apart.
pub fn reason_label(r: StopReason) -> &'static str {
    match r {
        StopReason::Cancelled => "cancelled",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::EndOfGeneration | StopReason::StopString => "stop",
    }
}

/// Turns merged events into a stream of output items (SSE events, NDJSON
/// lines): `step` is called with each event, and once with `None` at the
/// end, and pushes what to send. `out` holds items to send first.
pub fn drive<T, F>(
    mut merged: SelectAll<Tagged>,
    mut out: VecDeque<T>,
    mut step: F,
) -> impl Stream<Item = T> + Send
where
    T: Send,
    F: FnMut(Option<(usize, Event)>, &mut VecDeque<T>) + Send,
{
    let mut done = false;
    stream::poll_fn(move |cx| {
        loop {
            if let Some(x) = out.pop_front() {
                return Poll::Ready(Some(x));
            }
            if done {
                return Poll::Ready(None);
            }
            match merged.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(e)) => step(Some(e), &mut out),
                Poll::Ready(None) => {
                    step(None, &mut out);
                    done = true;
                }
            }
        }
    })
}
