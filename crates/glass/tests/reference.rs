//! The glass box's traces held to what Hugging Face transformers computes.
//!
//! The fixtures in `tests/fixtures/families` (made by
//! `scripts/fixtures/make_fixtures.py`) are tiny random-weight checkpoints of
//! every family lucid reads from Hugging Face, with transformers' logits, hidden states
//! (`output_hidden_states`-style block outputs) and attention probabilities
//! (`output_attentions=True`) for three prompts. The engine's own tests
//! check its hook points against them; these check this crate's layer on top:
//!
//! - the trace's attention maps equal transformers' probabilities, every row
//!   sums to 1 and nothing above the diagonal is attended to;
//! - each step's probabilities equal a softmax of transformers' logits;
//! - the logit lens equals a reference lens computed here, in f64, from
//!   transformers' hidden states and the checkpoint's own final-norm and
//!   unembedding weights; its last layer equals transformers' final logits;
//! - a run of several steps (attention rows and lens columns gathered one
//!   decode pass at a time) equals one pass over the same tokens, and
//!   greedy steps follow transformers' greedy continuation.
//!
//! Tolerances follow the engine's fixture tests (its KV cache holds keys and
//! values in f16, the largest difference from transformers' f32): attention
//! 5e-3, probabilities 2% relative (logits agree to 5e-3).

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lucid_engine::LoadedModel;
use lucid_glass::{ExplainOptions, Limits, Trace, explain};
use serde_json::Value as Json;

const ATTENTION: f32 = 5e-3;
const PROB_REL: f64 = 2e-2;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families")
}

fn fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/families exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("reference.safetensors").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 4,
        "expected the family fixtures, found {dirs:?}"
    );
    dirs
}

type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of some safetensors files, as f32.
fn read_safetensors(files: &[PathBuf]) -> Tensors {
    let mut out = HashMap::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => panic!("{}: {name} is {other:?}", f.display()),
            };
            out.insert(name, (view.shape().to_vec(), values));
        }
    }
    out
}

/// One fixture: the model, transformers' outputs, and what the reference
/// lens needs from the checkpoint.
struct Fixture {
    name: String,
    model: LoadedModel,
    json: Json,
    reference: Tensors,
    /// Final norm weight, its bias (none for an RMS norm), and its epsilon.
    norm: (Vec<f32>, Option<Vec<f32>>, f64),
    /// The unembedding `[vocab, d]` and its bias.
    unembed: (Vec<f32>, Option<Vec<f32>>),
    /// Gemma 2's final logit soft-cap.
    softcap: Option<f64>,
}

