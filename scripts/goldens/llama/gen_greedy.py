#!/usr/bin/env python3
"""Greedy-continuation goldens with per-step logits: tests/goldens/llama/{smollm2,gemma3}.json.

Reference: llama.cpp as vendored in the llama-cpp-python 0.3.36 sdist (commit 0c1e570), CPU build,
driven through llama-cpp-python's `Llama` class.

Environment (see _common.py): LLAMA_CPP_PYTHON, LLAMA_CPP_LIB_PATH, LLAMA_CPP_BIN, LUCID_MODEL_DIR.
Usage:  python3 scripts/goldens/llama/gen_greedy.py [--model smollm2|gemma3] [--skip-checks]
        (normally through scripts/goldens/llama/run_all.sh)

For each prompt (raw text, no chat template):
  * tokens = llama_tokenize(prompt, add_special=True, parse_special=False), so BOS is prepended exactly
    when the GGUF says tokenizer.ggml.add_bos_token (SmolLM2: no, Gemma 3: yes);
  * the whole prompt is evaluated in ONE llama_decode (n_batch = n_ubatch = 512, only the last position
    asks for logits -- what llama-completion does), then 48 greedy steps follow, one token per
    llama_decode;
  * steps[i] = the logits that chose tokens[i]: top-20 (id, logit) sorted by logit (ties: lower id first),
    the log-sum-exp over the whole vocabulary (float64), and the top1 - top2 margin;
  * end-of-generation tokens are NOT special-cased: if EOS/EOG is the argmax it is recorded as the token
    and decoding continues (48 tokens always).

Checks (skipped with --skip-checks; they only fill reference.self_disagreement / reference.cli_check):
  * the same tokens are teacher-forced through other llama.cpp configurations (one-token-at-a-time prompt
    evaluation, f32 KV cache, flash attention off, combinations, the whole prompt+continuation in one
    batch) and the largest difference on the golden top-5 ids is recorded;
  * llama-completion (the plain llama.cpp CLI) is run greedily on each prompt and its text must equal
    the golden continuation up to the first end-of-generation token.
"""

import argparse
import ctypes
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from _common import llama_cpp  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Here are the first ten prime numbers: 2, 3, 5,",
    "Once upon a time, in a small village at the edge of a dark forest,",
    "Question: How many legs does a spider have?\nAnswer:",
    "Crème brûlée and café au lait are two famous French",
    "Shopping list:\n- eggs\n- milk\n-",
    "Hello",
    "The theory of relativity was developed by",
    "import numpy as np\n\n# compute the mean of a list\ndef mean(xs):",
]

N_GEN = 48
TOP_N = 20
TOP_CMP = 5
NEAR_TIE = 0.5
SETTINGS = dict(n_threads=2, n_threads_batch=2, n_ctx=512, n_batch=512, n_ubatch=512, flash_attn=True)

# Other llama.cpp configurations, teacher-forced on the golden tokens, to measure how much llama.cpp
# disagrees with itself.  "incremental": prompt via Llama.eval (n_batch tokens per llama_decode), then one
# golden token per llama_decode; "one_batch": prompt + tokens[:-1] in a single llama_decode with logits for
# every position (how a teacher-forced test naturally feeds it).
VARIANTS = [
    ("prompt_one_token_at_a_time", "incremental", dict(n_batch=1, n_ubatch=1)),
    # Not run: f32 K/V cache with flash attention ON. llama.cpp casts an f32 cache to f16 before
    # ggml_flash_attn_ext (src/llama-graph.cpp), so it is identical to the golden (measured: 0.0).
    ("flash_attn_off", "incremental", dict(flash_attn=False)),
    ("flash_attn_off+prompt_one_token_at_a_time", "incremental", dict(flash_attn=False, n_batch=1, n_ubatch=1)),
    # the most precise llama.cpp attention: plain f32 matmuls over an f32 cache
    ("flash_attn_off+kv_cache_f32", "incremental",
     dict(flash_attn=False, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)),
    ("teacher_forced_one_batch", "one_batch", dict(logits_all=True)),
]


def make_llm(path, **over):
    kw = dict(SETTINGS, logits_all=False, verbose=False, seed=0)
    kw.update(over)
    return llama_cpp.Llama(path, **kw)


def last_logits(llm):
    ptr = llm._ctx.get_logits_ith(-1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def vocab_of(llm):
    return llama_cpp.llama_model_get_vocab(llm._model.model)


def piece(vocab, tok, special):
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, special)
    assert 0 <= n <= len(buf), n
    return buf.raw[:n]


