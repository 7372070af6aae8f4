//! The scheduler: one thread per model that owns the forward context and
//! runs every active sequence's next step in one batched forward pass.
//!
//! Requests arrive through [`Scheduler::submit`] from any thread and wait in
//! a FIFO queue. Each iteration of the scheduler thread:
//!
//! 1. resumes preempted sequences, then admits queued requests while there
//!    is a free sequence slot and the KV-cache budget has room for the
//!    request's prompt plus [`GROW_POSITIONS`] (or its `max_tokens`, if
//!    smaller), evicting prefix-cache entries if that makes room; a request
//!    starts from the longest cached prefix of its prompt. A request that
//!    does not fit may be passed by later ones that do, at most
//!    [`MAX_PASSES`] times, so one large request neither blocks the small
//!    ones behind it nor waits for ever;
//! 2. drops sequences whose consumer has gone (the [`Generation`] was dropped
//!    or cancelled), freeing their caches;
//! 3. grows the reservation of every decoding sequence that reached it, by
//!    [`GROW_POSITIONS`]; when the budget has no room even after evicting
//!    prefix-cache entries, the youngest sequence is preempted: its cache
//!    is freed, and it reads its prompt and what it generated again when
//!    room returns (as vLLM's recompute preemption), so the output is the
//!    same;
//! 4. builds one batch: one token for every decoding sequence, then chunks
//!    of the prompts still being read (at most `prefill_chunk` tokens in all
//!    while others decode, `max_batch_tokens` when nobody does), so a long
//!    prompt is read over several steps instead of stalling everyone's
//!    decoding;
//! 5. runs the forward pass, samples a token for every sequence that got
//!    logits, and sends it to its consumer; finished sequences hand their
//!    cache to the prefix cache.
//!
//! Batching does not change results: every matrix row and every
//! sequence's attention is computed the same whatever else is in the batch,
//! and attention reads keys and values from the (half-precision) cache even
//! for the tokens of the current chunk, so a greedy generation is the same
//! alone, batched or read in different chunks. A test holds it to that.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lucid_engine::{
    DraftPace, Drafting, ForwardCtx, GenerateParams, Hooks, LoadedModel, ModelRole, SeqInput,
    Sequence, StopReason,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::SchedulerError;
use crate::json::{JsonConstraint, TokenTable};
use crate::logprobs::logprobs;
use crate::prefix_cache::PrefixCache;
use crate::request::{CancelHandle, Event, Finished, Generation, Request, Timings, Token, Usage};

/// Limits and sizes of one model's scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Sequences generating at once (one batch row each while decoding).
    pub max_sequences: usize,
    /// Requests that may wait beyond `max_sequences`; more are refused
    /// with [`SchedulerError::Busy`].
    pub max_queue: usize,
    /// Bytes of KV cache for active sequences and the prefix cache together.
    pub kv_cache_bytes: usize,
    /// Threads for the forward pass.
    pub threads: usize,
    /// Most tokens in one forward pass when nobody is decoding.
    pub max_batch_tokens: usize,
    /// Most prompt tokens in one forward pass while others are decoding.
    pub prefill_chunk: usize,
    /// Finished sequences' caches kept for prefix reuse.
    pub prefix_cache_entries: usize,
    /// Shortest shared prefix worth reusing.
    pub min_prefix_reuse: usize,
    /// Context length per sequence (the model's when `None` or larger).
    pub context: Option<usize>,
    /// Speculative decoding for sequences decoding while at most
    /// [`DRAFT_MAX_DECODERS`] are (a larger batch already uses the compute
    /// that checking guesses would).
    pub draft: Drafting,
}

/// Sequences decoding at once beyond which nobody drafts.
pub const DRAFT_MAX_DECODERS: usize = 2;

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_sequences: 16,
            max_queue: 64,
            kv_cache_bytes: 1 << 30,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_batch_tokens: 512,
            prefill_chunk: 128,
            prefix_cache_entries: 8,
            min_prefix_reuse: 8,
            context: None,
            draft: Drafting::Off,
        }
    }
}

/// A snapshot of the scheduler's load, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests waiting: generations for a sequence slot, embedding and
    /// scoring requests for their passes.
    pub queued: usize,
    /// Sequences being read or generated, and embedding or scoring requests
    /// whose passes are running.
    pub active: usize,
    /// Bytes of keys and values held (active sequences and prefix cache).
    pub kv_cache_bytes: usize,
    /// Bytes reserved for active sequences' worst case.
    pub kv_reserved_bytes: usize,
    /// The budget.
    pub kv_budget_bytes: usize,
    pub prefix_cache_entries: usize,
    pub prefix_cache_bytes: usize,
    /// Prompt tokens not recomputed thanks to the prefix cache, in total.
    pub prefix_reused_tokens: u64,
    /// Forward passes run, in total.
    pub steps: u64,
    /// Tokens run through the model, in total.
    pub batch_tokens: u64,
    /// Sequences preempted for KV-cache room, in total.
    pub preemptions: u64,
    /// Tokens guessed by speculative decoding, in total.
    pub draft_tokens: u64,
    /// Guesses the model agreed with, in total.
    pub draft_accepted: u64,
}

