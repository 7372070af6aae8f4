"""Shared helpers for the llama.cpp golden-data scripts (see README in tests/goldens/llama).

Environment (all optional; defaults match the machine the goldens were made on):

  LLAMA_CPP_PYTHON    directory that holds the `llama_cpp` Python package of llama-cpp-python
                      0.3.36 (e.g. an unpacked sdist); prepended to sys.path. Leave unset when
                      `pip install llama-cpp-python==0.3.36` put it in the running interpreter.
                      default: /work/cache/ref/llama_cpp_python-0.3.36
  LLAMA_CPP_LIB_PATH  directory with libllama.so (read by llama-cpp-python itself) and, unless
                      LLAMA_CPP_BIN says otherwise, the llama.cpp tools (llama-perplexity,
                      llama-completion, llama-cli).
                      default: $LLAMA_CPP_PYTHON/vendor/llama.cpp/build/bin
  LLAMA_CPP_BIN       directory with the llama.cpp tools. default: $LLAMA_CPP_LIB_PATH
  LUCID_MODEL_DIR     directory with the two GGUF files (scripts/fetch-test-models.sh puts them
                      in .cache/models). default: <repo>/.cache/models
"""

import hashlib
import os
import re
import subprocess
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/work/cache/ref/llama_cpp_python-0.3.36")
if not os.environ.get("LLAMA_CPP_LIB_PATH"):
    os.environ["LLAMA_CPP_LIB_PATH"] = os.path.join(LLAMA_CPP_PYTHON, "vendor", "llama.cpp", "build", "bin")
LIB_PATH = os.environ["LLAMA_CPP_LIB_PATH"]
BIN_DIR = os.environ.get("LLAMA_CPP_BIN", LIB_PATH)
MODEL_DIR = os.environ.get("LUCID_MODEL_DIR", os.path.join(REPO, ".cache", "models"))

if os.path.isdir(os.path.join(LLAMA_CPP_PYTHON, "llama_cpp")):
    sys.path.insert(0, LLAMA_CPP_PYTHON)

import llama_cpp  # noqa: E402

GOLDEN_DIR = os.path.join(REPO, "tests", "goldens", "llama")
DATA_DIR = os.path.join(REPO, "tests", "data")

MODELS = {
    "smollm2": {
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    "gemma3": {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
}

EXPECTED_LLAMA_CPP_PYTHON = "0.3.36"


def model_path(name):
    return os.path.join(MODEL_DIR, MODELS[name]["file"])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_model(name):
    path = model_path(name)
    got = sha256_file(path)
    if got != MODELS[name]["sha256"]:
        raise SystemExit(f"{path}: sha256 {got} != expected {MODELS[name]['sha256']}")
    return path, got


def tool(name):
    return os.path.join(BIN_DIR, name)


def tool_env():
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = LIB_PATH + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def llama_cpp_build():
    """The llama.cpp version line of the tools, e.g. '0.5.0-dev (build 1, commit 0c1e570)'."""
    for name in ("llama-cli", "llama-perplexity", "llama-completion"):
        exe = tool(name)
        if not os.path.exists(exe):
            continue
        out = subprocess.run([exe, "--version"], env=tool_env(), capture_output=True, text=True)
        m = re.search(r"version: (.*)", out.stdout + out.stderr)
        if m:
            return m.group(1).strip()
    return "unknown"


def check_versions():
    if llama_cpp.__version__ != EXPECTED_LLAMA_CPP_PYTHON:
        raise SystemExit(f"llama_cpp {llama_cpp.__version__} != {EXPECTED_LLAMA_CPP_PYTHON}")


def f32(x):
    """Shortest decimal that round-trips the float32 value x (as a JSON number string)."""
    s = np.format_float_positional(np.float32(x), unique=True, trim="-")
    return s


def fnum(x, digits=6):
    """A float64 rounded to `digits` decimals, as a JSON number string."""
    v = round(float(x), digits)
    if v == 0:
        v = 0.0
    s = repr(v)
    if s.endswith(".0"):
        s = s[:-2]
    return s


def logsumexp(logits):
    x = logits.astype(np.float64)
    m = x.max()
    return float(m + np.log(np.exp(x - m).sum()))


def topk(logits, k):
    """Ids of the k largest logits, highest first; ties go to the lower id (llama.cpp's greedy
    sampler keeps the first maximum)."""
    order = np.argsort(-logits.astype(np.float64), kind="stable")[:k]
    return [int(i) for i in order]


def jdump(v):
    """Compact JSON for a plain value (strings, ints, lists, dicts)."""
    import json

    return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
