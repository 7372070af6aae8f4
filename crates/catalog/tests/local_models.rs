//! Local models described from their own metadata: the real test models
//! (two GGUF files that say `general.license = apache-2.0` and `gemma`, and
//! the all-MiniLM-L6-v2 checkpoint directory), and Hugging Face directories
//! made here.

// A failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use lucid_catalog::{Format, Licenses, Use, VerdictKind, check, describe_local, front_matter};

/// A model file put in `.cache/models` by `scripts/fetch-test-models.sh`.
fn cached_model(name: &str) -> PathBuf {
    let path =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.cache/models")).join(name);
    assert!(
        path.is_file(),
        "{} is missing; run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

#[test]
fn smollm2_resolves_from_its_gguf_metadata() {
    let d = describe_local(cached_model("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    assert_eq!(d.license.as_deref(), Some("apache-2.0"));
    assert_eq!(d.license_source, Some("general.license"));
    assert_eq!(d.format, Some(Format::Gguf));
    assert_eq!(d.architecture.as_deref(), Some("llama"));
    assert_eq!(d.organization.as_deref(), Some("HuggingFaceTB"));
    assert_eq!(d.size_label.as_deref(), Some("135M"));
    assert_eq!(d.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(d.context_length, Some(8192));
    assert_eq!(d.size(), 98_362_432);
    assert_eq!(d.entry.map(|e| e.name.as_str()), Some("smollm2"));
    let license = Licenses::builtin()
        .license(d.license.as_deref().unwrap())
        .unwrap();
    assert_eq!(license.id.as_str(), "apache-2.0");
    assert_eq!(d.license_id().as_deref(), Some("apache-2.0"));
}

#[test]
fn gemma3_resolves_from_its_gguf_metadata() {
    let d = describe_local(cached_model("gemma-3-270m-q4_k_m.gguf")).unwrap();
    assert_eq!(d.license.as_deref(), Some("gemma"));
    assert_eq!(d.architecture.as_deref(), Some("gemma3"));
    assert_eq!(d.name.as_deref(), Some("Gemma 3 270m"));
    assert_eq!(d.size_label.as_deref(), Some("270M"));
    assert_eq!(d.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(d.entry.map(|e| e.name.as_str()), Some("gemma3"));
    let license = Licenses::builtin().license("gemma").unwrap();
    assert_eq!(license.name, "Gemma Terms of Use");
    let v = check(d.license_id().as_deref().unwrap(), &[Use::Distill]).remove(0);
    assert_eq!(v.verdict, VerdictKind::Conditional);
}

#[test]
fn all_minilm_checkpoint_directory_resolves_to_its_entry() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.cache/models/all-MiniLM-L6-v2"
    ));
    assert!(
        dir.is_dir(),
        "{} is missing; run scripts/fetch-test-models.sh first",
        dir.display()
    );
    let d = describe_local(&dir).unwrap();
    assert_eq!(d.format, Some(Format::Safetensors));
    assert_eq!(d.architecture.as_deref(), Some("bert"));
    assert_eq!(d.context_length, Some(512));
    // config.json names the base model it was fine-tuned from; the weights
    // file is what ties the directory to its catalog entry.
    assert_eq!(d.name.as_deref(), Some("nreimers/MiniLM-L6-H384-uncased"));
    assert_eq!(d.entry.map(|e| e.name.as_str()), Some("all-minilm"));
    assert_eq!(d.license_id().as_deref(), Some("apache-2.0"));
}

#[test]
fn a_config_of_the_same_size_is_not_a_catalog_model() {
    // all-minilm's config.json is 612 bytes; another model's may be too.
    let dir = tempfile::tempdir().unwrap();
    let mut config = r#"{"model_type": "llama", "_name_or_path": "someone/other"}"#.to_owned();
    config.push_str(&" ".repeat(612 - config.len()));
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let d = describe_local(dir.path()).unwrap();
    assert!(d.entry.is_none(), "{:?}", d.entry.map(|e| &e.name));
}

#[test]
fn a_renamed_copy_is_described_from_its_metadata_alone() {
    // The same bytes under another name: no catalog file matches, but
    // `general.name` and `general.size_label` still find Gemma 3, and the
    // license comes from the file either way.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("renamed.gguf");
    std::fs::copy(cached_model("gemma-3-270m-q4_k_m.gguf"), &copy).unwrap();
    let d = describe_local(&copy).unwrap();
    assert_eq!(d.license_id().as_deref(), Some("gemma"));
    assert_eq!(d.entry.map(|e| e.name.as_str()), Some("gemma3"));

    let copy = dir.path().join("other.gguf");
    std::fs::copy(cached_model("SmolLM2-135M-Instruct.Q4_1.gguf"), &copy).unwrap();
    let d = describe_local(&copy).unwrap();
    assert!(d.entry.is_none(), "{:?}", d.entry.map(|e| &e.name));
    assert_eq!(d.license_id().as_deref(), Some("apache-2.0"));
}

#[test]
fn hugging_face_directory_with_a_model_card() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("my-finetune");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"_name_or_path": "someone/my-finetune", "model_type": "qwen2", "max_position_embeddings": 32768}"#,
    )
    .unwrap();
    std::fs::write(
        model.join("README.md"),
        "---\nlicense: other\nlicense_name: qwen-research\nlicense_link: https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE\nbase_model:\n- Qwen/Qwen2.5-3B-Instruct\ntags: [a, b]\n---\n# My finetune\nlicense: not-this\n",
    )
    .unwrap();
    std::fs::write(model.join("model.safetensors"), b"not really").unwrap();
    let d = describe_local(&model).unwrap();
    assert_eq!(d.license.as_deref(), Some("qwen-research"));
    assert_eq!(d.license_source, Some("README.md front matter"));
    assert_eq!(d.architecture.as_deref(), Some("qwen2"));
    assert_eq!(d.context_length, Some(32768));
    assert_eq!(d.base_model.as_deref(), Some("Qwen/Qwen2.5-3B-Instruct"));
    assert_eq!(d.format, Some(Format::Safetensors));
    assert!(d.entry.is_none());
    assert_eq!(d.files.len(), 3);
    assert_eq!(
        check(d.license_id().as_deref().unwrap(), &[Use::Commercial])[0].verdict,
        VerdictKind::Forbidden
    );
}