/// A request waiting for admission.
struct Pending {
    id: u64,
    req: Request,
    max_new: usize,
    /// Bytes of KV cache reserved at admission.
    reserve: usize,
    /// Later requests admitted while this one waited at the head.
    passed: usize,
    tx: mpsc::UnboundedSender<Event>,
    cancel: CancelHandle,
    submitted: Instant,
}

/// What to compute for each input of an [`EmbedRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedTask {
    /// One vector per input, pooled and normalized as the model's
    /// embedding configuration says.
    Embed,
    /// The classification head's outputs on each input's `[CLS]` row: a
    /// cross-encoder's relevance scores for query/document pairs.
    Classify,
}

/// Inputs to embed or score, already tokenized. Inputs of every queued
/// request share forward passes.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbedRequest {
    pub task: EmbedTask,
    pub inputs: Vec<Vec<u32>>,
    /// Each input's token segments (text pairs); empty for single texts.
    pub types: Vec<Vec<u32>>,
}

/// One vector per input: the embedding, or the classifier's outputs.
pub type EmbedResult = Result<Vec<Vec<f32>>, SchedulerError>;

struct EmbedJob {
    req: EmbedRequest,
    tx: oneshot::Sender<EmbedResult>,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Pending>,
    embeds: VecDeque<EmbedJob>,
    /// Admitted and not yet finished.
    active: usize,
    stopping: bool,
    cancel_all: bool,
}

