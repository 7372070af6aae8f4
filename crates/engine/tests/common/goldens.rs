//! The llama.cpp goldens (`tests/goldens/llama`, made by
//! `scripts/goldens/llama/gen_greedy.py`) as test cases: the prompts,
//! llama.cpp's greedy tokens and top logits at every step, and where its
//! greedy choice stops being robust. Shared by the engine's goldens test and
//! the scheduler's (through `#[path]`).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

/// A step whose top-2 margin is under this many logits is a near-tie:
/// greedy decoding may legitimately diverge from there.
pub const NEAR_TIE: f64 = 0.5;

pub struct Case {
    pub prompt: String,
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    /// Per step: llama.cpp's top (id, logit) pairs, log-sum-exp and top-2 margin.
    pub steps: Vec<Step>,
}

pub struct Step {
    pub top: Vec<(u32, f32)>,
    pub logsumexp: f32,
    pub margin: f64,
}

impl Case {
    /// How many of llama.cpp's greedy tokens must be reproduced exactly: up
    /// to the first near-tie, or the first step at which one of llama.cpp's
    /// own configurations chose otherwise (`flips`, from [`first_flips`]).
    pub fn robust_prefix(&self, flips: &HashMap<usize, usize>, case_index: usize) -> usize {
        self.steps
            .iter()
            .position(|s| s.margin < NEAR_TIE)
            .unwrap_or(self.steps.len())
            .min(flips.get(&case_index).copied().unwrap_or(usize::MAX))
    }
}

pub fn cases(golden: &serde_json::Value) -> Vec<Case> {
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

/// The configurations in a goldens file measured with the build that made
/// them. Another build's distance (`other_build.py`) is left out: per-build
/// goldens replace it.
fn same_build_configs(golden: &serde_json::Value) -> Vec<&serde_json::Value> {
    golden["reference"]["self_disagreement"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["settings"]["build"].is_null())
        .collect()
}

/// llama.cpp's own spread in a goldens file: the largest maximum and 99th
/// percentile of the configurations of the build that made them.
pub fn spread(golden: &serde_json::Value, golden_file: &str) -> (f32, f32) {
    let configs = same_build_configs(golden);
    assert!(
        !configs.is_empty(),
        "{golden_file} records no llama.cpp spread"
    );
    let largest = |key: &str| {
        configs
            .iter()
            .map(|c| c[key].as_f64().unwrap() as f32)
            .fold(0.0, f32::max)
    };
    (largest("max_top5_abs_diff"), largest("p99_top5_abs_diff"))
}

/// Per case, the first step at which one of llama.cpp's configurations of
/// the build that made the goldens chose another token than the goldens
/// (`argmax_flips`: case, step, margin): a tie within llama.cpp's own
/// precision, even where the goldens' margin is above NEAR_TIE.
pub fn first_flips(golden: &serde_json::Value) -> HashMap<usize, usize> {
    let mut first: HashMap<usize, usize> = HashMap::new();
    for config in same_build_configs(golden) {
        for flip in config["argmax_flips"].as_array().unwrap() {
            let (case, step) = (
                flip[0].as_u64().unwrap() as usize,
                flip[1].as_u64().unwrap() as usize,
            );
            let at = first.entry(case).or_insert(step);
            *at = (*at).min(step);
        }
    }
    first
}
