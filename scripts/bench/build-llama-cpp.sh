#!/usr/bin/env bash
# Builds llama.cpp's tools (llama-bench, llama-completion, llama-perplexity,
# llama-tokenize) from the llama-cpp-python sdist on PyPI, the speed and
# correctness anchor of lucid's benchmarks. About 10 minutes on 2 cores.
# Prints the directory holding the binaries.
#
#   scripts/bench/build-llama-cpp.sh [VERSION]   (default 0.3.36)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=${1:-0.3.36}
work="$root/.cache/llama-cpp"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
bin="$src/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-completion" ]; then
  echo "$bin"
  exit 0
fi
command -v cmake >/dev/null || { echo "cmake is needed: apt-get install -y cmake" >&2; exit 1; }
mkdir -p "$work"
python3 -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version" >&2
tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
# The UI and CURL options keep the build from reaching the network.
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF >&2
cmake --build "$src/build" -j "$(nproc)" --target llama-bench llama-completion llama-perplexity llama-tokenize >&2
echo "$bin"