struct Shared {
    model: Arc<LoadedModel>,
    config: SchedulerConfig,
    table: TokenTable,
    limit: usize,
    bytes_per_position: usize,
    inbox: Mutex<Inbox>,
    wake: Condvar,
    next_id: AtomicU64,
    /// Average seconds from submission to the end, as f64 bits.
    avg_request_secs: AtomicU64,
    active: AtomicUsize,
    /// Embedding and scoring requests whose passes are running.
    embeds_running: AtomicUsize,
    kv_bytes: AtomicUsize,
    kv_reserved: AtomicUsize,
    prefix_entries: AtomicUsize,
    prefix_bytes: AtomicUsize,
    prefix_reused: AtomicU64,
    steps: AtomicU64,
    batch_tokens: AtomicU64,
    preemptions: AtomicU64,
    draft_tokens: AtomicU64,
    draft_accepted: AtomicU64,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // A panic while holding the lock cannot leave the queue half-changed
        // (every change is one push or pop), so a poisoned lock is usable.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Owns the thread: the last handle dropped stops it.
struct Owner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        {
            let mut inbox = self.shared.inbox();
            inbox.stopping = true;
            inbox.cancel_all = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// A handle to one model's scheduler. Cheap to clone; the scheduler thread
/// stops when the last handle is dropped (after cancelling what is left).
#[derive(Clone)]
pub struct Scheduler {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("model", &self.owner.shared.model.meta.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Scheduler {
    /// Starts the scheduler thread for `model`.
    pub fn start(model: Arc<LoadedModel>, config: SchedulerConfig) -> Scheduler {
        let info = model.model.info();
        let probe = model.model.new_cache(config.context);
        let table = TokenTable::new(&model.tokenizer, info.vocab_size);
        let shared = Arc::new(Shared {
            limit: probe.limit(),
            bytes_per_position: probe.bytes_per_position(),
            table,
            config: SchedulerConfig {
                max_sequences: config.max_sequences.max(1),
                threads: config.threads.max(1),
                max_batch_tokens: config.max_batch_tokens.max(1),
                prefill_chunk: config.prefill_chunk.max(1),
                ..config
            },
            model,
            inbox: Mutex::new(Inbox::default()),
            wake: Condvar::new(),
            next_id: AtomicU64::new(1),
            avg_request_secs: AtomicU64::new(1.0f64.to_bits()),
            active: AtomicUsize::new(0),
            embeds_running: AtomicUsize::new(0),
            kv_bytes: AtomicUsize::new(0),
            kv_reserved: AtomicUsize::new(0),
            prefix_entries: AtomicUsize::new(0),
            prefix_bytes: AtomicUsize::new(0),
            prefix_reused: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            batch_tokens: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            draft_tokens: AtomicU64::new(0),
            draft_accepted: AtomicU64::new(0),
        });
        let worker = shared.clone();
        let name = format!("lucid-sched-{}", shared.model.meta.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(&worker))
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the scheduler thread");
            shared.inbox().stopping = true;
        }
        Scheduler {
            owner: Arc::new(Owner {
                shared,
                thread: Mutex::new(thread),
            }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.owner.shared
    }

    /// The model this scheduler runs.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.shared().model
    }

    /// The context length of a sequence, in tokens.
    pub fn context_limit(&self) -> usize {
        self.shared().limit
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.shared().config
    }

    /// Queues a generation. Fails at once, without queueing, when the
    /// request cannot run (prompt too long, bad parameters, needs more KV
    /// cache than the budget) or the queue is full.
    pub fn submit(&self, req: Request) -> Result<Generation, SchedulerError> {
        let s = self.shared();
        if s.model.model.role() == ModelRole::Encoder {
            return Err(SchedulerError::Unsupported(format!(
                "{} is an embedding model ({}): it does not generate text",
                s.model.meta.name,
                s.model.model.info().architecture
            )));
        }
        let n = req.prompt.len();
        if n == 0 {
            return Err(SchedulerError::EmptyPrompt);
        }
        if n + 1 > s.limit {
            return Err(SchedulerError::PromptTooLong {
                prompt_tokens: n,
                limit: s.limit,
            });
        }
        let vocab = s.table.len();
        if let Some(bad) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(SchedulerError::InvalidParams(format!(
                "token id {bad} is outside the vocabulary of {vocab} tokens"
            )));
        }
        req.sampling
            .validate()
            .map_err(|e| SchedulerError::InvalidParams(e.to_string()))?;
        let bpp = s.bytes_per_position.max(1);
        let budget_positions = s.config.kv_cache_bytes / bpp;
        let mut max_new = req.max_tokens.unwrap_or(usize::MAX).min(s.limit - n);
        if n + max_new > budget_positions {
            if req.max_tokens.is_some() || n + 1 > budget_positions {
                return Err(SchedulerError::TooLarge {
                    needed_mib: ((n + max_new) * bpp).div_ceil(1 << 20),
                    positions: n + max_new,
                    limit_mib: s.config.kv_cache_bytes >> 20,
                });
            }
            // No limit asked for: generate as far as the budget allows.
            max_new = budget_positions - n;
        }
        let reserve = (n + max_new.min(GROW_POSITIONS)) * bpp;
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancelHandle::default();
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut inbox = s.inbox();
            if inbox.stopping {
                return Err(SchedulerError::Stopped);
            }
            let in_flight = inbox.queue.len() + inbox.active;
            if in_flight >= s.config.max_sequences + s.config.max_queue {
                let avg = f64::from_bits(s.avg_request_secs.load(Ordering::Relaxed));
                let waves = inbox.queue.len() as f64 / s.config.max_sequences as f64 + 1.0;
                let secs = (avg * waves).ceil().clamp(1.0, 60.0);
                return Err(SchedulerError::Busy {
                    retry_after: Duration::from_secs(secs as u64),
                    queued: inbox.queue.len(),
                });
            }
            inbox.queue.push_back(Pending {
                id,
                max_new,
                reserve,
                passed: 0,
                tx,
                cancel: cancel.clone(),
                submitted: Instant::now(),
                req,
            });
        }
        s.wake.notify_one();
        tracing::debug!(id, prompt_tokens = n, max_new, "queued");
        Ok(Generation {
            id,
            rx,
            cancel,
            prompt_tokens: n,
        })
    }

    /// Queues inputs to embed or score; the answer comes on the returned
    /// channel once they have run, in passes shared with other queued
    /// embedding requests, between generation steps. Fails at once for an
    /// empty or too long input, an id outside the vocabulary, or a full
    /// queue.
    pub fn embed(
        &self,
        req: EmbedRequest,
    ) -> Result<oneshot::Receiver<EmbedResult>, SchedulerError> {
        let s = self.shared();
        let vocab = s.table.len();
        if !req.types.is_empty() && req.types.len() != req.inputs.len() {
            return Err(SchedulerError::InvalidParams(format!(
                "{} token-type lists for {} inputs",
                req.types.len(),
                req.inputs.len()
            )));
        }
        for input in &req.inputs {
            if input.is_empty() {
                return Err(SchedulerError::EmptyPrompt);
            }
            if input.len() > s.limit {
                return Err(SchedulerError::InputTooLong {
                    tokens: input.len(),
                    limit: s.limit,
                });
            }
            if let Some(bad) = input.iter().find(|&&t| t as usize >= vocab) {
                return Err(SchedulerError::InvalidParams(format!(
                    "token id {bad} is outside the vocabulary of {vocab} tokens"
                )));
            }
        }
        if req.task == EmbedTask::Classify && s.model.model.n_labels().is_none() {
            return Err(SchedulerError::Unsupported(format!(
                "{} has no classification head: it cannot rerank",
                s.model.meta.name
            )));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut inbox = s.inbox();
            if inbox.stopping {
                return Err(SchedulerError::Stopped);
            }
            if inbox.embeds.len() >= s.config.max_sequences + s.config.max_queue {
                return Err(SchedulerError::Busy {
                    retry_after: Duration::from_secs(1),
                    queued: inbox.embeds.len(),
                });
            }
            inbox.embeds.push_back(EmbedJob { req, tx });
        }
        s.wake.notify_one();
        Ok(rx)
    }

