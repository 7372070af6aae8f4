#!/usr/bin/env python3
"""Perplexity goldens: tests/goldens/llama/perplexity.json.

Runs llama.cpp's own tool for each model
    llama-perplexity -m MODEL -f tests/data/alice-ch1-2.txt -c 512 -b 512 -t 2
and recomputes the same number from llama-cpp-python logits with the method of
tools/perplexity/perplexity.cpp (function `perplexity`, commit 0c1e570), described in METHOD below.

Environment (see _common.py): LLAMA_CPP_PYTHON, LLAMA_CPP_LIB_PATH, LLAMA_CPP_BIN, LUCID_MODEL_DIR.
Usage:  python3 scripts/goldens/llama/gen_perplexity.py [--model smollm2|gemma3]
"""

import argparse
import hashlib
import math
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from _common import llama_cpp  # noqa: E402

TEXT_REL = "tests/data/alice-ch1-2.txt"
N_CTX = 512
N_BATCH = 512
N_THREADS = 2

METHOD = {
    "summary": ("llama-perplexity's default perplexity (tools/perplexity/perplexity.cpp, perplexity(), no --ppl-stride): "
                "non-overlapping n_ctx-token chunks, KV cache cleared per chunk, only the second half of each chunk "
                "is scored."),
    "text": ("the file is read whole; exactly one trailing '\\n' is removed (the -f option of common/arg.cpp pops "
             "one final newline); no other normalisation."),
    "tokenization": ("the whole text is tokenized ONCE with common_tokenize(ctx, text, add_special=true, "
                     "parse_special=false): a BOS token is prepended iff tokenizer.ggml.add_bos_token is true "
                     "(Gemma 3: yes, SmolLM2: no); EOS is never added (the tool asserts add_eos is false). "
                     "Text is not split per chunk before tokenizing."),
    "chunks": ("n_chunk = floor(n_tokens / n_ctx) (or --chunks N if smaller); chunk k is tokens[k*n_ctx, (k+1)*n_ctx); "
               "leftover tokens at the end are ignored. Needs n_tokens >= 2*n_ctx."),
    "bos": ("if add_bos_token: the FIRST token of every chunk is REPLACED (not prepended) by BOS before evaluation, "
            "so chunk 0 keeps the BOS from tokenization and chunks k>0 lose their first text token to BOS; "
            "if not add_bos_token (SmolLM2): the chunk is evaluated as is, starting with a plain text token."),
    "evaluation": ("per chunk: llama_memory_clear, then the n_ctx tokens at positions 0..n_ctx-1 in one sequence; "
                   "with -b 512 = n_ctx that is one llama_decode per chunk (n_seq = max(1, n_batch/n_ctx) = 1), "
                   "logits requested only for positions >= n_ctx/2."),
    "scoring": ("first = n_ctx/2 = 256. For positions j = first .. n_ctx-2 (255 positions per chunk, not 256), "
                "nll_j = -log_softmax(logits_j)[chunk_token_{j+1}] (log_softmax: max-subtracted, sum of expf in "
                "double). The target is always an original text token (j+1 >= 257), never the BOS replacement. "
                "Position n_ctx-1 is not scored (it would predict the next chunk)."),
    "result": ("PPL = exp(sum nll / count), count = 255 * n_chunk. The '[i]x' values printed while running are the "
               "CUMULATIVE estimate exp(sum nll over chunks 1..i / (255*i)), not per-chunk perplexities. "
               "'+/-' = PPL * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1))."),
    "settings": ("n_ctx 512, n_batch 512, n_ubatch 512 (default), 2 threads, f16 K/V cache (default), "
                 "flash attention 'auto' (resolves to enabled on the CPU backend), CPU only. For Gemma 3 the "
                 "sliding window (512) masks nothing inside a 512-token chunk (distances <= 511)."),
}


