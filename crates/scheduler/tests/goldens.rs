//! The llama.cpp goldens through the scheduler, the loop that serves HTTP
//! requests: each golden prompt alone, then all of them at once (batched,
//! and reusing the prefix cache the first round left), must give greedy
//! tokens identical to a `Session`'s (the CLI's path) and to llama.cpp's up
//! to its first near-tie.
//!
//! Then the same through a scheduler that drafts (speculative decoding by
//! prompt lookup): its tokens, alone and at once, equal a `Session`'s too.
//!
//! The goldens are those of the llama.cpp build whose kernels match the ones
//! this process uses (`llama/` for AVX-512, `llama/avx2/` otherwise, as
//! `engine/tests/llama_cpp_goldens.rs` pairs them).

#![allow(clippy::unwrap_used)]

#[path = "../../engine/tests/common/mod.rs"]
mod common;
#[path = "../../engine/tests/common/goldens.rs"]
mod goldens;

use std::ops::ControlFlow;
use std::sync::Arc;

use lucid_engine::{Drafting, GenerateParams, LoadedModel, PromptLookup, SamplingParams, Session};
use lucid_scheduler::{Request, Scheduler, SchedulerConfig};
use lucid_tensor::Isa;

fn golden_file(model: &str) -> String {
    match Isa::current() {
        Isa::Avx512 => format!("llama/{model}.json"),
        _ => format!("llama/avx2/{model}.json"),
    }
}

fn request(prompt: &[u32], max_tokens: usize) -> Request {
    Request {
        max_tokens: Some(max_tokens),
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        ..Request::new(prompt.to_vec())
    }
}

fn tokens(
    result: Result<
        (Vec<lucid_scheduler::Token>, lucid_scheduler::Finished),
        lucid_scheduler::SchedulerError,
    >,
) -> Vec<u32> {
    let (tokens, finished) = result.unwrap();
    assert_eq!(finished.reason, lucid_engine::StopReason::MaxTokens);
    tokens.iter().map(|t| t.id).collect()
}

fn check(model_name: &str) {
    let file = golden_file(model_name);
    let golden = common::golden(&file);
    let cases = goldens::cases(&golden);
    let flips = goldens::first_flips(&golden);
    let path = common::model_path(golden["file"].as_str().unwrap());
    let model = Arc::new(LoadedModel::load(&path).unwrap());

    let session_tokens: Vec<Vec<u32>> = cases
        .iter()
        .map(|case| {
            let params = GenerateParams {
                max_tokens: case.tokens.len(),
                sampling: SamplingParams::greedy(),
                stop: vec![],
                ignore_eos: true,
                show_special: false,
                ..GenerateParams::default()
            };
            Session::new(&model, 2, None)
                .generate(&case.prompt_tokens, &params, |_| ControlFlow::Continue(()))
                .unwrap()
                .tokens
        })
        .collect();

    let scheduler = Scheduler::start(
        model.clone(),
        SchedulerConfig {
            threads: 2,
            ..SchedulerConfig::default()
        },
    );
    let alone: Vec<Vec<u32>> = cases
        .iter()
        .map(|case| {
            let g = scheduler
                .submit(request(&case.prompt_tokens, case.tokens.len()))
                .unwrap();
            tokens(g.blocking_collect())
        })
        .collect();
    let before = scheduler.stats();
    let generations: Vec<_> = cases
        .iter()
        .map(|case| {
            scheduler
                .submit(request(&case.prompt_tokens, case.tokens.len()))
                .unwrap()
        })
        .collect();
    let together: Vec<Vec<u32>> = generations
        .into_iter()
        .map(|g| tokens(g.blocking_collect()))
        .collect();
    let stats = scheduler.stats();
    let steps = stats.steps - before.steps;
    let generated: usize = together.iter().map(Vec::len).sum();
    assert!(
        (steps as usize) < generated,
        "the concurrent round took {steps} forward passes for {generated} tokens: nothing was batched"
    );
    assert!(
        stats.prefix_reused_tokens > before.prefix_reused_tokens,
        "the concurrent round reused no prefix of the first round's prompts"
    );

    for (i, case) in cases.iter().enumerate() {
        assert_eq!(
            alone[i], session_tokens[i],
            "{file} {:?}: the scheduler alone differs from a Session",
            case.prompt
        );
        assert_eq!(
            together[i],
            session_tokens[i],
            "{file} {:?}: the scheduler with {} concurrent requests differs from a Session",
            case.prompt,
            cases.len()
        );
        let robust = case.robust_prefix(&flips, i);
        assert_eq!(
            alone[i][..robust],
            case.tokens[..robust],
            "{file} {:?}: the scheduler's greedy tokens differ from llama.cpp's before its first near-tie at step {robust}",
            case.prompt
        );
    }
    eprintln!(
        "{file} on {}: {} prompts alone and at once through the scheduler ({steps} passes for {generated} tokens), equal to Session",
        Isa::current().name(),
        cases.len()
    );

    // Drafting: each prompt alone (drafting throughout), then all at once
    // (drafting only while few are left decoding).
    let drafting = Scheduler::start(
        model.clone(),
        SchedulerConfig {
            threads: 2,
            draft: Drafting::PromptLookup(PromptLookup {
                min_ngram: 1,
                ..PromptLookup::default()
            }),
            ..SchedulerConfig::default()
        },
    );
    for (case, want) in cases.iter().zip(&session_tokens) {
        let g = drafting
            .submit(request(&case.prompt_tokens, case.tokens.len()))
            .unwrap();
        let alone = tokens(g.blocking_collect());
        assert_eq!(
            &alone, want,
            "{file} {:?}: the drafting scheduler alone differs from a Session",
            case.prompt
        );
    }
    let alone_stats = drafting.stats();
    let generations: Vec<_> = cases
        .iter()
        .map(|case| {
            drafting
                .submit(request(&case.prompt_tokens, case.tokens.len()))
                .unwrap()
        })
        .collect();
    for (g, (case, want)) in generations
        .into_iter()
        .zip(cases.iter().zip(&session_tokens))
    {
        assert_eq!(
            &tokens(g.blocking_collect()),
            want,
            "{file} {:?}: the drafting scheduler with {} concurrent requests differs from a Session",
            case.prompt,
            cases.len()
        );
    }
    let stats = drafting.stats();
    eprintln!(
        "{file}: drafting scheduler equal to Session; alone {} of {} guesses kept, at once {} of {}",
        alone_stats.draft_accepted,
        alone_stats.draft_tokens,
        stats.draft_accepted - alone_stats.draft_accepted,
        stats.draft_tokens - alone_stats.draft_tokens,
    );
    assert!(
        alone_stats.draft_accepted > 0 && alone_stats.draft_accepted < alone_stats.draft_tokens,
        "the goldens should both keep and refuse guesses"
    );
}

#[test]
fn smollm2_goldens_through_the_scheduler() {
    check("smollm2");
}

#[test]
fn gemma3_goldens_through_the_scheduler() {
    check("gemma3");
}
