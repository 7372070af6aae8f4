#!/usr/bin/env python3
"""Adds to the greedy goldens how far the same llama.cpp, built for another CPU, is from them.

The goldens (gen_greedy.py) come from llama.cpp built natively on an AVX-512 machine. llama.cpp picks
its kernels when it is compiled, so the same commit with the same settings computes with different
kernels -- different summation orders and tile shapes -- on a CPU without AVX-512. This script
teacher-forces the golden tokens through such a build exactly as gen_greedy.py's self-disagreement
configurations do ("incremental", settings unchanged) and records the result as one more entry of
reference.self_disagreement.configs in tests/goldens/llama/{smollm2,gemma3}.json. The rest of each file
is rewritten unchanged.

Run it with LLAMA_CPP_LIB_PATH pointing at the other build's libraries, for an AVX2-only build:
  cmake -S $LLAMA_CPP_PYTHON/vendor/llama.cpp -B build-avx2 -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
  cmake --build build-avx2 --target llama -j
  LLAMA_CPP_LIB_PATH=$PWD/build-avx2/bin python3 scripts/goldens/llama/other_build.py \
        --name built_for_avx2 --flags "GGML_NATIVE=OFF GGML_AVX=ON GGML_AVX2=ON GGML_FMA=ON GGML_F16C=ON GGML_BMI2=ON"
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import gen_greedy as G  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True, help="the configuration's name in the goldens")
    ap.add_argument("--flags", required=True, help="how that llama.cpp was built (recorded as is)")
    ap.add_argument("--model", choices=list(C.MODELS), action="append")
    args = ap.parse_args()
    C.check_versions()
    for name in args.model or list(C.MODELS):
        out = os.path.join(C.GOLDEN_DIR, f"{name}.json")
        with open(out, encoding="utf-8") as f:
            golden = json.load(f)
        path, _ = C.check_model(name)
        cases = [dict(c, steps=[dict(top=[(i, np.float32(v)) for i, v in s["top"]], lse=s["logsumexp"],
                                     margin=s["margin"]) for s in c["steps"]])
                 for c in golden["cases"]]
        G.VARIANTS = [(args.name, "incremental", {})]
        [result] = G.self_disagreement(path, cases)
        result["settings"]["build"] = f"{args.flags} (libraries from {os.environ['LLAMA_CPP_LIB_PATH']})"
        sd = golden["reference"]["self_disagreement"]
        sd["configs"] = [c for c in sd["configs"] if c["name"] != args.name] + [result]
        worst = max(sd["configs"], key=lambda r: r["max_top5_abs_diff"])
        sd["max_top5_abs_diff"] = worst["max_top5_abs_diff"]
        sd["max_top5_abs_diff_config"] = worst["name"]
        header = {k: v for k, v in golden.items() if k != "cases"}
        G.write_golden(out, header, cases)
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