    /// The current load.
    pub fn stats(&self) -> Stats {
        let s = self.shared();
        let queued = {
            let inbox = s.inbox();
            inbox.queue.len() + inbox.embeds.len()
        };
        Stats {
            queued,
            active: s.active.load(Ordering::Relaxed) + s.embeds_running.load(Ordering::Relaxed),
            kv_cache_bytes: s.kv_bytes.load(Ordering::Relaxed),
            kv_reserved_bytes: s.kv_reserved.load(Ordering::Relaxed),
            kv_budget_bytes: s.config.kv_cache_bytes,
            prefix_cache_entries: s.prefix_entries.load(Ordering::Relaxed),
            prefix_cache_bytes: s.prefix_bytes.load(Ordering::Relaxed),
            prefix_reused_tokens: s.prefix_reused.load(Ordering::Relaxed),
            steps: s.steps.load(Ordering::Relaxed),
            batch_tokens: s.batch_tokens.load(Ordering::Relaxed),
            preemptions: s.preemptions.load(Ordering::Relaxed),
            draft_tokens: s.draft_tokens.load(Ordering::Relaxed),
            draft_accepted: s.draft_accepted.load(Ordering::Relaxed),
        }
    }

    /// Cancels every queued and running generation (each ends with
    /// [`StopReason::Cancelled`]); new requests are still accepted.
    pub fn cancel_all(&self) {
        self.shared().inbox().cancel_all = true;
        self.shared().wake.notify_all();
    }

    /// Refuses new requests from now on; running ones go on.
    pub fn stop_accepting(&self) {
        self.shared().inbox().stopping = true;
        self.shared().wake.notify_all();
    }
}

/// One admitted sequence.
struct Seq<'m> {
    id: u64,
    tx: mpsc::UnboundedSender<Event>,
    cancel: CancelHandle,
    /// Tokens, cache, sampler, decoder, stop strings, limits and grammar.
    seq: Sequence<'m>,
    cached_tokens: usize,
    /// Bytes of the budget this sequence holds; it may fill that many
    /// positions before it must grow.
    reserved: usize,
    /// Preempted for cache room: holds nothing, and waits to read its
    /// tokens again.
    preempted: bool,
    logprobs: Option<usize>,
    submitted: Instant,
    admitted: Instant,
    first_token: Option<Instant>,
    last_event: Instant,
    /// Guesses checked in this step (speculative decoding), and how many to
    /// make next.
    draft: Vec<u32>,
    pace: DraftPace,
}

impl Seq<'_> {
    fn pending(&self) -> usize {
        self.seq.pending()
    }

    fn gone(&self) -> bool {
        self.cancel.is_cancelled() || self.tx.is_closed()
    }
}

/// Positions of KV cache reserved beyond a sequence's prompt when it is
/// admitted, and added each time it reaches its reservation.
pub const GROW_POSITIONS: usize = 256;

/// How many later requests may be admitted before one that is waiting for
/// room: then admission waits for it.
pub const MAX_PASSES: usize = 32;

