//! A fake HTTP server on 127.0.0.1 standing in for the Hugging Face hub and
//! PyPI, and helpers to build catalogs and wheels around generated payloads.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_catalog::Catalog;
use lucid_store::Config;
use sha2::{Digest, Sha256};

/// How the server answers one path.
#[derive(Clone, Default)]
pub struct Route {
    pub status: u16,
    pub body: Vec<u8>,
    /// Answer `Range: bytes=N-` with a 206; otherwise always send everything.
    pub honour_range: bool,
    /// Send a `Location` header (with a 302 status).
    pub redirect: Option<String>,
    /// Pause this long after each 16 KiB chunk.
    pub throttle: Option<Duration>,
    /// For the first this-many responses, close the connection after sending
    /// `cut_at` bytes of the body.
    pub cut_times: usize,
    pub cut_at: usize,
}

impl Route {
    pub fn file(body: Vec<u8>) -> Route {
        Route {
            status: 200,
            body,
            honour_range: true,
            ..Route::default()
        }
    }

    pub fn ignoring_range(body: Vec<u8>) -> Route {
        Route {
            honour_range: false,
            ..Route::file(body)
        }
    }

    pub fn json(value: serde_json::Value) -> Route {
        Route::file(value.to_string().into_bytes())
    }

    pub fn status(status: u16) -> Route {
        Route {
            status,
            ..Route::default()
        }
    }

    pub fn redirect(to: &str) -> Route {
        Route {
            status: 302,
            redirect: Some(to.to_owned()),
            ..Route::default()
        }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
    cuts: Mutex<HashMap<String, usize>>,
}

pub struct FakeServer {
    url: String,
    state: Arc<State>,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = accept_state.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeServer { url, state }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), route);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn seen_on(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

fn serve(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    state.seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: headers.clone(),
    });
    let route = state.routes.lock().unwrap().get(&path).cloned();
    let mut stream = stream;
    let Some(route) = route else {
        let _ = respond(&mut stream, 404, &[], b"not found", None, None);
        return;
    };
    if let Some(location) = &route.redirect {
        let _ = respond(
            &mut stream,
            route.status,
            &[("Location", location.clone())],
            b"",
            None,
            None,
        );
        return;
    }
    let len = route.body.len();
    let range_start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, extra, body) = match range_start {
        Some(start) if route.honour_range && route.status == 200 => {
            if start >= len {
                (
                    416,
                    vec![("Content-Range", format!("bytes */{len}"))],
                    &[][..],
                )
            } else {
                (
                    206,
                    vec![("Content-Range", format!("bytes {start}-{}/{len}", len - 1))],
                    &route.body[start..],
                )
            }
        }
        _ => (route.status, vec![], &route.body[..]),
    };
    let cut = {
        let mut cuts = state.cuts.lock().unwrap();
        let done = cuts.entry(path.clone()).or_default();
        if *done < route.cut_times {
            *done += 1;
            Some(route.cut_at)
        } else {
            None
        }
    };
    let _ = respond(&mut stream, status, &extra, body, route.throttle, cut);
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    throttle: Option<Duration>,
    cut: Option<usize>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let body = match cut {
        Some(at) => &body[..at.min(body.len())],
        None => body,
    };
    for chunk in body.chunks(16 * 1024) {
        stream.write_all(chunk)?;
        if let Some(pause) = throttle {
            stream.flush()?;
            std::thread::sleep(pause);
        }
    }
    stream.flush()?;
    if cut.is_some() {
        // Make sure the client sees an abrupt end, not a clean close.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    // Drain what the client may still send, so closing does not reset the
    // connection before it has read the response.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.read(&mut [0; 64]);
    Ok(())
}

/// `len` deterministic pseudo-random bytes; `seed` tells payloads apart.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A wheel (a zip) holding `members`, compressed like real wheels.
pub fn wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.start_file("pkg-1.0.dist-info/WHEEL", options).unwrap();
    zip.write_all(b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        .unwrap();
    zip.finish().unwrap().into_inner()
}

/// A zip archive of `members`, each stored or deflated as given; a name
/// ending in `/` is a directory entry.
pub fn zip_of(members: &[(&str, &[u8], zip::CompressionMethod)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, method) in members {
        let options = zip::write::SimpleFileOptions::default().compression_method(*method);
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A JSON API document listing one wheel (plus an sdist, which must be
/// skipped), in the shape of PyPI's per-release document.
pub fn release_json(base: &str, filename: &str, wheel: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "info": { "name": "x" },
        "urls": release_files(base, filename, wheel),
    })
}

pub fn release_files(base: &str, filename: &str, wheel: &[u8]) -> serde_json::Value {
    serde_json::json!([
        {
            "filename": "pkg-1.0.tar.gz",
            "url": format!("{base}/files/pkg-1.0.tar.gz"),
            "digests": { "sha256": "00" },
            "packagetype": "sdist",
            "size": 10,
        },
        {
            "filename": filename,
            "url": format!("{base}/files/{filename}"),
            "digests": { "sha256": sha256(wheel) },
            "packagetype": "bdist_wheel",
            "size": wheel.len(),
            "yanked": false,
        },
    ])
}

/// A catalog from TOML documents, leaked so the store can keep
/// `&'static` entries, as it does with the built-in catalog.
pub fn catalog(documents: &[&str]) -> &'static Catalog {
    let named: Vec<(String, &str)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("test{i}.toml"), *d))
        .collect();
    let catalog = Catalog::from_documents(named.iter().map(|(n, d)| (n.as_str(), *d))).unwrap();
    Box::leak(Box::new(catalog))
}

/// A catalog entry for a one-file model with the given `[[sources]]` tables.
pub fn entry(name: &str, file: &str, data: &[u8], sources: &str) -> String {
    format!(
        r#"
name = "{name}"
aliases = ["{name}-alias"]
kind = "open-weight"
publisher = "Test"
architecture = "llama"
license = "apache-2.0"
format = "gguf"

[[files]]
name = "{file}"
sha256 = "{sha}"
size = {size}

{sources}
"#,
        sha = sha256(data),
        size = data.len(),
    )
}

/// A catalog entry for a model made of `files` (names and contents), with
/// the given `[[sources]]` tables.
pub fn entry_with_files(name: &str, files: &[(&str, &[u8])], sources: &str) -> String {
    let mut text = format!(
        r#"
name = "{name}"
aliases = ["{name}-alias"]
kind = "open-weight"
publisher = "Test"
architecture = "bert"
license = "apache-2.0"
format = "safetensors"
"#
    );
    for (file, data) in files {
        text.push_str(&format!(
            "\n[[files]]\nname = \"{file}\"\nsha256 = \"{}\"\nsize = {}\n",
            sha256(data),
            data.len()
        ));
    }
    text.push('\n');
    text.push_str(sources);
    text
}

pub fn config(server: &FakeServer) -> Config {
    Config {
        hf_endpoint: server.url().to_owned(),
        hf_token: None,
        pypi_url: format!("{}/pypi", server.url()),
        local_dirs: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
    }
}

/// A URL on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// Every file under `dir`, relative, sorted.
pub fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Counts calls, for checking that a step happened.
#[derive(Default)]
pub struct Counter(pub AtomicUsize);

impl Counter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