impl Fixture {
    fn load(dir: &Path) -> Fixture {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = LoadedModel::load(dir).unwrap();
        let json: Json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let config: Json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let reference = read_safetensors(&[dir.join("reference.safetensors")]);
        let shards: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let f = p.file_name().unwrap().to_string_lossy();
                f.starts_with("model") && f.ends_with(".safetensors")
            })
            .collect();
        let mut w = read_safetensors(&shards);
        let mut take = |names: &[&str]| -> Option<Vec<f32>> {
            names.iter().find_map(|n| w.remove(*n).map(|t| t.1))
        };
        let mut norm_w = take(&[
            "transformer.ln_f.weight",
            "gpt_neox.final_layer_norm.weight",
            "model.norm.weight",
        ])
        .unwrap();
        // The Llama-style families norm by root mean square, without a bias;
        // Gemma stores its norm weights as `w - 1`.
        let norm_b = take(&["transformer.ln_f.bias", "gpt_neox.final_layer_norm.bias"]);
        if config["model_type"] == "gemma2" {
            norm_w.iter_mut().for_each(|w| *w += 1.0);
        }
        let head = take(&[
            "lm_head.weight",
            "embed_out.weight",
            "transformer.wte.weight",
            "model.embed_tokens.weight",
        ])
        .unwrap();
        let head_bias = take(&["lm_head.bias"]);
        let eps = config["layer_norm_epsilon"]
            .as_f64()
            .or_else(|| config["layer_norm_eps"].as_f64())
            .or_else(|| config["rms_norm_eps"].as_f64())
            .unwrap();
        let softcap = config["final_logit_softcapping"].as_f64();
        Fixture {
            name,
            model,
            json,
            reference,
            norm: (norm_w, norm_b, eps),
            unembed: (head, head_bias),
            softcap,
        }
    }

    fn prompts(&self) -> Vec<Vec<u32>> {
        self.json["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect()
    }

    fn tensor(&self, name: &str) -> &[f32] {
        &self
            .reference
            .get(name)
            .unwrap_or_else(|| panic!("{}: no {name}", self.name))
            .1
    }

    /// The reference lens of one residual row: the final norm (layer norm
    /// with a bias, else RMS norm), the unembedding and any soft-cap, in
    /// f64; returns logits.
    fn lens_row(&self, x: &[f32]) -> Vec<f64> {
        let (w, b, eps) = &self.norm;
        let d = x.len();
        let normed: Vec<f64> = match b {
            Some(b) => {
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                (0..d)
                    .map(|i| (x[i] as f64 - mean) / (var + eps).sqrt() * w[i] as f64 + b[i] as f64)
                    .collect()
            }
            None => {
                let ms = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
                (0..d)
                    .map(|i| x[i] as f64 / (ms + eps).sqrt() * w[i] as f64)
                    .collect()
            }
        };
        let (head, bias) = &self.unembed;
        head.chunks_exact(d)
            .enumerate()
            .map(|(v, row)| {
                let dot: f64 = row.iter().zip(&normed).map(|(a, b)| *a as f64 * b).sum();
                let logit = dot + bias.as_ref().map_or(0.0, |b| b[v] as f64);
                self.softcap.map_or(logit, |cap| cap * (logit / cap).tanh())
            })
            .collect()
    }
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Every probability in `got` (id, prob) is the reference softmax's.
fn check_probs(label: &str, got: &[(u32, f32)], reference: &[f64]) -> f64 {
    let mut worst = 0f64;
    for &(id, p) in got {
        let want = reference[id as usize];
        let err = (p as f64 - want).abs();
        assert!(
            err <= PROB_REL * want + 1e-6,
            "{label}: token {id} has probability {p}, reference {want}"
        );
        worst = worst.max(err / want.max(1e-12));
    }
    worst
}

fn everything(model: &LoadedModel, steps: usize) -> ExplainOptions {
    let info = model.model.info();
    ExplainOptions {
        max_tokens: steps,
        top_k: 20,
        attention_layers: (0..info.n_layers).collect(),
        attention_heads: None,
        lens: true,
        lens_top_k: 5,
        ..ExplainOptions::default()
    }
}

fn run(model: &LoadedModel, ids: &[u32], options: &ExplainOptions) -> Trace {
    explain(model, ids, options, &Limits::none(), 2).unwrap()
}

#[test]
fn traces_match_transformers() {
    for dir in fixtures() {
        let f = Fixture::load(&dir);
        let info = f.model.model.info().clone();
        let vocab = info.vocab_size;
        let (mut worst_attn, mut worst_prob, mut worst_lens) = (0f32, 0f64, 0f64);
        for (p, ids) in f.prompts().iter().enumerate() {
            let label = format!("{} prompt {p}", f.name);
            let trace = run(&f.model, ids, &everything(&f.model, 1));
            let n = ids.len();
            assert_eq!(
                trace.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
                *ids,
                "{label}"
            );
            assert_eq!(trace.steps.len(), 1, "{label}");

            // Attention: every layer and head, against output_attentions.
            assert_eq!(
                trace.attention.len(),
                info.n_layers * info.n_heads,
                "{label}"
            );
            for m in &trace.attention {
                assert_eq!((m.queries, m.keys), (n, n), "{label}");
                let reference = f.tensor(&format!("p{p}.attn.{}", m.layer));
                let reference = &reference[m.head * n * n..(m.head + 1) * n * n];
                for q in 0..n {
                    let row = m.row(q).unwrap();
                    let sum: f32 = row.iter().sum();
                    assert!(
                        (sum - 1.0).abs() < 1e-4,
                        "{label}: L{}H{} row {q} sums to {sum}",
                        m.layer,
                        m.head
                    );
                    assert!(
                        row[q + 1..].iter().all(|&w| w == 0.0),
                        "{label}: L{}H{} row {q} attends to a later position",
                        m.layer,
                        m.head
                    );
                    for k in 0..n {
                        let err = (row[k] - reference[q * n + k]).abs();
                        worst_attn = worst_attn.max(err);
                        assert!(
                            err < ATTENTION,
                            "{label}: L{}H{} [{q},{k}] off by {err}",
                            m.layer,
                            m.head
                        );
                    }
                }
            }

            // The step: probabilities are the softmax of transformers' logits.
            let logits = f.tensor(&format!("p{p}.logits"));
            let last = softmax(&to_f64(&logits[(n - 1) * vocab..n * vocab]));
            let step = &trace.steps[0];
            assert_eq!(step.position, n - 1);
            let top: Vec<(u32, f32)> = step.top.iter().map(|t| (t.id, t.prob)).collect();
            worst_prob = worst_prob.max(check_probs(&label, &top, &last));
            check_probs(&label, &[(step.chosen.id, step.chosen.prob)], &last);
            assert!(
                step.top.windows(2).all(|w| w[0].prob >= w[1].prob),
                "{label}: top is not sorted"
            );
            assert_eq!(
                step.chosen.id, step.top[0].id,
                "{label}: greedy picks the most probable"
            );
            assert_eq!(step.chosen.rank, 1);
            let entropy: f64 = -last
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|p| p * p.ln())
                .sum::<f64>();
            assert!(
                (step.entropy as f64 - entropy).abs() < 1e-2 * entropy.max(1.0),
                "{label}: entropy"
            );

            // The lens: a reference lens from transformers' hidden states.
            let lens = trace.lens.as_ref().unwrap();
            assert_eq!(lens.layers.len(), info.n_layers + 1);
            assert_eq!(lens.layers[0], "embed");
            assert_eq!(
                lens.layers[info.n_layers],
                format!("blocks.{}.resid_post", info.n_layers - 1)
            );
            assert_eq!(lens.positions.len(), n);
            let d = info.d_model;
            for (li, name) in lens.layers.iter().enumerate() {
                let hidden = if li == 0 {
                    f.tensor(&format!("p{p}.embed"))
                } else {
                    f.tensor(&format!("p{p}.resid_post.{}", li - 1))
                };
                for (t, column) in lens.positions.iter().enumerate() {
                    assert_eq!(column.position, t);
                    let reference = softmax(&f.lens_row(&hidden[t * d..(t + 1) * d]));
                    let cell: Vec<(u32, f32)> =
                        column.layers[li].iter().map(|c| (c.id, c.prob)).collect();
                    assert_eq!(cell.len(), 5);
                    worst_lens = worst_lens.max(check_probs(
                        &format!("{label} lens {name} pos {t}"),
                        &cell,
                        &reference,
                    ));
                    if li == info.n_layers {
                        // The last layer's lens is the model's prediction.
                        let final_probs = softmax(&to_f64(&logits[t * vocab..(t + 1) * vocab]));
                        check_probs(&format!("{label} final lens pos {t}"), &cell, &final_probs);
                    }
                }
            }
            // At the last position the lens's top layer is the step itself.
            let top_cell = &lens.positions[n - 1].layers[info.n_layers];
            for (c, t) in top_cell.iter().zip(&step.top) {
                assert_eq!(c.id, t.id, "{label}");
                assert!(
                    (c.prob - t.prob).abs() < 1e-5,
                    "{label}: lens {} vs step {}",
                    c.prob,
                    t.prob
                );
            }
        }
        println!(
            "{}: attention max error {worst_attn:.2e}, step probabilities max relative error {worst_prob:.2e}, lens {worst_lens:.2e}",
            f.name
        );
    }
}