#[test]
fn hugging_face_directory_of_a_catalog_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("snapshot");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        r#"{"_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "model_type": "qwen2"}"#,
    )
    .unwrap();
    let d = describe_local(&model).unwrap();
    assert_eq!(
        d.entry.map(|e| e.name.as_str()),
        Some("qwen2.5-0.5b-instruct")
    );
    assert_eq!(d.license_id().as_deref(), Some("apache-2.0"));
}

#[test]
fn a_directory_without_metadata_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let err = describe_local(dir.path()).unwrap_err();
    assert!(err.to_string().contains("neither a GGUF file"), "{err}");
    let err = describe_local(dir.path().join("missing.gguf")).unwrap_err();
    assert!(err.to_string().contains("missing.gguf"), "{err}");
    let bad = dir.path().join("config.json");
    std::fs::write(&bad, "{").unwrap();
    let err = describe_local(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("config.json: not valid JSON"),
        "{err}"
    );
}

#[test]
fn front_matter_forms() {
    for (text, key, expect) in [
        ("---\nlicense: mit\n---\n", "license", vec!["mit"]),
        (
            "---\nlicense: \"apache-2.0\"\n---\n",
            "license",
            vec!["apache-2.0"],
        ),
        ("---\nlicense: 'gemma'\n---\n", "license", vec!["gemma"]),
        (
            "---\nbase_model:\n  - a/b\n  - c/d\n---\n",
            "base_model",
            vec!["a/b", "c/d"],
        ),
        (
            "---\nlanguage: [en, fr]\n---\n",
            "language",
            vec!["en", "fr"],
        ),
        ("no front matter\nlicense: mit\n", "license", vec![]),
        ("---\nlicense: mit\n", "license", vec!["mit"]),
    ] {
        let fm = front_matter(text);
        let got: Vec<&str> = fm
            .get(key)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(got, expect, "{text:?}");
    }
}
