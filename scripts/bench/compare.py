#!/usr/bin/env python3
"""lucid beside llama.cpp on the same GGUF, threads and machine, in one run.

For each model and thread count, the two engines run alternately (lucid,
llama.cpp, lucid, ...) for several rounds, so that a change in the machine's
load hits both; each run is a fresh process with a warm-up and repetitions.
Reports the medians over rounds and the ratio lucid / llama.cpp for:

  prefill tokens/s at 64 and 512 prompt tokens (pp64, pp512),
  decode tokens/s for 128 tokens (tg128),
  time to first token for a 64-token prompt (from pp64),
  model load time, peak RSS,
  decode with one busy process beside it on the same cores (slowdown), and
  the floors: memory bandwidth (decode) and arithmetic peak (prefill).

Usage:
  scripts/bench/compare.py [--models smollm2,gemma3] [--threads 1,2]
                           [--rounds 3] [--llama-bin DIR] [--lucid BIN] [--json OUT]
                           [--quick]

A model is a test model's name or a path to any GGUF file (such as the
random-weight files of real models' shapes that scripts/bench/synthetic_model.py
writes). --quick measures prefill and decode alone (no load time, peak RSS,
busy-machine decode or floors), for large models on small machines.

--llama-bin defaults to what scripts/bench/build-llama-cpp.sh builds.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}


def run(cmd, env=None):
    """Runs cmd, returning (stdout, peak RSS in bytes of the child)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far; use wait4
    # semantics through resource on the single child instead.
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
    return out.decode(), err.decode(), time.monotonic() - start


def peak_rss(cmd, env=None):
    """Peak RSS (bytes) of one run of cmd, from wait4."""
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execvpe(cmd[0], cmd, env or os.environ)
    _, status, usage = os.wait4(pid, 0)
    return usage.ru_maxrss * 1024


def lucid_bench(lucid, model, threads, floors=False):
    cmd = [lucid, "bench", model, "-t", str(threads), "-p", "64,512", "-n", "128", "-r", "3", "--json"]
    if floors:
        cmd.append("--floors")
    out, _, _ = run(cmd)
    r = json.loads(out)
    tests = {t["name"]: t["tokens_per_s_mean"] for t in r["tests"]}
    return {
        "pp64": tests["pp64"],
        "pp512": tests["pp512"],
        "tg128": tests["tg128"],
        "load_ms": r["load_ms"],
        "peak_rss": r["peak_rss_bytes"],
        "floors": r.get("floors"),
    }


def llama_bench(bin_dir, path, threads, quick=False):
    out, _, _ = run([f"{bin_dir}/llama-bench", "-m", path, "-t", str(threads), "-p", "64,512", "-n", "128",
                     "-r", "3", "-o", "json"])
    rows = json.loads(out)
    res = {}
    for row in rows:
        name = f"pp{row['n_prompt']}" if row["n_gen"] == 0 else f"tg{row['n_gen']}"
        res[name] = row["avg_ts"]
    if quick:
        return res
    # Load time as llama.cpp reports it, from a one-token completion.
    _, err, _ = run([f"{bin_dir}/llama-completion", "-m", path, "-t", str(threads), "-p", "Hi", "-n", "1",
                     "-no-cnv", "--no-warmup"])
    m = re.search(r"load time\s*=\s*([0-9.]+) ms", err)
    res["load_ms"] = float(m.group(1)) if m else float("nan")
    res["peak_rss"] = peak_rss([f"{bin_dir}/llama-completion", "-m", path, "-t", str(threads), "-p",
                                "The capital of France is", "-n", "48", "-no-cnv", "--no-warmup"])
    return res