def detok(llm, toks, special):
    vocab = vocab_of(llm)
    return b"".join(piece(vocab, t, special) for t in toks).decode("utf-8", errors="replace")


def tokenize(llm, text):
    vocab = vocab_of(llm)
    data = text.encode("utf-8")
    buf = (llama_cpp.llama_token * (len(data) + 16))()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(buf), True, False)
    assert n >= 0, n
    return [int(t) for t in buf[:n]]


def greedy(llm, prompt_tokens):
    llm.reset()
    llm.eval(prompt_tokens)
    tokens, steps = [], []
    for _ in range(N_GEN):
        lg = last_logits(llm)
        top = C.topk(lg, TOP_N)
        steps.append(dict(top=[(i, lg[i]) for i in top], lse=C.logsumexp(lg),
                          margin=float(np.float64(lg[top[0]]) - np.float64(lg[top[1]]))))
        tokens.append(top[0])
        llm.eval([top[0]])
    return tokens, steps


def teacher_forced(llm, mode, prompt_tokens, tokens):
    """Yields the logits that predict tokens[i], for i in 0..len(tokens)-1."""
    llm.reset()
    if mode == "incremental":
        llm.eval(prompt_tokens)
        for i, t in enumerate(tokens):
            yield last_logits(llm)
            if i + 1 < len(tokens):
                llm.eval([t])
    else:
        seq = prompt_tokens + tokens[:-1]
        assert len(seq) <= llm.n_batch
        llm.eval(seq)
        for i in range(len(tokens)):
            yield np.array(llm.scores[len(prompt_tokens) - 1 + i], dtype=np.float32)


def case_json(c):
    lines = ["  {"]
    for k in ("prompt", "add_bos", "prompt_tokens", "tokens", "text", "first_near_tie"):
        lines.append(f"   {C.jdump(k)}: {C.jdump(c[k])},")
    lines.append('   "steps": [')
    steps = []
    for s in c["steps"]:
        top = ", ".join(f"[{i}, {C.f32(v)}]" for i, v in s["top"])
        steps.append(f'    {{"top": [{top}], "logsumexp": {C.fnum(s["lse"])}, "margin": {C.fnum(s["margin"])}}}')
    lines.append(",\n".join(steps))
    lines.append("   ]")
    lines.append("  }")
    return "\n".join(lines)


