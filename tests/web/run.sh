#!/usr/bin/env bash
# The glass-box web page in a real headless Chromium.
#
# Installs what it needs (Debian's chromium through apt-get when missing,
# playwright-core into tests/web/node_modules with `npm ci`; no browser is
# ever downloaded), builds the lucid-glass-web harness, serves SmolLM2,
# Gemma 3 and all-MiniLM-L6-v2 (an embedding model, for the semantic view)
# from .cache/models on an ephemeral loopback port, runs
# explain.spec.mjs against it and stops the server. Screenshots and
# timings.json land in target/web-screenshots/ (an artifact).
#
#   tests/web/run.sh                          # the test
#   tests/web/run.sh --update-doc-screenshot  # and rewrite docs/glass-box.png
#   tests/web/run.sh --setup-only             # install Chromium and playwright-core, and stop
#
# Safe to run again; fails loudly (non-zero, with the reason) on any problem.
# The browser part is bounded: 60 s for the server to come up, 150 s for the
# page checks. The build is incremental: after `cargo test -p lucid-web` it
# is already done (both use cargo's test profile, optimized).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/web"
models="$root/.cache/models"
target="${CARGO_TARGET_DIR:-$root/target}"
shots="$root/target/web-screenshots"
doc=""
[ "${1:-}" = "--update-doc-screenshot" ] && doc="$root/docs/glass-box.png"
setup_only=""
[ "${1:-}" = "--setup-only" ] && setup_only=1

die() { echo "tests/web/run.sh: $*" >&2; exit 1; }
step() { echo "== $* ($(date +%T))"; }

[ -n "$setup_only" ] || for f in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf all-MiniLM-L6-v2/model.safetensors; do
  [ -f "$models/$f" ] || die "$models/$f is missing: run scripts/fetch-test-models.sh first"
done

step "chromium"
if ! [ -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and there is no apt-get to install it"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null || die "apt-get install chromium failed"
fi
/usr/bin/chromium --version

step "playwright-core"
command -v node >/dev/null || die "node is missing (Node.js 20 or later is needed)"
if ! [ -f "$here/node_modules/playwright-core/package.json" ]; then
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
    || die "npm ci in tests/web failed"
fi

[ -n "$setup_only" ] && exit 0

step "build lucid-glass-web"
# Built as `cargo test --workspace` builds it (the package has tests, so its
# binary is built with them): a build of one package unifies features
# differently and would compile much of the tree again.
(cd "$root" && cargo test --workspace --no-run -q) || die "the harness does not build"
bin="$target/debug/lucid-glass-web"
[ -x "$bin" ] || die "$bin was not built"

step "serve"
log=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$log"
}
trap cleanup EXIT
threads=$(nproc 2>/dev/null || echo 2)
[ "$threads" -gt 8 ] && threads=8
"$bin" --addr 127.0.0.1:0 --threads "$threads" \
  smollm2="$models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  gemma3="$models/gemma-3-270m-q4_k_m.gguf" \
  all-minilm="$models/all-MiniLM-L6-v2" \
  >"$log/out" 2>"$log/err" &
server_pid=$!
url=""
for _ in $(seq 1 600); do
  url=$(sed -n 's/^listening on //p' "$log/out" 2>/dev/null | head -n1)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$log/err" >&2; die "the harness exited before listening"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$log/err" >&2; die "the harness did not listen within 60 s"; }
echo "harness at $url"

step "page checks"
mkdir -p "$shots"
status=0
GLASS_URL="$url" SCREENSHOTS="$shots" DOC_SCREENSHOT="$doc" \
  timeout 150 node "$here/explain.spec.mjs" || status=$?
if [ "$status" != 0 ]; then
  echo "--- harness log" >&2
  tail -n 40 "$log/err" >&2
  [ "$status" = 124 ] && die "the page checks took more than 150 s"
  die "the page checks failed (exit $status); screenshots in $shots"
fi
step "done"
