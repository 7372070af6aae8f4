//! The scheduler against the real SmolLM2 model: batching does not change
//! greedy output, prefixes are reused, cancellation frees the sequence,
//! queues refuse with a retry delay, and JSON-constrained output parses and
//! validates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lucid_engine::{LoadedModel, SamplingParams, StopReason};
use lucid_scheduler::{Event, Grammar, Json, Request, Scheduler, SchedulerConfig, SchedulerError};

fn model() -> Arc<LoadedModel> {
    static MODEL: OnceLock<Arc<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = std::env::var_os("LUCID_MODEL_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"),
                PathBuf::from,
            );
            let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
            assert!(
                path.is_file(),
                "test model {} is missing: run scripts/fetch-test-models.sh (or set LUCID_MODEL_DIR)",
                path.display()
            );
            Arc::new(LoadedModel::load(&path).unwrap())
        })
        .clone()
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        threads: 2,
        context: Some(1024),
        ..SchedulerConfig::default()
    }
}

/// The chat prompt for one user message, as the model's template renders it.
fn chat(m: &LoadedModel, user: &str) -> Vec<u32> {
    let text = m
        .template
        .render(
            &[lucid_engine::ChatMessage::new(
                lucid_engine::Role::User,
                user,
            )],
            true,
        )
        .unwrap();
    m.tokenizer.encode(&text, false, true).unwrap()
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        max_tokens: Some(max_tokens),
        sampling: SamplingParams::greedy(),
        ..Request::new(prompt)
    }
}

fn ids(r: &(Vec<lucid_scheduler::Token>, lucid_scheduler::Finished)) -> Vec<u32> {
    r.0.iter().map(|t| t.id).collect()
}

#[test]
fn batching_and_chunked_prefill_do_not_change_greedy_output() {
    let m = model();
    let prompts = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "List three colors.",
        "Say hello in Spanish.",
    ];
    // Alone, one at a time, with no prefix reuse and the prompt read whole.
    let alone_sched = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            prefix_cache_entries: 0,
            ..config()
        },
    );
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            ids(&alone_sched
                .submit(greedy(chat(&m, p), 12))
                .unwrap()
                .blocking_collect()
                .unwrap())
        })
        .collect();
    drop(alone_sched);
    // All at once, prompts read in small chunks between decode steps.
    let batched_sched = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            prefill_chunk: 7,
            max_batch_tokens: 13,
            prefix_cache_entries: 0,
            ..config()
        },
    );
    let gens: Vec<_> = prompts
        .iter()
        .map(|p| batched_sched.submit(greedy(chat(&m, p), 12)).unwrap())
        .collect();
    let batched: Vec<Vec<u32>> = gens
        .into_iter()
        .map(|g| ids(&g.blocking_collect().unwrap()))
        .collect();
    assert_eq!(alone, batched);
    let stats = batched_sched.stats();
    // Fewer forward passes than tokens generated one by one would take.
    assert!(stats.steps < 4 * 12 + 40, "{stats:?}");
}

#[test]
fn a_shared_prefix_is_reused_and_gives_the_same_output() {
    let m = model();
    let sched = Scheduler::start(m.clone(), config());
    let prompt = chat(&m, "Name a fruit.");
    let first = sched
        .submit(greedy(prompt.clone(), 8))
        .unwrap()
        .blocking_collect()
        .unwrap();
    assert_eq!(first.1.usage.cached_tokens, 0);
    let second = sched
        .submit(greedy(prompt.clone(), 8))
        .unwrap()
        .blocking_collect()
        .unwrap();
    assert_eq!(second.1.usage.cached_tokens, prompt.len() - 1);
    assert_eq!(ids(&first), ids(&second));
    // A different question after the same system prompt reuses the system prompt.
    let other = sched
        .submit(greedy(chat(&m, "Name a vegetable."), 4))
        .unwrap()
        .blocking_collect()
        .unwrap();
    assert!(other.1.usage.cached_tokens >= 20, "{:?}", other.1.usage);
    let stats = sched.stats();
    assert!(
        stats.prefix_cache_entries >= 1 && stats.prefix_cache_bytes > 0,
        "{stats:?}"
    );
    assert!(stats.kv_cache_bytes <= stats.kv_budget_bytes);
}

#[test]
fn dropping_a_generation_frees_its_sequence() {
    let m = model();
    let sched = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            prefix_cache_entries: 0,
            ..config()
        },
    );
    let mut g = sched
        .submit(greedy(chat(&m, "Tell me a long story."), 500))
        .unwrap();
    // Wait for two tokens, then walk away.
    let mut seen = 0;
    while seen < 2 {
        if let Some(Event::Token(_)) = g.blocking_next() {
            seen += 1;
        }
    }
    assert_eq!(sched.stats().active, 1);
    drop(g);
    let t = Instant::now();
    while sched.stats().active != 0 || sched.stats().kv_reserved_bytes != 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", sched.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sched.stats().kv_cache_bytes, 0);

    // An explicit cancel ends the stream with a Cancelled finish.
    let g = sched
        .submit(greedy(chat(&m, "Count to one hundred."), 500))
        .unwrap();
    g.cancel();
    let (_, fin) = g.blocking_collect().unwrap();
    assert_eq!(fin.reason, StopReason::Cancelled);
}

