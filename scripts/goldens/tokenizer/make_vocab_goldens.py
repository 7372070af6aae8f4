#!/usr/bin/env python3
"""Writes tests/goldens/tokenizer/{smollm2,gemma3}-vocab.json: what llama.cpp's
llama_vocab says about each test model, through llama-cpp-python's bindings to
libllama (llama-cpp-python 0.3.36, llama.cpp `0.5.0-dev (build 1, commit 0c1e570)`):

  n_tokens, bos, eos, add_bos, add_eos
  eog       every id for which llama_vocab_is_eog is true
  control   every id for which llama_vocab_is_control is true
  pieces    FNV-1a 64 (hex) over every id's llama_token_to_piece(special=true),
            each as a 4-byte little-endian length and the bytes
  detokenize  llama_detokenize(remove_special=false, unparse_special) of the ids in
            tests/goldens/tokenizer/<model>.json (add_special, parse_special items)

Run make_goldens.py first. Environment as in make_goldens.py, plus
  LLAMA_CPP_PYTHON  directory holding the llama_cpp package.
                    default: /work/cache/ref/llama_cpp_python-0.3.36
  LLAMA_CPP_LIB_PATH  directory with libllama.so.
                    default: $LLAMA_CPP_PYTHON/vendor/llama.cpp/build/bin
"""

import ctypes
import json
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GOLDEN_DIR = os.path.join(REPO, "tests", "goldens", "tokenizer")
MODEL_DIR = os.environ.get("LUCID_MODEL_DIR", os.path.join(REPO, ".cache", "models"))
LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/work/cache/ref/llama_cpp_python-0.3.36")
os.environ.setdefault(
    "LLAMA_CPP_LIB_PATH", os.path.join(LLAMA_CPP_PYTHON, "vendor", "llama.cpp", "build", "bin")
)
if os.path.isdir(os.path.join(LLAMA_CPP_PYTHON, "llama_cpp")):
    sys.path.insert(0, LLAMA_CPP_PYTHON)

import llama_cpp as L  # noqa: E402

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def piece(vocab, token, special):
    buf = ctypes.create_string_buffer(256)
    n = L.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = L.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    return buf.raw[:n]


def detokenize(vocab, ids, unparse_special):
    arr = (L.llama_token * max(len(ids), 1))(*ids)
    cap = 64 + 16 * len(ids)
    buf = ctypes.create_string_buffer(cap)
    n = L.llama_detokenize(vocab, arr, len(ids), buf, cap, False, unparse_special)
    if n < 0:
        cap = -n
        buf = ctypes.create_string_buffer(cap)
        n = L.llama_detokenize(vocab, arr, len(ids), buf, cap, False, unparse_special)
    return buf.raw[:n].decode("utf-8", errors="replace")


def main():
    L.llama_backend_init()
    for name, file in MODELS.items():
        path = os.path.join(MODEL_DIR, file)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run scripts/fetch-test-models.sh")
        params = L.llama_model_default_params()
        params.vocab_only = True
        model = L.llama_model_load_from_file(path.encode(), params)
        vocab = L.llama_model_get_vocab(model)
        n = L.llama_vocab_n_tokens(vocab)

        h = FNV_OFFSET
        for t in range(n):
            p = piece(vocab, t, True)
            h = fnv1a(h, len(p).to_bytes(4, "little"))
            h = fnv1a(h, p)

        with open(os.path.join(GOLDEN_DIR, f"{name}.json"), encoding="utf-8") as f:
            items = json.load(f)["items"]
        detok = []
        for item in items:
            if not (item["add_special"] and item["parse_special"]):
                continue
            for unparse in (True, False):
                detok.append(
                    {
                        "ids": item["ids"],
                        "unparse_special": unparse,
                        "text": detokenize(vocab, item["ids"], unparse),
                    }
                )

        def opt(t):
            return None if t == L.LLAMA_TOKEN_NULL else t

        golden = {
            "generator": "scripts/goldens/tokenizer/make_vocab_goldens.py",
            "llama_cpp_python": L.__version__,
            "model": file,
            "n_tokens": n,
            "bos": opt(L.llama_vocab_bos(vocab)),
            "eos": opt(L.llama_vocab_eos(vocab)),
            "add_bos": bool(L.llama_vocab_get_add_bos(vocab)),
            "add_eos": bool(L.llama_vocab_get_add_eos(vocab)),
            "eog": [t for t in range(n) if L.llama_vocab_is_eog(vocab, t)],
            "control": [t for t in range(n) if L.llama_vocab_is_control(vocab, t)],
            "pieces_fnv1a64": f"{h:016x}",
            "detokenize": detok,
        }
        out = os.path.join(GOLDEN_DIR, f"{name}-vocab.json")
        with open(out, "w", encoding="utf-8") as f:
            head = json.dumps({k: v for k, v in golden.items() if k != "detokenize"}, ensure_ascii=False)
            f.write(head[:-1] + ', "detokenize": [\n')
            f.write(",\n".join(json.dumps(d, ensure_ascii=False) for d in detok))
            f.write("\n]}\n")
        print(f"{out}: {n} tokens, {len(golden['eog'])} EOG, {len(golden['control'])} control", file=sys.stderr)
        L.llama_model_free(model)


if __name__ == "__main__":
    main()
