//! Integration tests: each adapter against a protocol-faithful fake of its
//! vendor (see `support/`), and the router's retries, fallbacks and
//! cancellation, all over real sockets on 127.0.0.1.

// The whole crate is test code: a fake that cannot bind or a lock poisoned
// by another failed assertion should panic, and the fakes answer bad
// requests with an axum `Response` as their error, as handlers do.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

mod cases;
mod support;