fn run(s: &Shared) {
    let model: &LoadedModel = &s.model;
    let mut ctx = ForwardCtx::new(s.config.threads);
    let mut active: Vec<Seq<'_>> = Vec::new();
    let mut prefix = PrefixCache::new(s.config.prefix_cache_entries, s.config.min_prefix_reuse);
    let mut reserved = 0usize;
    tracing::debug!(model = %model.meta.name, limit = s.limit, "scheduler started");
    loop {
        // Admission, under the inbox lock.
        {
            let mut inbox = s.inbox();
            if inbox.cancel_all {
                inbox.cancel_all = false;
                for p in inbox.queue.drain(..) {
                    p.cancel.cancel();
                    let _ = p.tx.send(Event::Finished(cancelled_before_start(&p)));
                }
                for seq in &active {
                    seq.cancel.cancel();
                }
            }
            while active.is_empty() && inbox.queue.is_empty() && inbox.embeds.is_empty() {
                if inbox.stopping {
                    tracing::debug!(model = %model.meta.name, "scheduler stopped");
                    return;
                }
                inbox = s.wake.wait(inbox).unwrap_or_else(|p| p.into_inner());
                if inbox.cancel_all {
                    inbox.cancel_all = false;
                    for p in inbox.queue.drain(..) {
                        p.cancel.cancel();
                        let _ = p.tx.send(Event::Finished(cancelled_before_start(&p)));
                    }
                }
            }
            // Preempted sequences come back before anyone new starts.
            let waiting = resume(s, &mut active, &mut prefix, &mut reserved);
            let mut i = 0;
            while !waiting && active.len() < s.config.max_sequences && i < inbox.queue.len() {
                let p = &inbox.queue[i];
                if p.cancel.is_cancelled() || p.tx.is_closed() {
                    if let Some(p) = inbox.queue.remove(i) {
                        let _ = p.tx.send(Event::Finished(cancelled_before_start(&p)));
                    }
                    continue;
                }
                let need = p.reserve;
                if !make_room(s, &mut prefix, reserved, need) {
                    // Let a later request that fits pass, unless the head
                    // has been passed often enough.
                    if inbox.queue[0].passed >= MAX_PASSES {
                        break;
                    }
                    i += 1;
                    continue;
                }
                let Some(p) = inbox.queue.remove(i) else {
                    break;
                };
                if i > 0
                    && let Some(head) = inbox.queue.front_mut()
                {
                    head.passed += 1;
                }
                inbox.active += 1;
                reserved += need;
                match admit(s, model, &mut prefix, p) {
                    Ok(seq) => active.push(seq),
                    Err((tx, e)) => {
                        inbox.active -= 1;
                        reserved -= need;
                        let _ = tx.send(Event::Failed(e));
                    }
                }
            }
        }

        // Embedding requests run whole, all together, between steps.
        let jobs: Vec<EmbedJob> = {
            let mut inbox = s.inbox();
            // Counted as running before they leave the queue, so that the
            // load never reads zero in between.
            s.embeds_running
                .store(inbox.embeds.len(), Ordering::Relaxed);
            inbox.embeds.drain(..).collect()
        };
        if !jobs.is_empty() {
            run_embeds(s, model, &mut ctx, jobs);
            s.embeds_running.store(0, Ordering::Relaxed);
        }

        // Consumers that went away: stop within this step.
        let mut i = 0;
        while i < active.len() {
            if active[i].gone() {
                let seq = active.remove(i);
                finish(s, &mut prefix, &mut reserved, seq, StopReason::Cancelled);
            } else {
                i += 1;
            }
        }
        if active.is_empty() {
            publish(s, &active, &prefix, reserved);
            continue;
        }

        step(s, model, &mut ctx, &mut active, &mut prefix, &mut reserved);
        publish(s, &active, &prefix, reserved);
    }
}

/// Runs the inputs of every job in shared passes and answers each job.
fn run_embeds(s: &Shared, model: &LoadedModel, ctx: &mut ForwardCtx, jobs: Vec<EmbedJob>) {
    let jobs: Vec<EmbedJob> = jobs.into_iter().filter(|j| !j.tx.is_closed()).collect();
    let inputs: Vec<&[u32]> = jobs
        .iter()
        .flat_map(|j| j.req.inputs.iter().map(Vec::as_slice))
        .collect();
    if inputs.is_empty() {
        return;
    }
    // Segments only where some job has them; the engine reads an input
    // without any as all segment 0.
    let types: Vec<&[u32]> = if jobs.iter().any(|j| !j.req.types.is_empty()) {
        jobs.iter()
            .flat_map(|j| {
                (0..j.req.inputs.len()).map(|i| j.req.types.get(i).map_or(&[][..], Vec::as_slice))
            })
            .collect()
    } else {
        Vec::new()
    };
    // Which job each input belongs to, and what it asked for.
    let owners: Vec<(usize, EmbedTask)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| std::iter::repeat_n((j, job.req.task), job.req.inputs.len()))
        .collect();
    let config = &model.embedding;
    let mut results: Vec<Vec<Vec<f32>>> = jobs.iter().map(|_| Vec::new()).collect();
    let n_tokens: usize = inputs.iter().map(|i| i.len()).sum();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut cls_rows: Vec<Vec<f32>> = jobs.iter().map(|_| Vec::new()).collect();
        lucid_engine::embed::hidden_states(
            model.model.as_ref(),
            ctx,
            &inputs,
            &types,
            |i, rows, d| {
                let (job, task) = owners[i];
                match task {
                    EmbedTask::Embed => results[job].push(lucid_engine::embed::pool(
                        rows,
                        d,
                        config.pooling,
                        config.normalize,
                    )),
                    EmbedTask::Classify => cls_rows[job].extend_from_slice(&rows[..d]),
                }
            },
        )
        .map_err(|e| e.to_string())?;
        for (j, rows) in cls_rows.iter().enumerate() {
            if jobs[j].req.task != EmbedTask::Classify {
                continue;
            }
            let mut out = Vec::new();
            model
                .model
                .classify(ctx, rows, &mut out)
                .map_err(|e| e.to_string())?;
            let labels = out.len() / jobs[j].req.inputs.len().max(1);
            results[j] = out.chunks(labels.max(1)).map(<[f32]>::to_vec).collect();
        }
        Ok::<(), String>(())
    }));
    s.steps.fetch_add(1, Ordering::Relaxed);
    s.batch_tokens.fetch_add(n_tokens as u64, Ordering::Relaxed);
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("the forward pass panicked".to_string()),
    };
    for (job, result) in jobs.into_iter().zip(results) {
        let answer = match &failure {
            Some(e) => Err(SchedulerError::Engine(e.clone())),
            None => Ok(result),
        };
        let _ = job.tx.send(answer);
    }
}

