//! Files quantized by llama.cpp, held to llama.cpp's own logits, on every
//! instruction set this CPU can run.
//!
//! `scripts/fixtures/quantize_with_llama_cpp.py` made 256-wide one-block
//! random Llama and Qwen 3 MoE models with transformers, converted them
//! with llama.cpp's converter, quantized them with `llama-quantize` (Q8_0,
//! Q4_K_M, Q5_K_M, Q6_K, IQ4_XS for both; Q2_K, Q3_K_M, Q4_0, Q4_1, Q5_0,
//! Q5_1, IQ4_NL for the Llama model: the K-quant and IQ4_XS super-blocks
//! need rows of 256), and recorded llama.cpp's tokens, teacher-forced logits of
//! three prompts, greedy continuation, and how far llama.cpp's own
//! configurations (one token at a time, flash attention off) are from its
//! logits (`spread`).
//!
//! Checks per file: lucid's tokens are llama.cpp's; its logits differ from
//! llama.cpp's by no more than `SPREAD_FACTOR` × llama.cpp's spread or
//! `FLOOR`, whichever is larger; its greedy tokens equal llama.cpp's up to
//! the first step whose top-2 margin is under `NEAR_TIE`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use lucid_engine::{ForwardCtx, Hooks, LoadedModel, LogitsFor, SeqInput};
use lucid_tensor::quant::dequantize_row;
use lucid_tensor::{DType, Isa};
use serde_json::Value;

/// The logit difference every file may have whatever llama.cpp's spread:
/// both sides quantize activations to 8 bits per block, and a rounding
/// that differs by one step moves a logit of these random models by a few
/// hundredths.
const FLOOR: f32 = 0.05;
const SPREAD_FACTOR: f32 = 2.0;
const NEAR_TIE: f32 = 0.1;

fn dir() -> PathBuf {
    common::repo_root().join("tests/fixtures/llama-cpp-quant")
}

fn logits(family: &str, qtype: &str) -> HashMap<String, Vec<f32>> {
    let path = dir().join(format!("{family}-{}.safetensors", qtype.to_lowercase()));
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            // Stored in f16.
            assert_eq!(view.dtype(), safetensors::Dtype::F16, "{name}");
            let mut data = vec![0f32; view.data().len() / 2];
            dequantize_row(DType::F16, view.data(), &mut data);
            (name, data)
        })
        .collect()
}

fn teacher_forced(model: &LoadedModel, ids: &[u32]) -> Vec<f32> {
    let mut ctx = ForwardCtx::new(2);
    let mut cache = model.model.new_cache(None);
    let mut seqs = [SeqInput {
        tokens: ids,
        cache: &mut cache,
        logits: LogitsFor::All,
    }];
    model
        .model
        .forward(&mut ctx, &mut seqs, &mut Hooks::none())
        .unwrap();
    ctx.logits().to_vec()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

fn check_all() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap())
            .unwrap();
    let prompts = reference["prompts"].as_array().unwrap();
    let families = reference["families"].as_object().unwrap();
    assert!(
        families.len() >= 2,
        "the fixtures cover a dense model and a mixture"
    );
    let mut failures = Vec::new();
    for (family, types) in families {
        for (qtype, r) in types.as_object().unwrap() {
            let label = format!("{family} {qtype}");
            let path = dir().join(format!("{family}-{}.gguf", qtype.to_lowercase()));
            let model = LoadedModel::load(&path).unwrap();
            let expected = logits(family, qtype);
            let bound = (SPREAD_FACTOR * r["spread"].as_f64().unwrap() as f32).max(FLOOR);
            let (mut worst, mut span) = (0f32, 0f32);
            for (p, text) in prompts.iter().enumerate() {
                let want = ids(&r["ids"][p]);
                let got = model
                    .tokenizer
                    .encode(text.as_str().unwrap(), true, false)
                    .unwrap();
                assert_eq!(got, want, "{label}: tokens of prompt {p}");
                let lucid = teacher_forced(&model, &got);
                let theirs = &expected[&format!("p{p}.logits")];
                assert_eq!(lucid.len(), theirs.len(), "{label}: logits of prompt {p}");
                for (a, b) in lucid.iter().zip(theirs) {
                    worst = worst.max((a - b).abs());
                    span = span.max(b.abs());
                }
            }
            let want = ids(&r["greedy"]["tokens"]);
            let margins: Vec<f64> = r["greedy"]["margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_f64().unwrap())
                .collect();
            let robust = margins
                .iter()
                .position(|&m| m < NEAR_TIE as f64)
                .unwrap_or(want.len());
            let got = common::greedy(&model, &ids(&r["ids"][0]), want.len());
            eprintln!(
                "{label}: max |logit - llama.cpp| = {worst:.3} (bound {bound:.3}, logits within ±{span:.1}), greedy {} of {} tokens before a near-tie",
                robust,
                want.len()
            );
            if worst > bound {
                failures.push(format!(
                    "{label}: logits differ from llama.cpp's by {worst}, more than {bound}"
                ));
            }
            if got[..robust] != want[..robust] {
                failures.push(format!(
                    "{label}: greedy tokens {:?} before the first near-tie, llama.cpp's {:?}",
                    &got[..robust],
                    &want[..robust]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn scalar() {
    common::on_isa(Isa::Scalar, "scalar", check_all);
}

#[test]
fn avx2() {
    common::on_isa(Isa::Avx2, "avx2", check_all);
}

#[test]
fn avx512() {
    common::on_isa(Isa::Avx512, "avx512", check_all);
}