def run_tool(path, text_path):
    exe = C.tool("llama-perplexity")
    cmd = [exe, "-m", path, "-f", text_path, "-c", str(N_CTX), "-b", str(N_BATCH), "-t", str(N_THREADS)]
    res = subprocess.run(cmd, env=C.tool_env(), capture_output=True, text=True)
    out = res.stdout + res.stderr
    if res.returncode != 0:
        sys.stderr.write(out)
        raise SystemExit(f"llama-perplexity failed ({res.returncode})")
    cumulative = [float(x) for x in re.findall(r"\[\d+\](\d+\.\d+),", out)]
    m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", out)
    n = re.search(r"calculating perplexity over (\d+) chunks", out)
    # the default log level does not say how flash attention 'auto' resolved: ask a 1-chunk run at -lv 4
    res2 = subprocess.run(cmd + ["--chunks", "1", "-lv", "4"], env=C.tool_env(), capture_output=True, text=True)
    out2 = res2.stdout + res2.stderr
    fa = re.search(r"Flash Attention (enabled|disabled)", out2)
    fa = (fa.group(1) + " (flash_attn = auto; 'Flash Attention ...' line of a --chunks 1 -lv 4 run)") if fa else "?"
    return dict(final=float(m.group(1)), final_pm=float(m.group(2)), cumulative=cumulative,
                n_chunk=int(n.group(1)), flash_attn_log=fa)


def tokenize(llm, text):
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    data = text.encode("utf-8")
    buf = (llama_cpp.llama_token * (len(data) + 16))()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(buf), True, False)
    assert n >= 0, n
    return [int(t) for t in buf[:n]]


def recompute(path, text, flash_attn):
    llm = llama_cpp.Llama(path, n_threads=N_THREADS, n_threads_batch=N_THREADS, n_ctx=N_CTX, n_batch=N_BATCH,
                          n_ubatch=N_BATCH, logits_all=True, flash_attn=flash_attn, verbose=False, seed=0)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = llama_cpp.llama_vocab_bos(vocab)
    if text.endswith("\n"):
        text = text[:-1]
    tokens = tokenize(llm, text)
    n_chunk = len(tokens) // N_CTX
    first = N_CTX // 2
    nll_all = []
    per_chunk, cumulative = [], []
    for k in range(n_chunk):
        chunk = tokens[k * N_CTX:(k + 1) * N_CTX]
        fed = list(chunk)
        if add_bos:
            fed[0] = bos
        llm.reset()
        llm.eval(fed)
        lg = np.asarray(llm.scores[first:N_CTX - 1], dtype=np.float64)
        mx = lg.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(lg - mx).sum(axis=1))
        tgt = np.array(chunk[first + 1:N_CTX])
        nll = lse - lg[np.arange(len(tgt)), tgt]
        nll_all.extend(nll.tolist())
        per_chunk.append(math.exp(float(nll.mean())))
        cumulative.append(math.exp(float(np.mean(nll_all))))
        print(f"    chunk {k + 1}/{n_chunk}: {per_chunk[-1]:.4f} (cumulative {cumulative[-1]:.4f})", flush=True)
    nll_all = np.array(nll_all)
    mean = float(nll_all.mean())
    ppl = math.exp(mean)
    var = float((nll_all ** 2).mean()) - mean * mean
    pm = ppl * math.sqrt(var / (len(nll_all) - 1))
    del llm
    return dict(tokens=tokens, add_bos=add_bos, n_chunk=n_chunk, ppl=ppl, pm=pm, per_chunk=per_chunk,
                cumulative=cumulative, mean_nll=mean, count=len(nll_all))