#[test]
fn full_queues_refuse_with_a_retry_delay_and_bad_requests_are_typed() {
    let m = model();
    let sched = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            max_sequences: 1,
            max_queue: 1,
            ..config()
        },
    );
    let a = sched.submit(greedy(chat(&m, "One"), 64)).unwrap();
    let b = sched.submit(greedy(chat(&m, "Two"), 64)).unwrap();
    match sched.submit(greedy(chat(&m, "Three"), 64)) {
        Err(SchedulerError::Busy { retry_after, .. }) => {
            assert!(retry_after >= Duration::from_secs(1))
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    drop((a, b));
    match sched.submit(greedy(vec![1; 2000], 4)) {
        Err(SchedulerError::PromptTooLong {
            prompt_tokens: 2000,
            limit: 1024,
        }) => {}
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    assert!(matches!(
        sched.submit(greedy(vec![], 4)),
        Err(SchedulerError::EmptyPrompt)
    ));
    assert!(matches!(
        sched.submit(greedy(vec![u32::MAX], 4)),
        Err(SchedulerError::InvalidParams(_))
    ));
    let tiny = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            kv_cache_bytes: 1 << 20,
            ..config()
        },
    );
    assert!(matches!(
        tiny.submit(greedy(chat(&m, "Hi"), 900)),
        Err(SchedulerError::TooLarge { .. })
    ));
}

#[test]
fn logprobs_are_reported_for_the_chosen_token_and_alternatives() {
    let m = model();
    let sched = Scheduler::start(m.clone(), config());
    let req = Request {
        logprobs: Some(3),
        ..greedy(chat(&m, "What is 2+2?"), 4)
    };
    let (tokens, _) = sched.submit(req).unwrap().blocking_collect().unwrap();
    for t in &tokens {
        let lp = t.logprobs.as_ref().unwrap();
        assert_eq!(lp.top.len(), 3);
        assert!(lp.logprob <= 0.0);
        // Greedy picks the most likely token.
        assert_eq!(lp.top[0].0, t.id);
        assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}

#[test]
fn json_constrained_output_parses_and_validates() {
    let m = model();
    let sched = Scheduler::start(m.clone(), config());
    let schema_text = r#"{
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "student": {"type": "boolean"},
            "color": {"enum": ["red", "green", "blue"]}
        },
        "required": ["name", "age", "student", "color"],
        "additionalProperties": false
    }"#;
    let grammar = Arc::new(Grammar::from_schema(&Json::parse(schema_text).unwrap()).unwrap());
    let schema: serde_json::Value = serde_json::from_str(schema_text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (i, sampling) in [
        SamplingParams::greedy(),
        SamplingParams {
            seed: Some(7),
            temperature: 1.0,
            ..SamplingParams::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let req = Request {
            max_tokens: Some(60),
            sampling,
            grammar: Some(grammar.clone()),
            ..Request::new(chat(&m, "Describe a person as JSON."))
        };
        let (tokens, fin) = sched.submit(req).unwrap().blocking_collect().unwrap();
        let text: String = tokens.iter().map(|t| t.text.as_str()).collect::<String>() + &fin.tail;
        assert_eq!(fin.reason, StopReason::EndOfGeneration, "run {i}: {text}");
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("run {i}: {e}: {text}"));
        assert!(validator.is_valid(&value), "run {i}: {text}");
    }
    // Any JSON object.
    let req = Request {
        max_tokens: Some(40),
        grammar: Some(Arc::new(Grammar::any_object())),
        ..greedy(chat(&m, "Give me a JSON object about a cat."), 40)
    };
    let (tokens, fin) = sched.submit(req).unwrap().blocking_collect().unwrap();
    let text: String = tokens.iter().map(|t| t.text.as_str()).collect::<String>() + &fin.tail;
    if fin.reason == StopReason::EndOfGeneration {
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(v.is_object());
    } else {
        assert!(text.starts_with('{'), "{text}");
    }
}

/// Bytes of KV cache one position of SmolLM2 takes in the scheduler.
fn bytes_per_position(m: &LoadedModel) -> usize {
    let mut cache = m.model.new_cache(Some(8));
    let mut ctx = lucid_engine::ForwardCtx::new(1);
    let mut seqs = [lucid_engine::SeqInput {
        tokens: &[1],
        cache: &mut cache,
        logits: lucid_engine::LogitsFor::None,
    }];
    m.model
        .forward(&mut ctx, &mut seqs, &mut lucid_engine::Hooks::none())
        .unwrap();
    cache.memory_bytes()
}