#[test]
fn decode_steps_match_one_pass_and_transformers_greedy() {
    for dir in fixtures() {
        let f = Fixture::load(&dir);
        let info = f.model.model.info().clone();
        let g = &f.json["greedy"];
        let prompt = &f.prompts()[g["prompt"].as_u64().unwrap() as usize];
        let expected: Vec<u32> = g["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let steps = 6;
        let stepped = run(&f.model, prompt, &everything(&f.model, steps));
        let chosen: Vec<u32> = stepped.steps.iter().map(|s| s.chosen.id).collect();
        assert_eq!(chosen, expected[..steps], "{}: greedy continuation", f.name);
        assert_eq!(stepped.completion, f.model.tokenizer.decode(&chosen, true));
        for (i, s) in stepped.steps.iter().enumerate() {
            assert_eq!(s.position, prompt.len() - 1 + i);
        }

        // The same tokens read in one pass give the same maps and lens.
        let mut all = prompt.clone();
        all.extend_from_slice(&chosen[..steps - 1]);
        let once = run(&f.model, &all, &everything(&f.model, 1));
        let n = all.len();
        assert_eq!(stepped.attention.len(), once.attention.len());
        for (a, b) in stepped.attention.iter().zip(&once.attention) {
            assert_eq!(
                (a.layer, a.head, a.queries, a.keys),
                (b.layer, b.head, n, n)
            );
            let err = a
                .weights
                .iter()
                .zip(&b.weights)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                err < 1e-3,
                "{}: L{}H{} stepped vs one pass off by {err}",
                f.name,
                a.layer,
                a.head
            );
        }
        let (la, lb) = (stepped.lens.unwrap(), once.lens.unwrap());
        assert_eq!(la.positions.len(), n);
        for (ca, cb) in la.positions.iter().zip(&lb.positions) {
            assert_eq!(ca.position, cb.position);
            for l in 0..=info.n_layers {
                assert_eq!(
                    ca.layers[l][0].id, cb.layers[l][0].id,
                    "{}: lens top at {}",
                    f.name, ca.position
                );
                assert!((ca.layers[l][0].prob - cb.layers[l][0].prob).abs() < 1e-3);
            }
        }
        // The last stepped prediction is the one-pass prediction.
        assert_eq!(stepped.steps[steps - 1].top[0].id, once.steps[0].top[0].id);
        assert!((stepped.steps[steps - 1].entropy - once.steps[0].entropy).abs() < 1e-3);
    }
}
