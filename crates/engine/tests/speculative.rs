//! Speculative decoding by prompt lookup against plain decoding, on the real
//! test models and once per instruction set this CPU can run.
//!
//! - Greedy: on every golden prompt, the tokens with drafting equal the
//!   tokens without, guesses being both kept and refused along the way, and
//!   equal llama.cpp's up to its first near-tie.
//! - Sampling: with the same seed, the tokens with drafting equal the tokens
//!   without (each kept token is the sampler's own draw, one per token, in
//!   the same order). And they are distributed as without: a permutation
//!   test compares, position by position, the tokens of many generations
//!   with and without drafting under different seeds; the same test tells
//!   two temperatures apart, so it can fail.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "common/goldens.rs"]
mod goldens;

use std::collections::HashMap;
use std::ops::ControlFlow;

use lucid_engine::{
    Drafting, GenerateParams, Generated, LoadedModel, PromptLookup, SamplingParams, Session,
};
use lucid_tensor::Isa;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Drafting that guesses often (a single matching token is enough), so that
/// many guesses are refused as well as kept.
const EAGER: PromptLookup = PromptLookup {
    max_ngram: 3,
    min_ngram: 1,
    max_draft: 6,
};

fn generate(model: &LoadedModel, prompt: &[u32], params: &GenerateParams) -> Generated {
    Session::new(model, 2, None)
        .generate(prompt, params, |_| ControlFlow::Continue(()))
        .unwrap()
}

/// The first `n_cases` golden prompts of `model_name`.
fn greedy_equals_plain(model_name: &str, n_cases: usize) {
    let file = match Isa::current() {
        Isa::Avx512 => format!("llama/{model_name}.json"),
        _ => format!("llama/avx2/{model_name}.json"),
    };
    let golden = common::golden(&file);
    let flips = goldens::first_flips(&golden);
    let model = LoadedModel::load(&common::model_path(golden["file"].as_str().unwrap())).unwrap();
    let (mut drafted, mut kept, mut generated) = (0, 0, 0);
    for (i, case) in goldens::cases(&golden).iter().enumerate().take(n_cases) {
        let plain = GenerateParams {
            max_tokens: case.tokens.len(),
            sampling: SamplingParams::greedy(),
            ignore_eos: true,
            ..GenerateParams::default()
        };
        let want = generate(&model, &case.prompt_tokens, &plain);
        let got = generate(
            &model,
            &case.prompt_tokens,
            &GenerateParams {
                draft: Drafting::PromptLookup(EAGER),
                ..plain.clone()
            },
        );
        assert_eq!(
            got.tokens, want.tokens,
            "{file} {:?}: drafting changed the greedy tokens",
            case.prompt
        );
        assert_eq!(got.text, want.text);
        let robust = case.robust_prefix(&flips, i);
        assert_eq!(
            got.tokens[..robust],
            case.tokens[..robust],
            "{:?}",
            case.prompt
        );
        drafted += got.timings.drafted;
        kept += got.timings.draft_accepted;
        generated += got.tokens.len();
    }
    eprintln!(
        "{file} on {}: {generated} greedy tokens equal with and without drafting; \
         {kept} of {drafted} guesses kept",
        Isa::current().name()
    );
    assert!(
        kept > 0 && kept < drafted,
        "the goldens should both keep and refuse guesses ({kept} of {drafted} kept)"
    );
}

fn smollm2() -> LoadedModel {
    let golden = common::golden("llama/smollm2.json");
    LoadedModel::load(&common::model_path(golden["file"].as_str().unwrap())).unwrap()
}

/// A list that invites repeating itself: many guesses.
const LIST: &str = "Shopping list:\n- eggs\n- milk\n- eggs\n- milk\n-";

/// `runs` seeds, each generation with and without drafting.
fn seeded_equals_plain(runs: u64) {
    let model = smollm2();
    let prompt = model.tokenizer.encode(LIST, true, false).unwrap();
    let (mut drafted, mut kept) = (0, 0);
    for seed in 0..runs {
        let plain = GenerateParams {
            max_tokens: 16,
            sampling: SamplingParams {
                seed: Some(seed),
                ..SamplingParams::default()
            },
            ignore_eos: true,
            ..GenerateParams::default()
        };
        let want = generate(&model, &prompt, &plain);
        let got = generate(
            &model,
            &prompt,
            &GenerateParams {
                draft: Drafting::PromptLookup(EAGER),
                ..plain.clone()
            },
        );
        assert_eq!(
            got.tokens, want.tokens,
            "seed {seed}: drafting changed the sampled tokens"
        );
        drafted += got.timings.drafted;
        kept += got.timings.draft_accepted;
    }
    eprintln!(
        "seeded sampling on {}: {runs} seeds give the same tokens with and without drafting; \
         {kept} of {drafted} guesses kept",
        Isa::current().name()
    );
    assert!(
        kept > 0 && kept < drafted,
        "{kept} of {drafted} guesses kept"
    );
}

