//! `lucid license`, `lucid models` and `lucid bom` through the built binary.
//!
//! The BOM that `lucid bom` writes is compared, with its serial number and
//! timestamp redacted, to what `lucid_catalog::bom::cyclonedx` makes of the
//! same models; the catalog crate's `tests/bom.rs` validates that output
//! against the CycloneDX 1.6 schema.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lucid_catalog::bom::{BomModel, BomOptions, cyclonedx};
use lucid_catalog::{Catalog, Licenses};
use serde_json::Value;

fn lucid(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lucid"));
    cmd.env("LUCID_HOME", home).env_remove("LUCID_LOCAL_MODELS");
    cmd
}

fn run(home: &Path, args: &[&str]) -> Output {
    lucid(home).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn cached_model(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing; run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

fn check_json(home: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let out = run(home, args);
    let json: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code(), json)
}

#[test]
fn gemma3_distill_is_conditional_on_the_model_derivative_clause() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        &["license", "check", "gemma3", "--use", "distill"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("gemma3: Gemma Terms of Use (gemma)"),
        "{text}"
    );
    assert!(
        text.contains("distill               conditional  Gemma Terms of Use"),
        "{text}"
    );
    assert!(text.contains("§1.1(e), 3.1, 3.2"), "{text}");
    assert!(text.contains("Model Derivative"), "{text}");

    let (code, json) = check_json(
        home.path(),
        &["license", "check", "gemma3", "--use", "distill", "--json"],
    );
    assert_eq!(code, Some(0));
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["license", "model", "verdicts"]);
    assert_eq!(json["model"], "gemma3");
    assert_eq!(json["license"], "gemma");
    let v = &json["verdicts"][0];
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["clause", "conditions", "use", "verdict"]);
    assert_eq!(v["use"], "distill");
    assert_eq!(v["verdict"], "conditional");
    assert!(v["clause"].as_str().unwrap().contains("§1.1(e)"));
    assert!(
        v["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("Prohibited Use Policy"))
    );
}

#[test]
fn smollm2_commercial_is_allowed_under_apache_section_2() {
    let home = tempfile::tempdir().unwrap();
    let (code, json) = check_json(
        home.path(),
        &[
            "license",
            "check",
            "smollm2",
            "--use",
            "commercial",
            "--json",
        ],
    );
    assert_eq!(code, Some(0));
    assert_eq!(json["model"], "smollm2");
    assert_eq!(json["license"], "apache-2.0");
    assert_eq!(json["verdicts"][0]["verdict"], "allowed");
    assert!(
        json["verdicts"][0]["clause"]
            .as_str()
            .unwrap()
            .starts_with("Apache License, Version 2.0 §2:")
    );
    assert_eq!(json["verdicts"][0]["conditions"], serde_json::json!([]));

    // The same file on disk, described from its own `general.license`.
    let path = cached_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let path = path.to_str().unwrap();
    let (code, json) = check_json(
        home.path(),
        &[
            "license",
            "check",
            path,
            "--use",
            "commercial,distill",
            "--json",
        ],
    );
    assert_eq!(code, Some(0));
    assert_eq!(json["model"], path);
    assert_eq!(json["license"], "apache-2.0");
    assert_eq!(json["verdicts"].as_array().unwrap().len(), 2);
}

#[test]
fn a_forbidden_use_exits_3_and_names_the_clause() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        &[
            "license",
            "check",
            "llama-3.2-1b-instruct",
            "--use",
            "commercial",
            "--use",
            "over-700m-mau",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("commercial            conditional"), "{text}");
    assert!(
        text.contains(
            "over-700m-mau         forbidden    Llama 3.2 Community License Agreement §2"
        ),
        "{text}"
    );
    assert!(text.contains("700 million"), "{text}");

    let (code, json) = check_json(
        home.path(),
        &[
            "license",
            "check",
            "qwen2.5-3b-instruct",
            "--use",
            "commercial",
            "--json",
        ],
    );
    assert_eq!(code, Some(3));
    assert_eq!(json["license"], "qwen-research");
    assert_eq!(json["verdicts"][0]["verdict"], "forbidden");
}

