#!/usr/bin/env python3
"""Where lucid and llama.cpp part ways inside the model: a layer-by-layer comparison of one prompt.

Runs the prompt as one batch through llama.cpp (layer_trace.cpp, compiled here against the reference
build) and through lucid (`cargo run --release -p lucid-engine --example trace`) with the same token
ids, and prints, per block, the relative difference ||lucid - llama.cpp|| / ||llama.cpp|| of the
attention output, the MLP output and the residual stream, and the largest difference of the last
position's logits. A diagnostic for the teacher-forced golden check (tests/llama_cpp_goldens.rs), not
a golden: nothing here is committed output.

  python3 scripts/goldens/llama/layer_trace.py --model smollm2 --attention f32 "The capital of France is"

--attention f32: llama.cpp with flash attention off and an f32 K/V cache, lucid with an f32 cache (the
two attentions are then both plain f32); f16: llama.cpp's default (flash attention on, f16 cache:
on the CPU its accumulator for V is f16) against lucid's default f16 cache.
Environment as for gen_greedy.py (_common.py): LLAMA_CPP_PYTHON, LLAMA_CPP_LIB_PATH, LUCID_MODEL_DIR.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def read_dir(d):
    """name -> the flat f32 values of every tensor listed in d/index.txt."""
    with open(os.path.join(d, "index.txt")) as f:
        names = [line.split()[0] for line in f if line.strip()]
    return {n: np.fromfile(os.path.join(d, n + ".f32"), dtype="<f4") for n in names}


def last_rows(a, width, n):
    return a.reshape(-1, width)[-n:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(C.MODELS), default="smollm2")
    ap.add_argument("--attention", choices=["f32", "f16"], default="f32")
    ap.add_argument("prompt")
    args = ap.parse_args()
    path, _ = C.check_model(args.model)
    inc = os.path.join(C.LLAMA_CPP_PYTHON, "vendor", "llama.cpp")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "layer_trace")
        subprocess.run(["g++", "-O2", "-std=c++17", os.path.join(HERE, "layer_trace.cpp"),
                        "-I" + os.path.join(inc, "include"), "-I" + os.path.join(inc, "ggml", "include"),
                        "-L" + C.LIB_PATH, "-lllama", "-lggml", "-lggml-base", "-Wl,-rpath," + C.LIB_PATH,
                        "-o", exe], check=True)
        ref_dir, lucid_dir = os.path.join(tmp, "llama.cpp"), os.path.join(tmp, "lucid")
        os.makedirs(ref_dir)
        fa, kv = ("off", "f32") if args.attention == "f32" else ("on", "f16")
        subprocess.run([exe, path, ref_dir, fa, kv, args.prompt], check=True, stderr=subprocess.DEVNULL)
        with open(os.path.join(ref_dir, "tokens.txt")) as f:
            ids = f.read().strip()
        subprocess.run(["cargo", "run", "-q", "--profile", "test", "-p", "lucid-engine", "--example", "trace", "--",
                        path, lucid_dir, kv, ids], check=True, cwd=C.REPO)
        ref, lucid = read_dir(ref_dir), read_dir(lucid_dir)
    n = len(ids.split(","))
    d = lucid["embed"].size // n
    print(f"{args.model}, {n} tokens {ids}; llama.cpp flash attention {fa}, {kv} cache; lucid {kv} cache")
    print("relative difference ||lucid - llama.cpp|| / ||llama.cpp||; the last block and the logits: "
          "last position only, as llama.cpp computes them")

    def rel(ours, theirs):
        if theirs is None:
            return "      -"
        rows = theirs.size // d if theirs.size % d == 0 else 1
        a, b = last_rows(ours, ours.size // n, rows), theirs.reshape(rows, -1)
        return f"{np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30):8.1e}"

    def pick(*names):
        return next((ref[x] for x in names if x in ref), None)

    embed = pick("inp_scaled", "embd", "inp_embd")
    print(f"embedding {rel(lucid['embed'], embed)}")
    print("block  attention      mlp   residual")
    layer = 0
    while f"blocks.{layer}.resid_post" in lucid:
        att = pick(f"attn_post_norm-{layer}", f"attn_out-{layer}")
        mlp = pick(f"ffn_post_norm-{layer}", f"ffn_out-{layer}")
        res = pick(f"l_out-{layer}")
        print(f"{layer:5d} {rel(lucid[f'blocks.{layer}.attn_out'], att)} "
              f"{rel(lucid[f'blocks.{layer}.mlp_out'], mlp)} {rel(lucid[f'blocks.{layer}.resid_post'], res)}")
        layer += 1
    logits = pick("result_output")
    ours = lucid["logits"].reshape(n, -1)[-1]
    print(f"logits (last position): largest difference {np.abs(ours - logits).max():.4f}, "
          f"relative {np.linalg.norm(ours - logits) / np.linalg.norm(logits):.1e}")


if __name__ == "__main__":
    main()
