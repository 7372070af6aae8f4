//! Integration tests: each adapter against a protocol-faithful fake of its
//! vendor (from `lucid-provider-fakes`, which the CLI's and the server's
//! end-to-end tests use too), and the router's retries, fallbacks and
//! cancellation, all over real sockets on 127.0.0.1.

// The whole crate is test code: a failed lookup should panic.
#![allow(clippy::unwrap_used)]

mod cases;

// The cases reach the fakes as `crate::support`, where they used to live.
use lucid_provider_fakes as support;
