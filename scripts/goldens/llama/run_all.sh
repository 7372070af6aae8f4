#!/usr/bin/env bash
# Regenerates every llama.cpp golden in tests/goldens/llama and the text in tests/data.
# CI never runs this: it uses the committed files. Takes ~1 h on 2 CPU cores.
#
# Environment (defaults are the machine the goldens were made on):
#   PYTHON              interpreter with numpy (and llama-cpp-python's deps: typing-extensions,
#                       diskcache, jinja2); default /work/cache/venv/bin/python, else python3
#   LLAMA_CPP_PYTHON    unpacked llama-cpp-python 0.3.36 sdist (holds llama_cpp/ and
#                       vendor/llama.cpp); leave it pointing nowhere if `pip install
#                       llama-cpp-python==0.3.36` installed the package into $PYTHON
#   LLAMA_CPP_LIB_PATH  dir with libllama.so + the llama.cpp tools (llama-perplexity,
#                       llama-completion, llama-cli); default $LLAMA_CPP_PYTHON/vendor/llama.cpp/build/bin
#   LLAMA_CPP_BIN       dir with the llama.cpp tools if not $LLAMA_CPP_LIB_PATH
#   LUCID_MODEL_DIR     dir with the two GGUF files; default <repo>/.cache/models
#                       (scripts/fetch-test-models.sh fills it)
#
# Building the reference elsewhere (CPU, same commit 0c1e570):
#   pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
#   cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B llama_cpp_python-0.3.36/vendor/llama.cpp/build \
#         -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF
#   cmake --build llama_cpp_python-0.3.36/vendor/llama.cpp/build -j
#   LLAMA_CPP_PYTHON=$PWD/llama_cpp_python-0.3.36 scripts/goldens/llama/run_all.sh
#
# Not run here: other_build.py (adds to the goldens how far llama.cpp built for another CPU is from
# them; needs that second build, see its docstring) and layer_trace.py (a diagnostic that prints
# where lucid and llama.cpp part ways inside the model; writes nothing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/cache/venv/bin/python ]; then PYTHON=/work/cache/venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" "$here/make_text.py" "$@"
"$PYTHON" "$here/gen_perplexity.py"
"$PYTHON" "$here/gen_greedy.py"