/// The tokens of `runs` seeded generations of `n` tokens each, seeds from
/// `first_seed` on.
fn samples(
    model: &LoadedModel,
    prompt: &[u32],
    n: usize,
    temperature: f32,
    draft: Drafting,
    seeds: std::ops::Range<u64>,
) -> (Vec<Vec<u32>>, usize, usize) {
    let (mut drafted, mut kept) = (0, 0);
    let out = seeds
        .map(|seed| {
            let g = generate(
                model,
                prompt,
                &GenerateParams {
                    max_tokens: n,
                    sampling: SamplingParams {
                        temperature,
                        top_k: 40,
                        top_p: 1.0,
                        min_p: 0.0,
                        seed: Some(seed),
                        ..SamplingParams::default()
                    },
                    ignore_eos: true,
                    draft,
                    ..GenerateParams::default()
                },
            );
            drafted += g.timings.drafted;
            kept += g.timings.draft_accepted;
            g.tokens
        })
        .collect();
    (out, drafted, kept)
}

/// The sum over positions of the total-variation distance between the
/// token distributions of `a` and `b` at that position.
fn distance(a: &[&Vec<u32>], b: &[&Vec<u32>]) -> f64 {
    let n = a[0].len();
    (0..n)
        .map(|pos| {
            let mut counts: HashMap<u32, (f64, f64)> = HashMap::new();
            for s in a {
                counts.entry(s[pos]).or_default().0 += 1.0 / a.len() as f64;
            }
            for s in b {
                counts.entry(s[pos]).or_default().1 += 1.0 / b.len() as f64;
            }
            counts.values().map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0
        })
        .sum()
}

/// The share of random relabellings of `a ∪ b` into two groups of their
/// sizes whose distance is at least the observed one: the p-value of "both
/// come from one distribution".
fn permutation_p_value(a: &[Vec<u32>], b: &[Vec<u32>]) -> f64 {
    let observed = distance(&a.iter().collect::<Vec<_>>(), &b.iter().collect::<Vec<_>>());
    let mut all: Vec<&Vec<u32>> = a.iter().chain(b).collect();
    let mut rng = StdRng::seed_from_u64(7);
    let rounds = 400;
    let at_least = (0..rounds)
        .filter(|_| {
            all.shuffle(&mut rng);
            let (x, y) = all.split_at(a.len());
            distance(x, y) >= observed - 1e-12
        })
        .count();
    (at_least + 1) as f64 / (rounds + 1) as f64
}

fn sampling_is_unchanged() {
    let model = smollm2();
    let prompt = model.tokenizer.encode(LIST, true, false).unwrap();
    let (n, runs) = (8, 100);
    let (plain, _, _) = samples(&model, &prompt, n, 1.0, Drafting::Off, 0..runs);
    let (drafting, drafted, kept) = samples(
        &model,
        &prompt,
        n,
        1.0,
        Drafting::PromptLookup(EAGER),
        runs..2 * runs,
    );
    let (cooler, _, _) = samples(&model, &prompt, n, 0.7, Drafting::Off, 2 * runs..3 * runs);
    let same = permutation_p_value(&plain, &drafting);
    let different = permutation_p_value(&plain, &cooler);
    eprintln!(
        "sampling on {}: p = {same:.3} with and without drafting ({kept} of {drafted} guesses kept), \
         p = {different:.4} between temperatures 1 and 0.7",
        Isa::current().name()
    );
    assert!(
        kept > 0 && kept < drafted,
        "{kept} of {drafted} guesses kept"
    );
    assert!(
        same > 0.001,
        "drafting changed the distribution of sampled tokens (p = {same})"
    );
    assert!(
        different < 0.02,
        "the test cannot tell temperature 1 from 0.7 (p = {different})"
    );
}

/// Each SIMD instruction set on every golden prompt of SmolLM2 and half of
/// Gemma 3's; the scalar reference, several times slower, on a few of
/// SmolLM2's.
macro_rules! per_isa {
    ($name:ident, $isa:expr, $cases:expr, $seeds:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn smollm2_greedy() {
                common::on_isa($isa, concat!(stringify!($name), "::smollm2_greedy"), || {
                    greedy_equals_plain("smollm2", $cases)
                });
            }

            #[test]
            fn smollm2_seeded() {
                common::on_isa($isa, concat!(stringify!($name), "::smollm2_seeded"), || {
                    seeded_equals_plain($seeds)
                });
            }

            #[test]
            fn gemma3_greedy() {
                if $isa == Isa::Scalar {
                    return;
                }
                common::on_isa($isa, concat!(stringify!($name), "::gemma3_greedy"), || {
                    greedy_equals_plain("gemma3", 5)
                });
            }
        }
    };
}

per_isa!(scalar, Isa::Scalar, 3, 8);
per_isa!(avx2, Isa::Avx2, usize::MAX, 24);
per_isa!(avx512, Isa::Avx512, usize::MAX, 24);

#[test]
fn sampling_is_distributed_as_without_drafting() {
    sampling_is_unchanged();
}
