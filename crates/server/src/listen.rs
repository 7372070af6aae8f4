//! Accepting connections within limits: how many may be open at once, how
//! long a client may take to send a request's headers, and how long an idle
//! keep-alive connection is kept.
//!
//! A connection over [`ServerConfig::max_connections`] is answered at once
//! with a 503 whose body says why, and closed; it never waits unseen in the
//! accept queue. A client that has not sent a whole request head within
//! [`ServerConfig::header_timeout`] is disconnected, whether it is a new
//! connection trickling bytes (slow loris) or a keep-alive connection
//! sitting idle between requests (hyper runs the same timer while it waits
//! for the next request's head). Bodies have their own timeout, applied
//! where they are read ([`crate::body`]).
//!
//! [`ServerConfig::max_connections`]: crate::ServerConfig::max_connections
//! [`ServerConfig::header_timeout`]: crate::ServerConfig::header_timeout

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::state::AppState;

/// Connections the kernel may hold for us before `accept`: tokio's
/// `TcpListener::bind` asks for 128, and a burst of more connections than
/// that (a crowd of clients, or an attacker) overflows the queue, so the
/// kernel drops SYNs and even `/health` waits a second for the retry.
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep accept queue.
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Serves `app` on `listener` until `stop` resolves, then stops accepting
/// and returns once the open connections have closed (they are told to
/// close after their current response).
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    state: &AppState,
    stop: impl Future<Output = ()>,
) {
    let config = state.config();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.header_timeout)
        .keep_alive_timeout(config.header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, a connection reset before
                    // accept: nothing to answer; wait a moment so a
                    // persistent error does not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics().connection_refused();
            tracing::warn!(%peer, limit = config.max_connections, "connection limit reached; refusing");
            tokio::spawn(refuse(stream, config.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a client over the connection limit why it is turned away.
async fn refuse(mut stream: TcpStream, limit: usize) {
    let body = serde_json::json!({"error": {
        "message": format!(
            "The server has {limit} connections open, its limit (--max-connections); \
             retry shortly or reuse a connection"
        ),
        "type": "server_error",
        "code": "too_many_connections",
    }})
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Read what the client sent before closing: closing a socket with
        // unread data resets it, and the client could lose the answer.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
