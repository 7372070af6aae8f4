//! Protocol-faithful fakes of the vendors' HTTP APIs, for lucid's tests to
//! run the provider adapters against on 127.0.0.1 with ephemeral ports: the
//! adapters' own tests in `lucid-providers`, and the end-to-end tests that
//! reach them through the `lucid` CLI and the HTTP server.
//!
//! Each vendor module is written from that vendor's published API reference:
//! it checks the request as the real service does (path, headers, body shape,
//! unknown fields) and answers 400/401/404 with the vendor's own error body
//! when the request is wrong, so a passing test proves the adapter sends the
//! right thing. The machinery here is shared: the HTTP server, a queue of
//! [`Fault`]s that each request takes one from, the SSE writer that applies
//! them, a listener that can reset connections, and a log capture.
//!
//! This crate is test infrastructure only (`publish = false`, a
//! dev-dependency of the crates that use it). A fake that cannot bind, or a
//! lock poisoned by a failed assertion elsewhere, should panic, so it
//! unwraps; and the fakes answer bad requests with an axum [`Response`] as
//! their error, as handlers do, however large that is.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

pub mod anthropic;
pub mod gemini;
pub mod openai;
mod provider;

pub use provider::{COMPAT_KEY_VAR, PROVIDER_VARS, Provider};

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The key every fake accepts.
pub const KEY: &str = "sk-lucid-test-KEY-3f9a7c1e5b2d";
/// A key every fake rejects (and, like some servers, echoes in its message).
pub const WRONG_KEY: &str = "sk-lucid-test-WRONG-0b1c2d3e4f";

/// The answer every fake gives, one piece per streamed delta. It has
/// multi-byte characters so that split chunks can cut through them.
pub const PIECES: [&str; 5] = ["Hel", "lo", ", wörld", " ✓", "!"];
/// `PIECES` joined.
pub const TEXT: &str = "Hello, wörld ✓!";

/// What a fake does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Write every SSE event in three pieces, cutting lines and characters.
    SplitChunks,
    /// Put keep-alive pings (the vendor's, or SSE comments) between events.
    Pings,
    /// End lines with CRLF.
    Crlf,
    /// Answer with this status and the vendor's error body.
    Status {
        status: u16,
        retry_after: Option<&'static str>,
    },
    /// Reset the TCP connection once the request has arrived.
    Reset,
    /// Send this many deltas, then stop writing but keep the connection.
    StallAfter(usize),
    /// Send this many deltas, then an event whose JSON is cut short.
    MalformedAfter(usize),
    /// Send this many deltas, then the vendor's in-stream error event.
    ErrorEventAfter(usize),
    /// Send this many deltas, then abort the connection.
    DropAfter(usize),
    /// Stream deltas forever, every 20 ms, until the client goes away.
    Endless,
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
}

/// What the vendor module extracted from a valid request.
#[derive(Debug, Clone)]
pub struct Call {
    pub stream: bool,
    pub model: String,
    /// Whitespace-separated words in every message, system text included:
    /// the fake's token count.
    pub prompt_tokens: u32,
    pub max_tokens: Option<u32>,
    /// Top log-probabilities asked for, if any.
    pub logprobs: Option<u8>,
    /// OpenAI: whether the usage chunk was asked for.
    pub include_usage: bool,
}

impl Call {
    /// The pieces of the answer within `max_tokens`, and whether it was cut.
    pub fn pieces(&self) -> (Vec<&'static str>, bool) {
        let limit = self.max_tokens.map_or(PIECES.len(), |m| m as usize);
        let cut = limit < PIECES.len();
        (PIECES.iter().take(limit).copied().collect(), cut)
    }
}

/// One request's view, for the vendor module to check.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Incoming<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A streamed answer, as complete SSE events (each ending in a blank line).
pub struct Script {
    pub head: Vec<String>,
    pub deltas: Vec<String>,
    pub tail: Vec<String>,
}

/// What a vendor module provides.
pub trait Vendor: Send + Sync + 'static {
    /// The path of the base URL (`/v1`, `` or `/v1beta`).
    fn base_path(&self) -> &'static str;
    /// Checks the request as the real API would; `Err` is the answer to a bad one.
    fn check(&self, key: &str, req: &Incoming<'_>) -> Result<Call, Response>;
    /// The vendor's error response for `status`.
    fn error(&self, status: u16, message: &str) -> Response;
    /// A non-streamed answer.
    fn complete(&self, call: &Call) -> Response;
    /// A streamed answer.
    fn script(&self, call: &Call) -> Script;
    /// One more delta for [`Fault::Endless`].
    fn endless_delta(&self, call: &Call) -> String;
    /// A keep-alive event.
    fn ping(&self) -> String;
    /// The vendor's in-stream error event.
    fn error_event(&self) -> String;
    /// An event whose JSON is cut short.
    fn malformed_event(&self) -> String;
}

/// State shared between a fake and its test.
pub struct Shared {
    pub key: String,
    vendor: Box<dyn Vendor>,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<Recorded>>,
    resets: AtomicUsize,
    client_gone: AtomicBool,
}

impl Shared {
    fn next_fault(&self) -> Fault {
        let mut faults = self.faults.lock().unwrap();
        while faults.front() == Some(&Fault::Reset) {
            // A reset meant for a new connection met a reused one: skip it.
            faults.pop_front();
        }
        faults.pop_front().unwrap_or(Fault::None)
    }