def busy_decode(cmd_fn, threads):
    """tg128 with one busy process on the same cores."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return cmd_fn()
    finally:
        hog.kill()
        hog.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-bin", default=None)
    ap.add_argument("--lucid", default=str(ROOT / "target/release/lucid"))
    ap.add_argument("--model-dir", default=os.environ.get("LUCID_MODEL_DIR", str(ROOT / ".cache/models")))
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--quick", action="store_true", help="prefill and decode only")
    args = ap.parse_args()
    bin_dir = args.llama_bin or subprocess.check_output([str(ROOT / "scripts/bench/build-llama-cpp.sh")], text=True).strip()
    os.environ.setdefault("LUCID_LOCAL_MODELS", args.model_dir)

    results = []
    for model in args.models.split(","):
        path = model if model.endswith(".gguf") else str(Path(args.model_dir) / FILES[model])
        model = Path(model).stem if model.endswith(".gguf") else model
        for threads in [int(t) for t in args.threads.split(",")]:
            rounds = {"lucid": [], "llama.cpp": []}
            for _ in range(args.rounds):
                rounds["lucid"].append(lucid_bench(args.lucid, path, threads))
                rounds["llama.cpp"].append(llama_bench(bin_dir, path, threads, quick=args.quick))
            keys = ("pp64", "pp512", "tg128") if args.quick else ("pp64", "pp512", "tg128", "load_ms", "peak_rss")
            med = {e: {k: statistics.median(r[k] for r in rs) for k in keys} for e, rs in rounds.items()}
            for e in med:
                med[e]["ttft_ms"] = 64 / med[e]["pp64"] * 1e3
            if args.quick:
                results.append({"model": model, "threads": threads, "median": med, "rounds": rounds})
                continue
            floors = lucid_bench(args.lucid, path, threads, floors=True)["floors"]
            busy = {
                "lucid": busy_decode(lambda: lucid_bench(args.lucid, path, threads)["tg128"], threads),
                "llama.cpp": busy_decode(lambda: llama_bench(bin_dir, path, threads)["tg128"], threads),
            }
            results.append({"model": model, "threads": threads, "median": med, "busy_tg128": busy, "floors": floors,
                            "rounds": rounds})

    print_markdown(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def print_markdown(results):
    print("| model | threads | metric | lucid | llama.cpp | lucid / llama.cpp |")
    print("|---|---|---|---|---|---|")
    for r in results:
        m, t = r["model"], r["threads"]
        lu, ll = r["median"]["lucid"], r["median"]["llama.cpp"]
        for key, label, unit, better_high in [
            ("pp64", "prefill, 64 tokens", "tok/s", True),
            ("pp512", "prefill, 512 tokens", "tok/s", True),
            ("tg128", "decode, 128 tokens", "tok/s", True),
            ("ttft_ms", "time to first token (64)", "ms", False),
            ("load_ms", "load time", "ms", False),
            ("peak_rss", "peak RSS", "MiB", False),
        ]:
            if key not in lu:
                continue
            a, b = lu[key], ll[key]
            if unit == "MiB":
                a, b = a / 2**20, b / 2**20
            print(f"| {m} | {t} | {label} ({unit}) | {a:.1f} | {b:.1f} | {a / b:.2f} |")
        if "busy_tg128" not in r:
            continue
        bl, bb = r["busy_tg128"]["lucid"], r["busy_tg128"]["llama.cpp"]
        print(f"| {m} | {t} | decode beside a busy process (tok/s) | {bl:.1f} ({bl / lu['tg128']:.0%} of idle) | "
              f"{bb:.1f} ({bb / ll['tg128']:.0%} of idle) | {bl / bb:.2f} |")
        f = r["floors"]
        if f:
            ceil = f["decode_tokens_per_s_ceiling"]
            print(f"| {m} | {t} | decode ceiling from {f['memory_read_bytes_per_s'] / 1e9:.1f} GB/s (tok/s) | "
                  f"{lu['tg128'] / ceil:.0%} of {ceil:.0f} | {ll['tg128'] / ceil:.0%} of {ceil:.0f} | |")
            pceil = f["prefill_tokens_per_s_ceiling"]
            print(f"| {m} | {t} | prefill ceiling at {f['kernel_macs_per_s'] / 1e9:.0f} G MAC/s (tok/s) | "
                  f"{lu['pp512'] / pceil:.0%} of {pceil:.0f} | {ll['pp512'] / pceil:.0%} of {pceil:.0f} | |")


if __name__ == "__main__":
    main()
