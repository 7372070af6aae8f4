//! The glass box on the two real test models, SmolLM2 (Llama family) and
//! Gemma 3 (sliding-window layers, scaled embeddings, pre/post norms):
//! SmolLM2 knows the capital of France, every family runs through the same
//! paths, and the trace is self-consistent (attention rows sum to 1 with
//! nothing attended above the diagonal or outside a sliding window, the
//! lens's top layer is the model's prediction, the probabilities are a
//! softmax of the logits the engine produced).

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use lucid_engine::{ForwardCtx, Hooks, LoadedModel, LogitsFor, SeqInput};
use lucid_glass::{ExplainOptions, GlassError, Limits, Trace, explain, prompt_tokens};

fn model_path(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models")
        .join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

fn smollm2() -> LoadedModel {
    LoadedModel::load(&model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap()
}

fn gemma3() -> LoadedModel {
    LoadedModel::load(&model_path("gemma-3-270m-q4_k_m.gguf")).unwrap()
}

/// The engine's own logits for every position of `tokens`.
fn all_logits(model: &LoadedModel, tokens: &[u32]) -> Vec<f32> {
    let mut ctx = ForwardCtx::new(2);
    let mut cache = model.model.new_cache(Some(tokens.len()));
    let mut seqs = [SeqInput {
        tokens,
        cache: &mut cache,
        logits: LogitsFor::All,
    }];
    model
        .model
        .forward(&mut ctx, &mut seqs, &mut Hooks::none())
        .unwrap();
    ctx.logits().to_vec()
}

fn softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Checks a trace against itself and against the engine's logits.
fn check(label: &str, model: &LoadedModel, trace: &Trace) {
    let info = model.model.info();
    let n = trace.tokens.len() + trace.steps.len() - 1;
    let mut read: Vec<u32> = trace.tokens.iter().map(|t| t.id).collect();
    read.extend(
        trace
            .steps
            .iter()
            .take(trace.steps.len() - 1)
            .map(|s| s.chosen.id),
    );
    let logits = all_logits(model, &read);
    let vocab = info.vocab_size;
    for (i, step) in trace.steps.iter().enumerate() {
        let pos = trace.tokens.len() - 1 + i;
        assert_eq!(step.position, pos);
        let reference = softmax(&logits[pos * vocab..(pos + 1) * vocab]);
        for t in &step.top {
            let want = reference[t.id as usize];
            assert!(
                (t.prob as f64 - want).abs() <= 1e-3 * want + 1e-6,
                "{label} step {i}: {:?} has {}, softmax of the logits {want}",
                t.text,
                t.prob
            );
        }
        let sum: f32 = step.top.iter().map(|t| t.prob).sum();
        assert!(sum <= 1.0 + 1e-4, "{label}: top probabilities sum to {sum}");
    }
    for m in &trace.attention {
        assert_eq!((m.queries, m.keys), (n, n));
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
                "{label}: L{}H{} row {q} looks ahead",
                m.layer,
                m.head
            );
        }
    }
    if let Some(lens) = &trace.lens {
        assert_eq!(lens.layers.len(), info.n_layers + 1);
        assert_eq!(lens.positions.len(), n);
        for column in &lens.positions {
            let top = &column.layers[info.n_layers];
            let pos = column.position;
            let reference = softmax(&logits[pos * vocab..(pos + 1) * vocab]);
            for t in top {
                let want = reference[t.id as usize];
                assert!(
                    (t.prob as f64 - want).abs() <= 1e-3 * want + 1e-6,
                    "{label}: final lens at {pos}: {:?} has {}, the model's logits give {want}",
                    t.text,
                    t.prob
                );
            }
        }
    }
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let model = smollm2();
    let prompt = prompt_tokens(&model, "The capital of France is", false).unwrap();
    let info = model.model.info();
    let options = ExplainOptions {
        max_tokens: 3,
        top_k: 10,
        attention_layers: vec![0, info.n_layers - 1],
        attention_heads: Some(vec![0, 3]),
        lens: true,
        ..ExplainOptions::default()
    };
    let trace = explain(&model, &prompt, &options, &Limits::server(), 2).unwrap();
    let first = &trace.steps[0];
    let rank = first
        .top
        .iter()
        .position(|t| t.text == " Paris")
        .map(|i| i + 1);
    println!(
        "SmolLM2: top {:?}, entropy {:.2} nats, completion {:?}, {:.0} ms (forward {:.0}, lens {:.0})",
        first
            .top
            .iter()
            .take(5)
            .map(|t| (&t.text, t.prob))
            .collect::<Vec<_>>(),
        first.entropy,
        trace.completion,
        trace.timings.total_ms,
        trace.timings.forward_ms,
        trace.timings.lens_ms
    );
    assert!(
        rank.is_some_and(|r| r <= 3),
        "\" Paris\" ranks {rank:?} in {:?}",
        first.top
    );
    assert_eq!(trace.attention.len(), 4);
    assert_eq!(trace.steps.len(), 3);
    assert!(!first.attended.is_empty());
    assert!(
        first
            .attended
            .windows(2)
            .all(|w| w[0].weight >= w[1].weight)
    );
    check("SmolLM2", &model, &trace);
}