def r(x, d=6):
    return round(float(x), d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(C.MODELS), action="append")
    ap.add_argument("--out-dir", default=C.GOLDEN_DIR)
    args = ap.parse_args()
    C.check_versions()
    text_path = os.path.join(C.REPO, TEXT_REL)
    raw = open(text_path, "rb").read()
    text = raw.decode("utf-8")
    out_path = os.path.join(args.out_dir, "perplexity.json")
    build = C.llama_cpp_build()
    models = {}
    for name in args.model or list(C.MODELS):
        path, sha = C.check_model(name)
        print(f"{name}: llama-perplexity", flush=True)
        tool = run_tool(path, text_path)
        print(f"  final {tool['final']} +/- {tool['final_pm']} cumulative {tool['cumulative']}", flush=True)
        rec = {}
        for fa in (True, False):
            print(f"{name}: python recompute flash_attn={fa}", flush=True)
            rec[fa] = recompute(path, text, fa)
        main_rec = rec[True]
        assert main_rec["n_chunk"] == tool["n_chunk"], (main_rec["n_chunk"], tool["n_chunk"])
        # the tool prints 4 decimals: its values must match the recomputation to that precision
        tool_vs_py = max(abs(a - b) for a, b in zip(tool["cumulative"] + [tool["final"]],
                                                        main_rec["cumulative"] + [main_rec["ppl"]]))
        tokens = main_rec["tokens"]
        models[name] = {
            "file": C.MODELS[name]["file"],
            "sha256": sha,
            "add_bos": main_rec["add_bos"],
            "n_tokens": len(tokens),
            "first_tokens": tokens[:16],
            "n_chunk": tool["n_chunk"],
            "scored_tokens": main_rec["count"],
            "command": (f"llama-perplexity -m {C.MODELS[name]['file']} -f {TEXT_REL} -c {N_CTX} -b {N_BATCH} "
                        f"-t {N_THREADS}"),
            "llama_perplexity": {
                "final_ppl": tool["final"],
                "final_ppl_plus_minus": tool["final_pm"],
                "cumulative_ppl": tool["cumulative"],
                "flash_attn": tool["flash_attn_log"],
                "note": "values as printed by the tool (4 decimals for PPL, 5 for +/-)",
            },
            "python_recompute": {
                "how": ("llama-cpp-python Llama(n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2, flash_attn=True, "
                        "logits_all=True), METHOD applied to Llama.scores, log-softmax in float64"),
                "final_ppl": r(main_rec["ppl"]),
                "final_ppl_plus_minus": r(main_rec["pm"]),
                "mean_nll": r(main_rec["mean_nll"], 8),
                "per_chunk_ppl": [r(x) for x in main_rec["per_chunk"]],
                "cumulative_ppl": [r(x) for x in main_rec["cumulative"]],
                "max_abs_diff_vs_llama_perplexity": r(tool_vs_py),
            },
            "python_recompute_flash_attn_off": {
                "final_ppl": r(rec[False]["ppl"]),
                "per_chunk_ppl": [r(x) for x in rec[False]["per_chunk"]],
                "note": "same recomputation with flash_attn=False: llama.cpp's own spread between configurations",
            },
        }
        print(f"  python {main_rec['ppl']:.6f} (tool {tool['final']}), fa off {rec[False]['ppl']:.6f}", flush=True)
    if args.model and os.path.exists(out_path):
        import json

        old = json.load(open(out_path, encoding="utf-8"))
        for k, v in old.get("models", {}).items():
            models.setdefault(k, v)
        models = {k: models[k] for k in C.MODELS if k in models}
    doc = {
        "text": TEXT_REL,
        "text_sha256": hashlib.sha256(raw).hexdigest(),
        "text_bytes": len(raw),
        "reference": {"llama_cpp_python": llama_cpp.__version__, "llama_cpp_build": build,
                      "n_threads": N_THREADS, "n_ctx": N_CTX, "n_batch": N_BATCH, "type_k": "f16", "type_v": "f16",
                      "flash_attn": "auto (enabled on CPU)"},
        "method": METHOD,
        "models": models,
    }
    lines = ["{"]
    items = []
    for k, v in doc.items():
        if isinstance(v, dict):
            sub = []
            for sk, sv in v.items():
                if isinstance(sv, dict):
                    inner = ",\n".join(f"      {C.jdump(ik)}: {C.jdump(iv)}" for ik, iv in sv.items())
                    sub.append(f"    {C.jdump(sk)}: {{\n{inner}\n    }}")
                else:
                    sub.append(f"    {C.jdump(sk)}: {C.jdump(sv)}")
            items.append(f"  {C.jdump(k)}: {{\n" + ",\n".join(sub) + "\n  }")
        else:
            items.append(f"  {C.jdump(k)}: {C.jdump(v)}")
    lines.append(",\n".join(items))
    lines.append("}")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
