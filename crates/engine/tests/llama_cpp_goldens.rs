//! The engine against llama.cpp on the real test models.
//!
//! The goldens (`tests/goldens/llama/*.json`, made by
//! `scripts/goldens/llama/gen_greedy.py`) hold, for raw prompts, llama.cpp's
//! greedy 48-token continuation and at every step its top logits. Two checks:
//!
//! - Teacher-forced: the prompt, then each golden token in turn, run through
//!   lucid the way llama.cpp made the goldens; at every step lucid's logits on
//!   llama.cpp's top-5 tokens are compared with llama.cpp's. The target is 1.0
//!   logit, but llama.cpp's own CPU configurations (flash attention off, an
//!   f32 cache, one-token prompt evaluation, one batch, the same settings
//!   built for a CPU without AVX-512) disagree with the goldens by more than
//!   that at some steps: up to 1.26 for SmolLM2 and 3.5 for Gemma 3, as the
//!   goldens' `self_disagreement` records. Rounding differences of 1e-7 flip
//!   the 8-bit rounding of some activation and grow from there
//!   (`scripts/goldens/llama/layer_trace.py` shows it block by block). So the test
//!   holds lucid to llama.cpp's own spread: its largest difference and its
//!   99th percentile may not exceed the largest of llama.cpp's
//!   configurations. It prints the largest difference and how many exceed 1.0.
//! - Free-running: lucid's greedy tokens equal llama.cpp's up to the first
//!   step where llama.cpp's top-2 margin is under 0.5 (a near-tie), after
//!   which divergence is legitimate.

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::ControlFlow;

use lucid_engine::{GenerateParams, Hooks, LoadedModel, LogitsFor, SamplingParams, Session};

const TARGET: f32 = 1.0;
const NEAR_TIE: f64 = 0.5;

struct Case {
    prompt: String,
    prompt_tokens: Vec<u32>,
    tokens: Vec<u32>,
    /// Per step: llama.cpp's top (id, logit) pairs, log-sum-exp and top-2 margin.
    steps: Vec<Step>,
}

struct Step {
    top: Vec<(u32, f32)>,
    logsumexp: f32,
    margin: f64,
}

fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + x.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32
}

fn cases(golden: &serde_json::Value) -> Vec<Case> {
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: c["prompt"].as_str().unwrap().to_string(),
            prompt_tokens: ids(&c["prompt_tokens"]),
            tokens: ids(&c["tokens"]),
            steps: c["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| Step {
                    top: s["top"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                        .collect(),
                    logsumexp: s["logsumexp"].as_f64().unwrap() as f32,
                    margin: s["margin"].as_f64().unwrap(),
                })
                .collect(),
        })
        .collect()
}

/// Runs both checks on one model's goldens.
pub fn check_model(golden_file: &str) {
    let golden = common::golden(golden_file);
    let model = LoadedModel::load(&common::model_path(golden["file"].as_str().unwrap())).unwrap();
    // llama.cpp's own spread: the largest maximum and 99th percentile of its
    // configurations against the goldens.
    let configs = golden["reference"]["self_disagreement"]["configs"]
        .as_array()
        .unwrap();
    let spread = |key: &str| {
        configs
            .iter()
            .map(|c| c[key].as_f64().unwrap() as f32)
            .fold(0.0, f32::max)
    };
    let (self_max, self_p99) = (spread("max_top5_abs_diff"), spread("p99_top5_abs_diff"));
    let cases = cases(&golden);
    assert!(cases.len() >= 6, "the goldens need at least six prompts");
    let (mut worst, mut worst_lp) = ((0f32, String::new()), 0f32);
    let (mut n, mut over) = (0usize, 0usize);
    let mut diffs: Vec<f32> = Vec::new();
    for case in &cases {
        // The prompt tokenizes as llama.cpp tokenized it.
        assert_eq!(
            model.tokenizer.encode(&case.prompt, true, false).unwrap(),
            case.prompt_tokens,
            "{:?}",
            case.prompt
        );

        // Teacher-forced, the way llama.cpp made the goldens: the prompt in
        // one batch, then each golden token on its own.
        let mut session = Session::new(&model, 2, None);
        let mut fed = case.prompt_tokens.clone();
        for (i, step) in case.steps.iter().enumerate() {
            if i > 0 {
                fed.push(case.tokens[i - 1]);
            }
            session
                .feed(&fed, LogitsFor::Last, &mut Hooks::none())
                .unwrap();
            let logits = session.ctx().last_logits(0).unwrap();
            let lse = log_sum_exp(logits);
            for &(id, want) in step.top.iter().take(5) {
                let got = logits[id as usize];
                let diff = (got - want).abs();
                let diff_lp = ((got - lse) - (want - step.logsumexp)).abs();
                n += 1;
                diffs.push(diff);
                over += usize::from(diff > TARGET);
                worst_lp = worst_lp.max(diff_lp);
                if diff > worst.0 {
                    worst = (
                        diff,
                        format!(
                            "{:?} step {i} token {id} (lucid {got}, llama.cpp {want})",
                            case.prompt
                        ),
                    );
                }
                assert!(
                    diff <= self_max,
                    "{:?} step {i} token {id}: lucid {got} vs llama.cpp {want}",
                    case.prompt
                );
            }
        }

        // Free-running greedy decoding.
        let near_tie = case
            .steps
            .iter()
            .position(|s| s.margin < NEAR_TIE)
            .unwrap_or(case.steps.len());
        let params = GenerateParams {
            max_tokens: case.tokens.len(),
            sampling: SamplingParams::greedy(),
            stop: vec![],
            ignore_eos: true,
        };
        let mut session = Session::new(&model, 2, None);
        let out = session
            .generate(&case.prompt_tokens, &params, |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(
            out.tokens[..near_tie],
            case.tokens[..near_tie],
            "{:?}: greedy tokens differ before llama.cpp's first near-tie at step {near_tie}",
            case.prompt
        );
    }
    diffs.sort_by(f32::total_cmp);
    let p99 = diffs[n * 99 / 100];
    let mean = diffs.iter().sum::<f32>() / n as f32;
    eprintln!(
        "{golden_file}: top-5 logit differences: mean {mean:.4}, p99 {p99:.4} (llama.cpp's own: {self_p99:.4}), \
         largest {:.4} (llama.cpp's own: {self_max:.4}) at {}; {over} of {n} above {TARGET}; \
         largest log-probability difference {worst_lp:.4}",
        worst.0, worst.1
    );
    assert!(
        p99 <= self_p99,
        "99th percentile {p99} exceeds llama.cpp's own {self_p99}"
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("llama/smollm2.json");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("llama/gemma3.json");
}