#[test]
fn unknown_licenses_and_models() {
    let home = tempfile::tempdir().unwrap();
    // A model card with a license lucid does not know: unknown, never allowed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlicense: some-custom-license\n---\n",
    )
    .unwrap();
    let out = run(
        home.path(),
        &[
            "license",
            "check",
            dir.path().to_str().unwrap(),
            "--use",
            "commercial",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["license"], "some-custom-license");
    assert_eq!(json["verdicts"][0]["verdict"], "unknown");
    assert_eq!(json["verdicts"][0]["clause"], Value::Null);
    assert!(
        stderr(&out).contains("warning: lucid does not know"),
        "{}",
        stderr(&out)
    );

    let out = run(
        home.path(),
        &["license", "check", "smolm2", "--use", "commercial"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown model `smolm2`; did you mean `smollm2`?"),
        "{}",
        stderr(&out)
    );

    let out = run(
        home.path(),
        &["license", "check", "smollm2", "--use", "training"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown use `training`; valid uses are `commercial`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn show_lists_every_use() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), &["license", "show", "gemma3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("https://ai.google.dev/gemma/terms"), "{text}");
    assert!(text.contains("Gemma Prohibited Use Policy"), "{text}");
    for line in [
        "commercial            conditional",
        "redistribute-weights  conditional",
        "modify                conditional",
        "distill               conditional",
        "over-700m-mau         allowed",
        "prohibited-domain     forbidden",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    // A license id works too, and a license with an uncarried text says so.
    let out = run(home.path(), &["license", "show", "anthropic-api-terms"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("[cited by URL, text not checked]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn models_lists_catalog_models_with_kind_license_and_presence() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), &["models"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("NAME"), "{header}");
    for word in ["KIND", "PARAMS", "SIZE", "LICENSE", "ON DISK"] {
        assert!(header.contains(word), "{header}");
    }
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("smollm2"),
        [
            "smollm2",
            "open-weight",
            "135M",
            "93.81",
            "MiB",
            "apache-2.0",
            "no"
        ]
    );
    assert_eq!(
        row("gpt-4o"),
        [
            "gpt-4o",
            "proprietary-api",
            "-",
            "-",
            "openai-api-terms",
            "-"
        ]
    );
    assert_eq!(row("apertus-8b-instruct")[1], "public-institution");
    assert_eq!(row("gemma3")[5], "gemma");
}

#[test]
fn bom_is_the_validated_cyclonedx_document() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("bom.json");
    let out = run(
        home.path(),
        &[
            "bom",
            "smollm2",
            "gemma3",
            "gpt-4o",
            "-o",
            out_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut bom: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let serial = bom["serialNumber"].as_str().unwrap().to_owned();
    assert!(
        serial.starts_with("urn:uuid:") && serial.len() == 45,
        "{serial}"
    );
    let timestamp = bom["metadata"]["timestamp"].as_str().unwrap().to_owned();
    assert!(
        timestamp.ends_with('Z') && timestamp.len() == 20,
        "{timestamp}"
    );

    let catalog = Catalog::builtin();
    let models: Vec<BomModel> = ["smollm2", "gemma3", "gpt-4o"]
        .iter()
        .map(|n| BomModel::Entry(catalog.find(n).unwrap()))
        .collect();
    let expected = cyclonedx(
        &models,
        Licenses::builtin(),
        &BomOptions {
            serial_number: serial["urn:uuid:".len()..].to_owned(),
            timestamp,
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    );
    assert_eq!(bom, expected);

    // The same models named by a config file, on stdout.
    let config = dir.path().join("lucid.toml");
    std::fs::write(
        &config,
        "[server]\nmodels = [\"smollm2\"]\n[[routes]]\nmodel = \"gemma3\"\n[[routes]]\nmodel = \"gpt-4o\"\n",
    )
    .unwrap();
    let out = run(home.path(), &["bom", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let from_config: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = from_config["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    for name in ["smollm2", "gemma3", "gpt-4o"] {
        assert!(names.contains(&name), "{names:?}");
    }
    bom["serialNumber"] = Value::Null;
    assert_ne!(bom["serialNumber"], from_config["serialNumber"]);

    // Nothing to list is an error, not an empty BOM.
    let out = run(home.path(), &["bom"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no models given"), "{}", stderr(&out));
}
