#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (seconds per
# target, default 20), from its committed seeds plus the corpus it grew in
# earlier runs (fuzz/corpus/, ignored by git). Fails on the first finding,
# which libFuzzer writes to fuzz/artifacts/<target>/.
#
# Installs cargo-fuzz if it is missing. The targets need nightly-only flags
# (sanitizers, coverage); RUSTC_BOOTSTRAP=1 allows them on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
# target: libFuzzer options beyond the common ones.
declare -A extra=(
  [gguf_open]="-dict=gguf.dict -max_len=65536 -malloc_limit_mb=512"
  [json_schema]="-max_len=4096"
  [chat_template]="-max_len=4096"
)
for target in gguf_open json_schema chat_template; do
  mkdir -p "corpus/$target"
  echo "fuzzing $target for $seconds s"
  log=$(mktemp)
  # shellcheck disable=SC2086
  if ! cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 ${extra[$target]} >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz finding for $target: see fuzz/artifacts/$target/" >&2
    rm -f "$log"
    exit 1
  fi
  grep -E "^Done" "$log" || true
  rm -f "$log"
done