fn cancelled_before_start(p: &Pending) -> Finished {
    Finished {
        reason: StopReason::Cancelled,
        tail: String::new(),
        stop_string: None,
        usage: Usage {
            prompt_tokens: p.req.prompt.len(),
            ..Usage::default()
        },
        timings: Timings {
            queued: p.submitted.elapsed(),
            ..Timings::default()
        },
    }
}

/// Turns a queued request into a sequence, starting from the longest cached
/// prefix of its prompt.
fn admit<'m>(
    s: &'m Shared,
    model: &'m LoadedModel,
    prefix: &mut PrefixCache,
    p: Pending,
) -> Result<Seq<'m>, (mpsc::UnboundedSender<Event>, SchedulerError)> {
    let prompt = p.req.prompt;
    // The last prompt token always runs, to produce the first logits.
    let (cache, cached) = match prefix.take_for(&prompt, prompt.len() - 1) {
        Some((cache, n)) if cache.limit() == s.limit => (cache, n),
        _ => (model.model.new_cache(s.config.context), 0),
    };
    let params = GenerateParams {
        max_tokens: p.max_new,
        sampling: p.req.sampling,
        stop: p.req.stop,
        ignore_eos: p.req.ignore_eos,
        show_special: false,
        ..GenerateParams::default()
    };
    let seq = match Sequence::new(model, cache, &prompt[..cached], prompt.clone(), &params) {
        Ok(seq) => seq,
        Err(e) => return Err((p.tx, SchedulerError::InvalidParams(e.to_string()))),
    };
    let seq = match p.req.grammar {
        Some(g) => seq.with_constraint(Box::new(JsonConstraint::new(&s.table, g))),
        None => seq,
    };
    s.prefix_reused.fetch_add(cached as u64, Ordering::Relaxed);
    let now = Instant::now();
    tracing::debug!(
        id = p.id,
        cached,
        queued_ms = (now - p.submitted).as_millis() as u64,
        "admitted"
    );
    Ok(Seq {
        id: p.id,
        seq,
        cached_tokens: cached,
        reserved: p.reserve,
        preempted: false,
        logprobs: p.req.logprobs,
        submitted: p.submitted,
        admitted: now,
        first_token: None,
        last_event: p.submitted,
        tx: p.tx,
        cancel: p.cancel,
        draft: Vec::new(),
        pace: s.config.draft.pace(),
    })
}

