#!/usr/bin/env python3
"""Decode on a busy machine: lucid (and llama.cpp, given --llama-bin) beside
0, 1, 3 and 5 processes that each keep a core busy, on the same cores.

The busy processes are `while True: pass` loops, started before and killed
after each measurement. The kernel shares the cores equally between
runnable threads, so T decoding threads beside B busy processes on C cores
get min(T, T * C / (T + B)) cores' worth of time, where alone they would use
min(T, C): their fair share is the idle throughput times the ratio of the
two. Each row reports decode tokens/s (tg64 of `lucid bench` or
`llama-bench`, the median of the rounds, the engines alternating) and the
share of that fair share it reaches.

Usage:
  scripts/bench/busy.py [--model PATH] [--threads 1,2] [--busy 0,1,3,5]
                        [--rounds 3] [--lucid BIN] [--llama-bin DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lucid_tg(lucid, model, threads):
    out = subprocess.run(
        [lucid, "bench", model, "-p", "1", "-n", "64", "-r", "3", "-t", str(threads), "--json"],
        capture_output=True, text=True, check=True,
    )
    tests = {t["name"]: t for t in json.loads(out.stdout)["tests"]}
    return tests["tg64"]["tokens_per_s_mean"]


def llama_tg(bin_dir, model, threads):
    out = subprocess.run(
        [f"{bin_dir}/llama-bench", "-m", model, "-t", str(threads), "-p", "0", "-n", "64", "-r", "3", "-o", "json"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)[0]["avg_ts"]


def fair_share(idle, threads, busy, cores):
    """The share of `idle` that `threads` threads get beside `busy`
    always-runnable processes on `cores` cores when the time is shared
    equally between threads."""
    cores_for_us = min(threads, cores * threads / (threads + busy))
    return idle * cores_for_us / min(threads, cores)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--busy", default="0,1,3,5")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lucid", default=str(ROOT / "target/release/lucid"))
    ap.add_argument("--llama-bin", help="llama.cpp's bin directory, to measure it alongside")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    engines = {"lucid": lambda t: lucid_tg(args.lucid, args.model, t)}
    if args.llama_bin:
        engines["llama.cpp"] = lambda t: llama_tg(args.llama_bin, args.model, t)
    busies = [int(b) for b in args.busy.split(",")]
    idle = {}
    print(f"{cores} cores; {Path(args.model).name}")
    print("| engine | threads | busy processes | decode tok/s | fair share tok/s | of the fair share |")
    print("|---|---:|---:|---:|---:|---:|")
    for busy in busies:
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        time.sleep(0.5)
        try:
            for threads in [int(t) for t in args.threads.split(",")]:
                # Alternate the engines round by round.
                runs = {name: [] for name in engines}
                for _ in range(args.rounds):
                    for name, measure in engines.items():
                        runs[name].append(measure(threads))
                for name, rs in runs.items():
                    rate = statistics.median(rs)
                    if busy == 0:
                        idle[(name, threads)] = rate
                    base = idle.get((name, threads))
                    if base is None:
                        share = fair = float("nan")
                    else:
                        fair = fair_share(base, threads, busy, cores)
                        share = rate / fair
                    print(f"| {name} | {threads} | {busy} | {rate:.1f} | {fair:.1f} | {share:.0%} |", flush=True)
        finally:
            for h in hogs:
                h.kill()
                h.wait()


if __name__ == "__main__":
    main()
