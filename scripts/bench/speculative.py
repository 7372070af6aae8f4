#!/usr/bin/env python3
"""Speculative decoding by prompt lookup (`lucid run --draft lookup`) beside
plain decoding, on the same model, prompt, threads and machine, in one run.

For each model and task, the two run alternately (plain, drafting, plain,
...) for several rounds as fresh `lucid run --json` processes (at
temperature 0, or sampled with a fixed seed), so that a change in the machine's load hits both. Reports the medians of
decode tokens/s, their ratio (drafting / plain), and the share of guesses
the model kept; and checks that both produced the same text, which
drafting must never change.

The tasks: editing code (the answer repeats most of the prompt: where
prompt lookup pays), extracting a list from a given text (repeats part of
it), and free-form chat (repeats little: what drafting costs when guesses
fail; sampled, since greedy decoding of small models often loops, which
prompt lookup then guesses well).

Usage:
  scripts/bench/speculative.py [--models smollm2,gemma3] [--threads 2]
                               [--rounds 3] [--max-tokens 256] [--lucid BIN]
                               [--draft-max N] [--json OUT]
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}

CODE = '''def mean(xs):
    total = 0
    for x in xs:
        total += x
    return total / len(xs)


def variance(xs):
    m = mean(xs)
    total = 0
    for x in xs:
        total += (x - m) ** 2
    return total / len(xs)


def median(xs):
    ys = sorted(xs)
    n = len(ys)
    if n % 2 == 1:
        return ys[n // 2]
    return (ys[n // 2 - 1] + ys[n // 2]) / 2


def summary(xs):
    return {"mean": mean(xs), "variance": variance(xs), "median": median(xs)}
'''

TEXT = (
    "The museum opens at 9 am on weekdays and at 10 am on weekends. Tickets cost "
    "12 euros for adults, 8 euros for students and are free for children under 12. "
    "Guided tours in English start at 11 am and 3 pm; tours in French start at 10 am "
    "and 2 pm. The cafe on the ground floor serves lunch from noon to 3 pm, and the "
    "shop near the exit sells books, posters and postcards of the collection."
)

# (prompt, temperature): sampled tasks run with a fixed seed, so both runs
# must still give the same text.
TASKS = {
    "edit code": (
        "Rename the variable `xs` to `values` everywhere in this Python code. "
        "Reply with the whole code and nothing else.\n\n```python\n" + CODE + "```",
        0.0,
    ),
    "extract": (
        "Here is a text:\n\n" + TEXT + "\n\nList every fact in the text as a "
        "bullet point, using the text's own words.",
        0.0,
    ),
    "free chat": ("Write a short story about a robot who learns to paint.", 0.0),
    "free chat, sampled": ("Write a short story about a robot who learns to paint.", 0.8),
    "question, sampled": ("Why is the sky blue? Explain it to a child.", 0.8),
}


def run(lucid, model, prompt, temperature, threads, max_tokens, draft_max, draft):
    cmd = [
        lucid, "run", model, prompt, "--json", "--temperature", str(temperature), "--seed", "1",
        "--max-tokens", str(max_tokens), "--threads", str(threads),
    ]
    if draft:
        cmd += ["--draft", "lookup"]
        if draft_max is not None:
            cmd += ["--draft-max", str(draft_max)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--draft-max", type=int, help="default: lucid's")
    ap.add_argument("--lucid", default=str(ROOT / "target/release/lucid"))
    ap.add_argument("--model-dir", default=str(ROOT / ".cache/models"))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    results = []
    print("| model | task | tokens | plain tok/s | drafting tok/s | drafting / plain | guesses kept |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model = str(Path(args.model_dir) / FILES[name]) if name in FILES else name
        for task, (prompt, temperature) in TASKS.items():
            plain, drafting = [], []
            for _ in range(args.rounds):
                for draft, into in ((False, plain), (True, drafting)):
                    into.append(
                        run(args.lucid, model, prompt, temperature, args.threads, args.max_tokens, args.draft_max, draft)
                    )
            texts = {r["text"] for r in plain + drafting}
            if len(texts) != 1:
                sys.exit(f"{name} {task}: drafting changed the text")
            rate = lambda rs: statistics.median(r["timings"]["decode_tokens_per_s"] for r in rs)
            t = drafting[0]["timings"]
            kept = f"{t['draft_accepted']} / {t['draft_tokens']}"
            row = {
                "model": name,
                "task": task,
                "tokens": len(plain[0]["tokens"]),
                "plain_tok_s": rate(plain),
                "drafting_tok_s": rate(drafting),
                "ratio": rate(drafting) / rate(plain),
                "draft_tokens": t["draft_tokens"],
                "draft_accepted": t["draft_accepted"],
            }
            results.append(row)
            print(
                f"| {name} | {task} | {row['tokens']} | {row['plain_tok_s']:.1f} | "
                f"{row['drafting_tok_s']:.1f} | {row['ratio']:.2f}x | {kept} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