    fn take_reset(&self) -> bool {
        let mut faults = self.faults.lock().unwrap();
        if faults.front() == Some(&Fault::Reset) {
            faults.pop_front();
            self.resets.fetch_add(1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }
}

/// A running fake. Dropping it stops the server.
pub struct Fake {
    pub base_url: String,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// Starts a fake of `vendor` that takes `faults`, one per request, in order.
    pub async fn start(vendor: impl Vendor, faults: Vec<Fault>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let base_url = format!("http://{addr}{}", vendor.base_path());
        let shared = Arc::new(Shared {
            key: KEY.to_owned(),
            vendor: Box::new(vendor),
            faults: Mutex::new(faults.into()),
            requests: Mutex::new(Vec::new()),
            resets: AtomicUsize::new(0),
            client_gone: AtomicBool::new(false),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = ResettingListener {
            inner: listener,
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            base_url,
            shared,
            task,
        }
    }

    /// The requests that reached the HTTP layer (resets excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Connections reset by [`Fault::Reset`].
    pub fn resets(&self) -> usize {
        self.shared.resets.load(Ordering::SeqCst)
    }

    /// Waits until a streaming response notices that the client went away.
    pub async fn wait_client_gone(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.shared.client_gone.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or("<binary>").to_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let incoming = Incoming {
        method: &method,
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        body: &body,
    };
    let call = match shared.vendor.check(&shared.key, &incoming) {
        Ok(call) => call,
        Err(response) => return response,
    };
    let fault = shared.next_fault();
    if let Fault::Status {
        status,
        retry_after,
    } = fault
    {
        let mut response = shared
            .vendor
            .error(status, "the fake was told to fail this request");
        if let Some(v) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", v.parse().unwrap());
        }
        return response;
    }
    if !call.stream {
        return shared.vendor.complete(&call);
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::spawn(write_stream(shared.clone(), call, fault, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap()
}

/// Writes a streamed answer, applying the fault. Marks the client gone when a
/// write fails because the response body was dropped.
async fn write_stream(
    shared: Arc<Shared>,
    call: Call,
    fault: Fault,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    let vendor = &shared.vendor;
    let gone = || shared.client_gone.store(true, Ordering::SeqCst);
    let emit = |event: String| {
        let tx = tx.clone();
        let fault = fault.clone();
        async move {
            let event = if fault == Fault::Crlf {
                event.replace('\n', "\r\n")
            } else {
                event
            };
            let bytes = event.into_bytes();
            let pieces: Vec<Vec<u8>> = if fault == Fault::SplitChunks {
                let (a, b) = (bytes.len() / 3, 2 * bytes.len() / 3);
                vec![
                    bytes[..a].to_vec(),
                    bytes[a..b].to_vec(),
                    bytes[b..].to_vec(),
                ]
            } else {
                vec![bytes]
            };
            for piece in pieces {
                if tx.send(Ok(Bytes::from(piece))).await.is_err() {
                    return false;
                }
                // A pause lets each piece leave in its own TCP write.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            true
        }
    };
    let script = vendor.script(&call);
    for event in script.head {
        if !emit(event).await {
            return gone();
        }
    }
    for (i, delta) in script.deltas.into_iter().enumerate() {
        match fault {
            Fault::StallAfter(n) if n == i => {
                tx.closed().await;
                return gone();
            }
            Fault::MalformedAfter(n) if n == i => {
                emit(vendor.malformed_event()).await;
                return;
            }
            Fault::ErrorEventAfter(n) if n == i => {
                emit(vendor.error_event()).await;
                return;
            }
            Fault::DropAfter(n) if n == i => {
                let _ = tx
                    .send(Err(io::Error::other("the fake aborts the connection")))
                    .await;
                return;
            }
            _ => {}
        }
        if fault == Fault::Pings && !emit(vendor.ping()).await {
            return gone();
        }
        if !emit(delta).await {
            return gone();
        }
    }
    if fault == Fault::Endless {
        loop {
            if !emit(vendor.endless_delta(&call)).await {
                return gone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for event in script.tail {
        if fault == Fault::Pings && !emit(vendor.ping()).await {
            return gone();
        }
        if !emit(event).await {
            return gone();
        }
    }
}

/// Accepts connections, resetting the ones a [`Fault::Reset`] is queued for.
struct ResettingListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for ResettingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                continue;
            };
            if self.shared.take_reset() {
                tokio::spawn(reset_after_request(stream));
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

async fn reset_after_request(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    // SO_LINGER 0: closing sends RST instead of FIN.
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// A JSON response.
pub fn json_response(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// One SSE event with only a data field.
pub fn data_event(data: &serde_json::Value) -> String {
    format!("data: {data}\n\n")
}

/// One SSE event with a name.
pub fn named_event(name: &str, data: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Counts words in every message's text, the fakes' stand-in for tokens.
pub fn words(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}

/// Log output captured from `tracing` on this thread.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures every `tracing` event on this thread, at TRACE level, until the
/// guard is dropped. Tests run on a current-thread runtime, so this sees the
/// adapters, the router, reqwest and hyper alike.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let sink = logs.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || LogWriter(sink.clone()))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Asserts that neither key appears in the logs nor in any of the errors'
/// `Display` or `Debug`, and that the logs did capture something (the
/// `sending request` line `lucid-providers` logs for every attempt). The
/// errors are taken as `dyn Error` so that this crate need not depend on the
/// one it tests.
pub fn assert_no_key(logs: &Logs, errors: &[&dyn std::error::Error]) {
    let text = logs.text();
    assert!(
        text.contains("sending request"),
        "the log capture saw nothing:\n{text}"
    );
    for key in [KEY, WRONG_KEY] {
        assert!(!text.contains(key), "a key appears in the logs:\n{text}");
        for e in errors {
            assert!(
                !e.to_string().contains(key),
                "a key appears in an error: {e}"
            );
            assert!(
                !format!("{e:?}").contains(key),
                "a key appears in an error: {e:?}"
            );
        }
    }
}