def write_golden(path, header, cases):
    out = ["{"]
    for k, v in header.items():
        if k == "reference":
            out.append(' "reference": {')
            items = [f"  {C.jdump(rk)}: {C.jdump(rv)}" for rk, rv in v.items()]
            out.append(",\n".join(items))
            out.append(" },")
        else:
            out.append(f" {C.jdump(k)}: {C.jdump(v)},")
    out.append(' "cases": [')
    out.append(",\n".join(case_json(c) for c in cases))
    out.append(" ]")
    out.append("}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def self_disagreement(path, cases):
    results = []
    for name, mode, over in VARIANTS:
        llm = make_llm(path, **over)
        worst = dict(diff=0.0)
        diffs, lp_diffs, lse_diffs = [], [], []
        flips = []
        for ci, c in enumerate(cases):
            for si, lg in enumerate(teacher_forced(llm, mode, c["prompt_tokens"], c["tokens"])):
                st = c["steps"][si]
                lse = C.logsumexp(lg)
                lse_diffs.append(abs(lse - st["lse"]))
                for tid, gv in st["top"][:TOP_CMP]:
                    d = abs(float(lg[tid]) - float(gv))
                    diffs.append(d)
                    lp_diffs.append(abs((float(lg[tid]) - lse) - (float(gv) - st["lse"])))
                    if d > worst["diff"]:
                        worst = dict(diff=d, case=ci, step=si, token=tid)
                if C.topk(lg, 1)[0] != c["tokens"][si]:
                    flips.append([ci, si, round(st["margin"], 4)])
        del llm
        settings = dict(SETTINGS)
        settings.update({k: v for k, v in over.items() if k != "logits_all"})
        for k in ("type_k", "type_v"):
            if k in settings:
                settings[k] = "f32"
        diffs, lp_diffs = np.array(diffs), np.array(lp_diffs)
        results.append(dict(
            name=name, mode=mode, settings=settings,
            max_top5_abs_diff=round(float(diffs.max()), 4),
            at={k: worst[k] for k in ("case", "step", "token") if k in worst},
            p99_top5_abs_diff=round(float(np.percentile(diffs, 99)), 4),
            mean_top5_abs_diff=round(float(diffs.mean()), 4),
            max_top5_logprob_abs_diff=round(float(lp_diffs.max()), 4),
            p99_top5_logprob_abs_diff=round(float(np.percentile(lp_diffs, 99)), 4),
            max_logsumexp_abs_diff=round(float(max(lse_diffs)), 4),
            argmax_flips=flips,
        ))
        r = results[-1]
        print(f"  {name}: top5 max {r['max_top5_abs_diff']} at {r['at']} p99 {r['p99_top5_abs_diff']} "
              f"mean {r['mean_top5_abs_diff']}; logprob max {r['max_top5_logprob_abs_diff']} "
              f"p99 {r['p99_top5_logprob_abs_diff']}; lse {r['max_logsumexp_abs_diff']}; flips {flips}", flush=True)
    return results


def cli_check(path, llm, cases):
    exe = C.tool("llama-completion")
    if not os.path.exists(exe):
        return dict(skipped=f"{exe} not found")
    vocab = vocab_of(llm)
    ok = 0
    mism = []
    args = ["--temp", "0", "-t", "2", "-c", str(SETTINGS["n_ctx"]), "-b", "512", "-ub", "512", "-fa", "on",
            "-no-cnv", "--no-display-prompt", "--simple-io", "-s", "0"]
    for ci, c in enumerate(cases):
        k = next((i for i, t in enumerate(c["tokens"]) if llama_cpp.llama_vocab_is_eog(vocab, t)), N_GEN)
        want = b"".join(piece(vocab, t, False) for t in c["tokens"][:k])
        if k == 0:
            ok += 1
            continue
        res = subprocess.run([exe, "-m", path, "-p", c["prompt"], "-n", str(k)] + args,
                             env=C.tool_env(), capture_output=True)
        got = res.stdout
        if got[:len(want)] == want and (got[len(want):].strip() == b"" or k < N_GEN):
            ok += 1
        else:
            mism.append(ci)
            print(f"  llama-completion mismatch case {ci}: want {want!r}\n   got {got!r}", flush=True)
    return dict(tool="llama-completion",
                args="-m MODEL -p PROMPT -n K " + " ".join(args),
                rule="stdout must equal the golden text of tokens[:K], K = index of the first EOG token (or 48)",
                cases_matching=ok, cases=len(cases), mismatching_cases=mism)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(C.MODELS), action="append")
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--out-dir", default=C.GOLDEN_DIR)
    ap.add_argument("--build-flags", default="GGML_NATIVE=ON",
                    help="how the llama.cpp in LLAMA_CPP_LIB_PATH was built (recorded as is); "
                         "for the AVX2 goldens: GGML_NATIVE=OFF GGML_AVX=ON GGML_AVX2=ON GGML_FMA=ON GGML_F16C=ON "
                         "GGML_BMI2=ON, with --out-dir tests/goldens/llama/avx2")
    args = ap.parse_args()
    C.check_versions()
    build = C.llama_cpp_build()
    for name in args.model or list(C.MODELS):
        path, sha = C.check_model(name)
        llm = make_llm(path)
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab_of(llm)))
        bos = llama_cpp.llama_vocab_bos(vocab_of(llm))
        eog = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab_of(llm), t)]
        cases = []
        for prompt in PROMPTS:
            pt = tokenize(llm, prompt)
            assert (pt[0] == bos) == add_bos, (prompt, pt)
            toks, steps = greedy(llm, pt)
            for s in steps:
                s["top"] = [(i, np.float32(v)) for i, v in s["top"]]
            margins = [round(s["margin"], 6) for s in steps]
            fnt = next((i for i, m in enumerate(margins) if m < NEAR_TIE), None)
            cases.append(dict(prompt=prompt, add_bos=add_bos, prompt_tokens=pt, tokens=toks,
                              text=detok(llm, toks, True), first_near_tie=fnt, steps=steps))
            print(f"{name}: {prompt!r} -> {cases[-1]['text']!r} (first near tie {fnt})", flush=True)
        reference = {
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_build": build,
            "n_threads": SETTINGS["n_threads"],
            "n_ctx": SETTINGS["n_ctx"],
            "n_batch": SETTINGS["n_batch"],
            "type_k": "f16",
            "type_v": "f16",
            "n_ubatch": SETTINGS["n_ubatch"],
            "n_threads_batch": SETTINGS["n_threads_batch"],
            "flash_attn": "enabled (llama.cpp's default 'auto' resolves to enabled on CPU; llama-cpp-python's own default is disabled, so flash_attn=True is passed)",
            "swa_full": "true (llama-cpp-python's context default; irrelevant here: every sequence is far shorter than Gemma 3's 512-token window)",
            "backend": ("CPU (ggml-cpu, native build), no GPU offload" if args.build_flags == "GGML_NATIVE=ON"
                        else f"CPU (ggml-cpu built with {args.build_flags}), no GPU offload"),
            "n_generated": N_GEN,
            "near_tie_margin": NEAR_TIE,
            "eog_token_ids": eog,
            "notes": (
                "Made by scripts/goldens/llama/gen_greedy.py through llama-cpp-python's Llama(model, n_threads=2, "
                "n_threads_batch=2, n_ctx=512, n_batch=512, n_ubatch=512, flash_attn=True, logits_all=False); default "
                "f16 K/V cache. Raw prompts, no chat template; prompt_tokens = llama_tokenize(text, add_special=true, "
                "parse_special=false), so BOS is present exactly when tokenizer.ggml.add_bos_token is true. The whole "
                "prompt is evaluated in one llama_decode with logits requested only for its last position (the batched "
                "path llama-completion uses); each generated token is then decoded alone. Greedy = argmax, ties to the "
                "lower id. EOS/EOG is NOT a stop: when it is the argmax it is recorded in tokens and decoding goes on, "
                "so every case has exactly 48 tokens (eog_token_ids lists this model's end-of-generation ids). "
                "steps[i] holds the logits that chose tokens[i] (computed after prompt_tokens + tokens[:i]): top-20 "
                "(id, float32 logit printed as the shortest round-tripping decimal) sorted by logit, ties to the lower "
                "id; logsumexp over the whole vocabulary in float64 (6 decimals); margin = top1 - top2 (6 decimals). "
                "first_near_tie = first step with margin < 0.5, or null. text = the 48 tokens detokenized with "
                "special tokens rendered. Flash attention is ON, as in llama.cpp's own tools (llama-cli, "
                "llama-completion, llama-perplexity: -fa auto = enabled on CPU); on the CPU backend its V "
                "accumulator is f16 and an f32 K/V cache is cast to f16 first. llama.cpp disagrees with itself "
                "across its own configurations (batched vs one-token-at-a-time prompt evaluation, f16 vs f32 KV "
                "cache, flash attention on/off, teacher-forced single batch vs incremental decoding): "
                "self_disagreement gives, per configuration, the largest difference on the golden top-5 ids; a "
                "lucid implementation cannot be expected to match more closely than that spread."
            ),
        }
        if not args.skip_checks:
            print(f"{name}: llama-completion cross-check", flush=True)
            reference["cli_check"] = cli_check(path, llm, cases)
            del llm
            print(f"{name}: self-disagreement", flush=True)
            sd = self_disagreement(path, cases)
            worst = max(sd, key=lambda r: r["max_top5_abs_diff"])
            reference["self_disagreement"] = {
                "method": ("each configuration below is a separate llama.cpp context fed the golden prompt_tokens + "
                           "tokens (teacher-forced); at every step its logits are compared with the golden logits "
                           "on the golden top-5 ids; max_top5_abs_diff is the largest |difference| over all cases, "
                           "steps and those ids; at = {case, step, token} where it occurs; argmax_flips = "
                           "[case, step, golden margin] where that configuration's argmax differs from the golden "
                           "token. 'incremental' = prompt through Llama.eval (n_batch tokens per llama_decode) then "
                           "one token per llama_decode; 'one_batch' = prompt + tokens[:47] in a single llama_decode "
                           "with logits_all=True. Settings not listed are as in the golden run. p99/mean: over all "
                           "(case, step, top-5 id) triples. *_logprob_* compare log-softmax values (logit - "
                           "logsumexp) instead of raw logits. A flash-attention-on f32 K/V cache is not listed: "
                           "llama.cpp casts it to f16 before flash attention, so it equals the golden exactly."),
                "max_top5_abs_diff": worst["max_top5_abs_diff"],
                "max_top5_abs_diff_config": worst["name"],
                "configs": sd,
            }
        header = {
            "model": name,
            "file": C.MODELS[name]["file"],
            "sha256": sha,
            "reference": reference,
            "top_n": TOP_N,
        }
        out = os.path.join(args.out_dir, f"{name}.json")
        write_golden(out, header, cases)
        print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