#[test]
fn gemma3_runs_through_the_same_paths() {
    let model = gemma3();
    let info = model.model.info().clone();
    let prompt = prompt_tokens(&model, "The capital of France is", false).unwrap();
    let options = ExplainOptions {
        max_tokens: 2,
        top_k: 5,
        attention_layers: (0..info.n_layers).collect(),
        attention_heads: Some(vec![0]),
        lens: true,
        ..ExplainOptions::default()
    };
    let trace = explain(&model, &prompt, &options, &Limits::server(), 2).unwrap();
    println!(
        "Gemma 3: top {:?}, {:.0} ms (lens {:.0})",
        trace.steps[0]
            .top
            .iter()
            .map(|t| (&t.text, t.prob))
            .collect::<Vec<_>>(),
        trace.timings.total_ms,
        trace.timings.lens_ms
    );
    assert_eq!(trace.model.architecture, "gemma3");
    assert_eq!(trace.attention.len(), info.n_layers);
    check("Gemma 3", &model, &trace);
    // The chat template path tokenizes too.
    let chat = prompt_tokens(&model, "Hi", true).unwrap();
    assert!(chat.len() > 3);
}

#[test]
fn requests_outside_the_model_or_the_limits_are_refused() {
    let model = smollm2();
    let info = model.model.info().clone();
    let prompt = prompt_tokens(&model, "Hello", false).unwrap();
    let run = |o: ExplainOptions| explain(&model, &prompt, &o, &Limits::server(), 1);
    let err = run(ExplainOptions {
        attention_layers: vec![info.n_layers],
        ..ExplainOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, GlassError::LayerOutOfRange { .. }), "{err}");
    let err = run(ExplainOptions {
        attention_layers: vec![0],
        attention_heads: Some(vec![info.n_heads]),
        ..ExplainOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, GlassError::HeadOutOfRange { .. }), "{err}");
    let err = run(ExplainOptions {
        top_k: 1000,
        ..ExplainOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, GlassError::TooLarge { what: "top_k", .. }),
        "{err}"
    );
    let err = run(ExplainOptions {
        top_k: 0,
        ..ExplainOptions::default()
    })
    .unwrap_err();
    assert!(matches!(err, GlassError::Zero { .. }), "{err}");
    let err = explain(
        &model,
        &[],
        &ExplainOptions::default(),
        &Limits::server(),
        1,
    )
    .unwrap_err();
    assert!(matches!(err, GlassError::EmptyPrompt), "{err}");
    let long = vec![1u32; 2000];
    let err = explain(
        &model,
        &long,
        &ExplainOptions::default(),
        &Limits::server(),
        1,
    )
    .unwrap_err();
    assert!(matches!(err, GlassError::TooLarge { .. }), "{err}");
    let too_big = Limits {
        max_attention_values: 5,
        ..Limits::server()
    };
    let err = explain(
        &model,
        &prompt,
        &ExplainOptions {
            attention_layers: vec![0],
            ..ExplainOptions::default()
        },
        &too_big,
        1,
    )
    .unwrap_err();
    assert!(matches!(err, GlassError::TooLarge { .. }), "{err}");
}

#[test]
fn sampling_with_a_seed_is_reproducible_and_reports_the_rank() {
    let model = smollm2();
    let prompt = prompt_tokens(&model, "Once upon a time", false).unwrap();
    let options = ExplainOptions {
        max_tokens: 4,
        sampling: lucid_engine::SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(7),
            ..lucid_engine::SamplingParams::default()
        },
        attended: 0,
        ..ExplainOptions::default()
    };
    let a = explain(&model, &prompt, &options, &Limits::server(), 2).unwrap();
    let b = explain(&model, &prompt, &options, &Limits::server(), 2).unwrap();
    let ids = |t: &Trace| t.steps.iter().map(|s| s.chosen.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    for s in &a.steps {
        assert!(s.attended.is_empty());
        let better = s.top.iter().filter(|t| t.prob > s.chosen.prob).count();
        if s.chosen.rank <= s.top.len() {
            assert_eq!(s.chosen.rank, better + 1);
        }
    }
}

#[test]
fn a_caller_can_stop_a_run_between_steps() {
    let model = smollm2();
    let prompt = prompt_tokens(&model, "Once upon a time", false).unwrap();
    let options = ExplainOptions {
        max_tokens: 5,
        lens: true,
        ..ExplainOptions::default()
    };
    let mut events = Vec::new();
    let trace = lucid_glass::explain_with(&model, &prompt, &options, &Limits::server(), 2, |e| {
        events.push(match e {
            lucid_glass::Event::Step { index, .. } => format!("step {index}"),
            lucid_glass::Event::Lens { columns } => format!("lens {}", columns.len()),
        });
        if events.len() == 3 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(
        events,
        [
            "step 0",
            format!("lens {}", prompt.len()).as_str(),
            "step 1"
        ]
    );
    assert_eq!(trace.stop, lucid_glass::StopReason::Cancelled);
    assert_eq!(trace.steps.len(), 2);
}