/// Requests without `max_tokens` (the OpenAI SDK's default) do not hold
/// the whole context's cache before they need it: a short request behind
/// six of them starts at once and finishes while they still run.
#[test]
fn requests_without_a_limit_do_not_block_a_short_one() {
    let m = model();
    let bpp = bytes_per_position(&m);
    // Room for one and a half whole contexts.
    let sched = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            kv_cache_bytes: 1536 * bpp,
            ..config()
        },
    );
    let long: Vec<_> = (0..6)
        .map(|i| {
            sched
                .submit(Request {
                    max_tokens: None,
                    ignore_eos: true,
                    ..greedy(chat(&m, &format!("Tell me a long story number {i}.")), 0)
                })
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let steps_before = sched.stats().steps;
    let (tokens, finished) = sched
        .submit(greedy(chat(&m, "Say hi."), 4))
        .unwrap()
        .blocking_collect()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(finished.reason, StopReason::MaxTokens);
    assert_eq!(tokens.len(), 4);
    // Counted in forward passes, not seconds, so that a loaded machine
    // cannot fail it: blocked behind the long ones, the short request would
    // wait for one of them to fill its 1,024-token context (about a
    // thousand passes; 129 s here before the fix).
    let stats = sched.stats();
    let steps = stats.steps - steps_before;
    assert!(
        steps < 64,
        "the short request took {steps} forward passes (queued {:?}): {stats:?}",
        finished.timings.queued
    );
    // The six long ones are all still running or queued (the short one may
    // or may not be counted still, depending on when the stats were taken).
    assert!(
        stats.active + stats.queued >= 6,
        "the long ones still run: {stats:?}"
    );
    eprintln!(
        "short request done in {steps} forward passes, {secs:.2} s (queued {:.2} s) beside six unbounded ones",
        finished.timings.queued.as_secs_f64()
    );
    drop(long);
}

/// When growing sequences fill the budget, the youngest is preempted and
/// later reads its tokens again: every output is the same as alone.
#[test]
fn preempted_sequences_resume_with_the_same_output() {
    let m = model();
    let bpp = bytes_per_position(&m);
    let prompts = [
        "Write a poem about rain.",
        "Explain gravity.",
        "Describe a cat.",
    ];
    let alone_sched = Scheduler::start(m.clone(), config());
    let request = |p: &str| Request {
        ignore_eos: true,
        ..greedy(chat(&m, p), 400)
    };
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            ids(&alone_sched
                .submit(request(p))
                .unwrap()
                .blocking_collect()
                .unwrap())
        })
        .collect();
    drop(alone_sched);
    // Room for two sequences' first reservations, not for three grown ones.
    let tight = Scheduler::start(
        m.clone(),
        SchedulerConfig {
            kv_cache_bytes: 700 * bpp,
            prefix_cache_entries: 0,
            ..config()
        },
    );
    let gens: Vec<_> = prompts
        .iter()
        .map(|p| tight.submit(request(p)).unwrap())
        .collect();
    let together: Vec<Vec<u32>> = gens
        .into_iter()
        .map(|g| ids(&g.blocking_collect().unwrap()))
        .collect();
    let stats = tight.stats();
    assert!(stats.preemptions > 0, "{stats:?}");
    assert_eq!(alone, together);
    eprintln!("{} preemptions, same output", stats.preemptions);
}

/// An embedding request counts in the load while it waits and while its
/// passes run (an idle check must not unload the model under it), and not
/// after its answer.
#[test]
fn embedding_requests_count_in_the_load_until_answered() {
    let m = model();
    let sched = Scheduler::start(m.clone(), config());
    let idle = sched.stats();
    assert_eq!((idle.queued, idle.active), (0, 0));
    // Enough tokens for passes that take a while on any machine.
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let ids = m.tokenizer.encode(&text, false, true).unwrap();
    let inputs: Vec<Vec<u32>> = (0..16).map(|_| ids.clone()).collect();
    let mut rx = sched
        .embed(lucid_scheduler::EmbedRequest {
            task: lucid_scheduler::EmbedTask::Embed,
            inputs,
            types: Vec::new(),
        })
        .unwrap();
    let mut seen_busy = 0;
    let vectors = loop {
        let stats = sched.stats();
        if stats.queued + stats.active > 0 {
            seen_busy += 1;
        }
        match rx.try_recv() {
            Ok(result) => break result.unwrap(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("the scheduler dropped the request: {e}"),
        }
    };
    assert_eq!(vectors.len(), 16);
    assert!(seen_busy > 0, "the load never showed the embedding request");
    // The count drops as the loop leaves the passes, just after answering.
    let t = Instant::now();
    while (sched.stats().queued, sched.stats().active) != (0, 0) {
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", sched.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
}