/// One forward pass over every active sequence, and what follows from it.
fn step<'m>(
    s: &Shared,
    model: &'m LoadedModel,
    ctx: &mut ForwardCtx,
    active: &mut Vec<Seq<'m>>,
    prefix: &mut PrefixCache,
    reserved: &mut usize,
) {
    grow(s, model, active, prefix, reserved);
    let decoding = active
        .iter()
        .filter(|q| !q.preempted && q.pending() == 1)
        .count();
    let mut prefill_budget = if decoding > 0 {
        s.config.prefill_chunk
    } else {
        s.config.max_batch_tokens
    };
    // (index in `active`, tokens to run, wants logits), decoders first.
    let mut plan: Vec<(usize, usize, bool)> = Vec::with_capacity(active.len());
    let bpp = s.bytes_per_position.max(1);
    for (i, q) in active.iter_mut().enumerate() {
        if !q.preempted && q.pending() == 1 {
            q.draft.clear();
            if decoding <= DRAFT_MAX_DECODERS
                && let Drafting::PromptLookup(lookup) = s.config.draft
            {
                // Within the sequence's reservation as well.
                let seq = &q.seq;
                let reserved = (q.reserved / bpp).saturating_sub(seq.tokens().len() + 1);
                let room = seq.draft_room().min(reserved).min(q.pace.next_allowance());
                lookup.draft(seq.tokens(), room, &mut q.draft);
            }
            plan.push((i, 1 + q.draft.len(), true));
        }
    }
    for (i, q) in active.iter().enumerate() {
        let p = q.pending();
        if !q.preempted && p > 1 && prefill_budget > 0 {
            let n = p.min(prefill_budget);
            prefill_budget -= n;
            plan.push((i, n, n == p));
        }
    }
    plan.sort_by_key(|&(i, _, _)| i);
    if plan.is_empty() {
        // Everyone was preempted; they resume at the next admission.
        return;
    }
    let n_tokens: usize = plan.iter().map(|p| p.1).sum();
    let span = tracing::trace_span!("step", seqs = plan.len(), tokens = n_tokens, decoding);
    let _enter = span.enter();

    let result = {
        let mut inputs: Vec<SeqInput<'_>> = Vec::with_capacity(plan.len());
        let mut k = 0;
        for (i, q) in active.iter_mut().enumerate() {
            if k < plan.len() && plan[k].0 == i {
                inputs.push(if q.draft.is_empty() {
                    q.seq.input(plan[k].1)
                } else {
                    q.seq.input_with_draft(&q.draft)
                });
                k += 1;
            }
        }
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            model
                .model
                .forward(ctx, &mut inputs, &mut Hooks::none())
                .map_err(|e| e.to_string())
        }))
    };
    s.steps.fetch_add(1, Ordering::Relaxed);
    s.batch_tokens.fetch_add(n_tokens as u64, Ordering::Relaxed);
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(panic) => Some(
            panic
                .downcast_ref::<&str>()
                .map(|m| (*m).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the forward pass panicked".to_owned()),
        ),
    };
    if let Some(message) = failure {
        // The batch's sequences cannot go on (their caches may be half
        // written); the others, and the scheduler, can.
        tracing::error!(error = %message, seqs = plan.len(), "forward pass failed");
        for &(i, _, _) in plan.iter().rev() {
            let seq = active.remove(i);
            *reserved -= seq.reserved;
            release_slot(s);
            let _ = seq
                .tx
                .send(Event::Failed(SchedulerError::Engine(message.clone())));
        }
        return;
    }

    // The logits rows come in the plan's order: one for a sequence that
    // wants them, one more per guess it drafted.
    let mut done: Vec<(usize, StopReason)> = Vec::new();
    let mut row = 0;
    for (b, &(i, _, wants)) in plan.iter().enumerate() {
        if !wants {
            continue;
        }
        let q = &mut active[i];
        let guesses = std::mem::take(&mut q.draft);
        let mut kept = 0;
        for r in 0..=guesses.len() {
            let Some(logits) = ctx
                .logit_rows()
                .get(row + r)
                .filter(|l| l.seq == b)
                .map(|_| ctx.logits_row(row + r))
            else {
                break;
            };
            if let Some(reason) = sample(q, logits) {
                done.push((i, reason));
                break;
            }
            match guesses.get(r) {
                Some(&guess) if q.seq.generated().last() == Some(&guess) => kept += 1,
                _ => break,
            }
        }
        row += guesses.len() + 1;
        if !guesses.is_empty() {
            q.pace.record(guesses.len(), kept);
            q.seq.settle();
            s.draft_tokens
                .fetch_add(guesses.len() as u64, Ordering::Relaxed);
            s.draft_accepted.fetch_add(kept as u64, Ordering::Relaxed);
        }
        q.draft = guesses;
    }
    for &(i, reason) in done.iter().rev() {
        let seq = active.remove(i);
        finish(s, prefix, reserved, seq, reason);
    }
}

/// Chooses and reports the next token; returns why the sequence ends, if it does.
fn sample(q: &mut Seq<'_>, logits: &[f32]) -> Option<StopReason> {
    let Some(id) = q.seq.sample(logits) else {
        // The constraint allows no token of this vocabulary: end here
        // rather than emit invalid output.
        return Some(StopReason::EndOfGeneration);
    };
    let now = Instant::now();
    if q.first_token.is_none() {
        q.first_token = Some(now);
    }
    let accepted = q.seq.accept(id);
    let lp = q.logprobs.map(|k| logprobs(logits, id, k));
    let latency = now - q.last_event;
    q.last_event = now;
    if q.tx
        .send(Event::Token(Token {
            id,
            text: accepted.text,
            logprobs: lp,
            latency,
        }))
        .is_err()
    {
        return Some(StopReason::Cancelled);
    }
    accepted.stop
}

