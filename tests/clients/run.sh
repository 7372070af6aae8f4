#!/usr/bin/env bash
# Runs the client test suite: the official `openai`, `ollama` and `anthropic` Python SDKs
# against a `lucid serve` that the tests start on loopback ports.
#
# Creates a virtual environment under .cache/ (gitignored), installs the
# pinned requirements, builds the lucid binary (cargo's test profile, which
# is optimized and already built after `cargo test`) and runs pytest. Needs the test model: run
# scripts/fetch-test-models.sh first. Extra arguments go to pytest;
# `--setup-only` installs the requirements and stops.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.cache/clients-venv"
model="$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$model" ]; then
  echo "missing $model: run scripts/fetch-test-models.sh" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/clients/requirements.txt"
[ "${1:-}" = --setup-only ] && exit 0
target="${CARGO_TARGET_DIR:-$root/target}"
# The binary as `cargo test --workspace` builds it: a build of one package
# unifies features differently and would compile much of the tree again.
(cd "$root" && cargo test --workspace --no-run -q)
export LUCID_BIN="$target/debug/lucid"
cd "$root/tests/clients"
exec "$venv/bin/python" -m pytest -q "$@"
