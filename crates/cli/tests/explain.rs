//! `lucid explain` through the built binary, on the real SmolLM2 and Gemma 3
//! from `.cache/models` (put there by `scripts/fetch-test-models.sh`):
//! SmolLM2 is found by its catalog name through a private store whose only
//! source is that directory; its `--json` trace has the keys other tools
//! read, and " Paris" ranks near the top after "The capital of France is";
//! the terminal view has every section and no colour when piped. An
//! embedding model (all-MiniLM-L6-v2) gets the semantic view of several
//! texts instead.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn models_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models");
    for file in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{} is missing: run scripts/fetch-test-models.sh first",
            dir.join(file).display()
        );
    }
    dir
}

/// A fresh `LUCID_HOME` under the system temp directory, removed on drop.
struct Home(PathBuf);

impl Home {
    fn new(name: &str) -> Home {
        let path =
            std::env::temp_dir().join(format!("lucid-explain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Home(path)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `lucid explain ARGS` with a private store that can only pull from the
/// local test models (no network).
fn explain(home: &Home, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_lucid"))
        .arg("explain")
        .args(args)
        .args(["--threads", "2"])
        .env("LUCID_HOME", &home.0)
        .env("LUCID_LOCAL_MODELS", models_dir())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("LUCID_PYPI_URL", "http://127.0.0.1:9/pypi")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "lucid explain {args:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn smollm2_json_trace_ranks_paris_near_the_top() {
    let home = Home::new("json");
    let out = explain(
        &home,
        &[
            "smollm2",
            "The capital of France is",
            "--json",
            "--max-tokens",
            "2",
            "--top-k",
            "5",
            "--attention",
            "3.1",
            "--lens",
        ],
    );
    let v = json(&out);
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 5);
    assert!(
        tokens
            .iter()
            .all(|t| t["id"].is_u64() && t["text"].is_string())
    );
    assert_eq!(tokens[1]["text"], " capital");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for s in steps {
        let top = s["top"].as_array().unwrap();
        assert_eq!(top.len(), 5);
        assert!(
            top.iter()
                .all(|t| t["id"].is_u64() && t["text"].is_string() && t["prob"].is_f64())
        );
        assert!(
            top.windows(2)
                .all(|w| w[0]["prob"].as_f64() >= w[1]["prob"].as_f64())
        );
        for key in ["id", "text", "prob", "rank"] {
            assert!(!s["chosen"][key].is_null(), "chosen.{key}");
        }
    }
    let first = steps[0]["top"].as_array().unwrap();
    let rank = first
        .iter()
        .position(|t| t["text"] == " Paris")
        .map(|i| i + 1);
    assert!(
        rank.is_some_and(|r| r <= 3),
        "\" Paris\" ranks {rank:?}: {first:?}"
    );
    let maps = v["attention"].as_array().unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!(
        (maps[0]["layer"].as_u64(), maps[0]["head"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(maps[0]["weights"].as_array().unwrap().len(), 6 * 6);
    assert_eq!(v["lens"]["layers"].as_array().unwrap().len(), 31);
    assert_eq!(v["lens"]["positions"].as_array().unwrap().len(), 6);
    assert_eq!(v["model_name"], "smollm2");
}

#[test]
fn terminal_view_has_every_section_and_no_colour_when_piped() {
    let home = Home::new("text");
    let out = explain(
        &home,
        &[
            "smollm2",
            "The capital of France is",
            "--attention",
            "29.3",
            "--lens",
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "Tokens (5)",
        "[The][ capital][ of][ France][ is]",
        "0:504",
        "Step 1 after \" is\"",
        "\" Paris\"",
        "attended most:",
        "Attention, layer 29 head 3",
        "heatmap",
        "Logit lens",
        "L29",
        "embed",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "colour codes in piped output:\n{text}"
    );
}

#[test]
fn gemma3_runs_through_the_same_paths() {
    let home = Home::new("gemma");
    let path = models_dir().join("gemma-3-270m-q4_k_m.gguf");
    let out = explain(
        &home,
        &[
            path.to_str().unwrap(),
            "The capital of France is",
            "--json",
            "--lens",
            "--attention",
            "0.0",
        ],
    );
    let v = json(&out);
    assert_eq!(v["model"]["architecture"], "gemma3");
    assert!(!v["tokens"].as_array().unwrap().is_empty());
    assert_eq!(v["steps"][0]["top"].as_array().unwrap().len(), 10);
    assert_eq!(v["lens"]["layers"].as_array().unwrap().len(), 19);
}

#[test]
fn a_bad_attention_choice_is_explained() {
    let home = Home::new("bad");
    let output = Command::new(env!("CARGO_BIN_EXE_lucid"))
        .args(["explain", "smollm2", "x", "--attention", "3"])
        .env("LUCID_HOME", &home.0)
        .env("LUCID_LOCAL_MODELS", models_dir())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("LAYER.HEAD"), "{err}");
}

/// The semantic view: an embedding model (all-MiniLM-L6-v2, by path) and
/// three texts; the JSON has the keys of the wire format and the terminal
/// view every section, without colour when piped.
#[test]
fn an_embedding_model_gets_the_semantic_view() {
    let home = Home::new("semantic");
    let dir = models_dir().join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-test-models.sh first",
        dir.display()
    );
    let model = dir.to_str().unwrap();
    let texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
    ];
    let mut args = vec![model];
    args.extend(texts);
    args.push("--json");
    let v = json(&explain(&home, &args));
    assert_eq!(v["model"]["role"], "encoder");
    assert_eq!(v["embedding"]["pooling"], "mean");
    assert_eq!(v["texts"].as_array().unwrap().len(), 3);
    assert_eq!(v["texts"][0]["tokens"][0]["text"], "[CLS]");
    assert_eq!(v["texts"][0]["neighbours"][0]["index"], 1);
    let sim = v["similarity"][0][1].as_f64().unwrap();
    assert!((sim - 0.7553).abs() < 1e-3, "{sim}");
    let pair = &v["pairs"][0];
    let sum: f64 = pair["a_contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .sum();
    assert!((sum - pair["similarity"].as_f64().unwrap()).abs() < 1e-5);

    let mut args = vec![model];
    args.extend(texts);
    let text = String::from_utf8(explain(&home, &args).stdout).unwrap();
    for part in [
        "mean pooling, normalized",
        "Texts",
        "#2  \"The new movie is awesome.\"",
        "Similarity",
        "0.7553",
        "Nearest neighbours",
        "#0 → #1 0.7553",
        "Why #0 and #1 are similar (0.7553)",
        "·eating +0.",
        "(sum 0.7553)",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "colour codes in piped output:\n{text}"
    );
}

#[test]
fn several_texts_on_a_generator_ask_for_semantic() {
    let home = Home::new("several");
    let output = Command::new(env!("CARGO_BIN_EXE_lucid"))
        .args(["explain", "smollm2", "one text", "another"])
        .env("LUCID_HOME", &home.0)
        .env("LUCID_LOCAL_MODELS", models_dir())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("--semantic"), "{err}");
    // With it, a generator is compared by its own pooling (the last token).
    let v = json(&explain(
        &home,
        &[
            "smollm2",
            "cats are nice",
            "dogs are nice",
            "--semantic",
            "--json",
        ],
    ));
    assert_eq!(v["model"]["role"], "generator");
    assert_eq!(v["embedding"]["pooling"], "last");
    let a = v["pairs"][0]["a_contributions"].as_array().unwrap();
    let last = a.last().unwrap().as_f64().unwrap();
    assert!((last - v["pairs"][0]["similarity"].as_f64().unwrap()).abs() < 1e-6);
    assert!(a[..a.len() - 1].iter().all(|c| c.as_f64() == Some(0.0)));
}
