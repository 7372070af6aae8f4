#!/usr/bin/env bash
# Runs the client test suite: the official `openai`, `ollama` and `anthropic` Python SDKs,
# and LiteLLM, LangChain, instructor, llm and DSPy on top of them,
# against a `lucid serve` that the tests start on loopback ports (generation
# on SmolLM2, embeddings on all-MiniLM-L6-v2).
#
# Creates a virtual environment under .cache/ (gitignored), installs the
# pinned requirements, builds the lucid binary (cargo's test profile, which
# is optimized and already built after `cargo test`) and runs pytest. Needs the test model: run
# scripts/fetch-test-models.sh first. Extra arguments go to pytest;
# `--setup-only` installs the requirements and stops.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.cache/clients-venv"
# SmolLM2 for the generation tests, all-MiniLM-L6-v2 for the embedding tests.
for model in "$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$root/.cache/models/all-MiniLM-L6-v2/model.safetensors"; do
  if [ ! -f "$model" ]; then
    echo "missing $model: run scripts/fetch-test-models.sh" >&2
    exit 1
  fi
done
# The SDKs' tests and the tests of the libraries built on them (LiteLLM,
# LangChain, instructor, llm, DSPy) need different versions of shared
# packages, so each set has its own environment.
eco_venv="$root/.cache/ecosystem-venv"
for pair in "$venv:tests/clients/requirements.txt" "$eco_venv:tests/clients/ecosystem/requirements.txt"; do
  env_dir=${pair%%:*}
  if [ ! -x "$env_dir/bin/python" ]; then
    python3 -m venv "$env_dir"
  fi
  "$env_dir/bin/pip" install -q --disable-pip-version-check -r "$root/${pair#*:}"
done
[ "${1:-}" = --setup-only ] && exit 0
target="${CARGO_TARGET_DIR:-$root/target}"
# The binary as `cargo test --workspace` builds it: a build of one package
# unifies features differently and would compile much of the tree again.
(cd "$root" && cargo test --workspace --no-run -q)
export LUCID_BIN="$target/debug/lucid"
cd "$root/tests/clients"
# LiteLLM would fetch its model price list from GitHub at import.
export LITELLM_LOCAL_MODEL_COST_MAP=True
# pytest's 5 is "no test selected", as when a -k pattern names the other set.
status=0
"$venv/bin/python" -m pytest -q --ignore=ecosystem "$@" || status=$?
[ "$status" = 5 ] && status=0
eco=0
"$eco_venv/bin/python" -m pytest -q ecosystem "$@" || eco=$?
[ "$eco" = 5 ] && eco=0
[ "$status" = 0 ] && status=$eco
exit "$status"