/// Reports the end of a sequence and hands its cache to the prefix cache.
fn finish(
    s: &Shared,
    prefix: &mut PrefixCache,
    reserved: &mut usize,
    mut q: Seq<'_>,
    reason: StopReason,
) {
    *reserved -= q.reserved;
    let tail = q.seq.finish(reason);
    let prompt_tokens = q.seq.prompt_len();
    let completion_tokens = q.seq.generated().len();
    let now = Instant::now();
    let first = q.first_token.unwrap_or(now);
    let finished = Finished {
        reason,
        tail,
        stop_string: q.seq.stop_string().map(str::to_owned),
        usage: Usage {
            prompt_tokens,
            cached_tokens: q.cached_tokens,
            completion_tokens,
        },
        timings: Timings {
            queued: q.admitted - q.submitted,
            time_to_first_token: first - q.submitted,
            decode: now - first,
        },
    };
    tracing::debug!(
        id = q.id,
        reason = ?reason,
        prompt_tokens,
        cached_tokens = q.cached_tokens,
        completion_tokens,
        "finished"
    );
    let _ = q.tx.send(Event::Finished(finished));
    let secs = (now - q.submitted).as_secs_f64();
    let old = f64::from_bits(s.avg_request_secs.load(Ordering::Relaxed));
    s.avg_request_secs
        .store((old * 0.8 + secs * 0.2).to_bits(), Ordering::Relaxed);
    release_slot(s);
    // Keep the cache for the next request with the same prefix, if the
    // budget has room for it beside the running sequences' reservations.
    let (tokens, cache) = q.seq.into_cached();
    if !tokens.is_empty()
        && *reserved + prefix.bytes() + cache.memory_bytes() <= s.config.kv_cache_bytes
    {
        prefix.insert(tokens, cache);
    }
}

/// Evicts prefix-cache entries until `need` more bytes fit beside
/// `reserved`; false if they cannot.
fn make_room(s: &Shared, prefix: &mut PrefixCache, reserved: usize, need: usize) -> bool {
    while reserved + need + prefix.bytes() > s.config.kv_cache_bytes {
        if prefix.evict_lru().is_none() {
            return false;
        }
    }
    true
}

/// The positions a sequence may still need beyond its reservation.
fn growth(s: &Shared, q: &Seq<'_>) -> usize {
    let bpp = s.bytes_per_position.max(1);
    (q.seq.prompt_len() + q.seq.max_new())
        .saturating_sub(q.reserved / bpp)
        .min(GROW_POSITIONS)
}

/// Resumes preempted sequences, oldest first, while they fit; true while
/// one still waits.
fn resume(
    s: &Shared,
    active: &mut [Seq<'_>],
    prefix: &mut PrefixCache,
    reserved: &mut usize,
) -> bool {
    let bpp = s.bytes_per_position.max(1);
    let mut order: Vec<usize> = (0..active.len()).filter(|&i| active[i].preempted).collect();
    order.sort_by_key(|&i| active[i].admitted);
    for i in order {
        let q = &mut active[i];
        let left = q.seq.max_new() - q.seq.generated().len();
        let need = (q.seq.tokens().len() + GROW_POSITIONS.min(left)) * bpp;
        if !make_room(s, prefix, *reserved, need) {
            return true;
        }
        *reserved += need;
        q.reserved = need;
        q.preempted = false;
        tracing::debug!(id = q.id, tokens = q.seq.tokens().len(), "resumed");
    }
    false
}

/// Grows the reservation of every decoding sequence that has filled it,
/// oldest first; when the budget has no room, preempts the youngest
/// sequence (which may be the one that wants to grow).
fn grow<'m>(
    s: &Shared,
    model: &'m LoadedModel,
    active: &mut [Seq<'m>],
    prefix: &mut PrefixCache,
    reserved: &mut usize,
) {
    let bpp = s.bytes_per_position.max(1);
    let mut order: Vec<usize> = (0..active.len()).collect();
    order.sort_by_key(|&i| active[i].admitted);
    for &i in &order {
        let q = &active[i];
        if q.preempted || q.seq.tokens().len() <= q.reserved / bpp {
            continue;
        }
        let add = growth(s, q).max(1) * bpp;
        loop {
            if make_room(s, prefix, *reserved, add) {
                *reserved += add;
                active[i].reserved += add;
                break;
            }
            // The youngest sequence that holds cache gives it up.
            let Some(&victim) = order
                .iter()
                .rev()
                .find(|&&j| !active[j].preempted && active[j].reserved > 0)
            else {
                break;
            };
            let for_id = active[i].id;
            let v = &mut active[victim];
            *reserved -= v.reserved;
            v.reserved = 0;
            v.preempted = true;
            v.seq.restart(model.model.new_cache(s.config.context));
            s.preemptions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(id = v.id, for_id, "preempted for cache room");
            if victim == i {
                break;
            }
        }
    }
}

fn release_slot(s: &Shared) {
    let mut inbox = s.inbox();
    inbox.active = inbox.active.saturating_sub(1);
}

fn publish(s: &Shared, active: &[Seq<'_>], prefix: &PrefixCache, reserved: usize) {
    let held: usize = active.iter().map(|q| q.seq.cache().memory_bytes()).sum();
    let pb = prefix.bytes();
    s.active.store(active.len(), Ordering::Relaxed);
    s.kv_bytes.store(held + pb, Ordering::Relaxed);
    s.kv_reserved.store(reserved, Ordering::Relaxed);
    s.prefix_entries.store(prefix.len(), Ordering::Relaxed);
    s.prefix_bytes.store(pb, Ordering::Relaxed);
}
