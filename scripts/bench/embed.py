#!/usr/bin/env python3
"""Sentence-embedding throughput on all-MiniLM-L6-v2: lucid beside
sentence-transformers (PyTorch, CPU) and fastembed (ONNX Runtime), in one run.

The batch is N (default 256) English sentences of 10 to 60 wordpieces
([CLS] and [SEP] included), generated here deterministically and written to
.cache/bench-embed/sentences.txt, one per line. Each engine embeds the whole
file once per round; the engines take turns within a round, in an order that
rotates from round to round, so that a change in the machine's load hits all
of them. Reported: sentences per second, the median over the rounds (and the
best round, for a busy machine), and the ratio of medians lucid / the faster
of the other two.

  sentence-transformers  SentenceTransformer(dir).encode(sentences) with its
                         defaults (batch_size 32, length-sorted batches),
                         torch.set_num_threads(THREADS), in a worker process
                         that loaded the model and embedded the batch once
                         before the first round.
  fastembed              TextEmbedding("sentence-transformers/all-MiniLM-L6-v2",
                         specific_model_path=ONNX_DIR, threads=THREADS)
                         .embed(sentences) with its defaults (batch_size 256),
                         warm likewise. fastembed downloads its ONNX file from
                         the Hugging Face hub unless given specific_model_path;
                         here the file is exported from the same checkpoint
                         with torch.onnx.export (BertModel -> last_hidden_state,
                         opset 17, dynamic batch and length) into
                         .cache/onnx/all-MiniLM-L6-v2/, and fastembed does the
                         mean pooling and normalisation as it does for its own
                         copy of this model. If fastembed cannot be imported or
                         load the directory, ONNX Runtime is used directly on
                         the same file (the table then says "onnxruntime").
  lucid                  `lucid embed --json MODEL_DIR --file sentences.txt`
                         (with `--threads THREADS` where `lucid embed --help`
                         lists it), a fresh process each round. Three rows:
                         "lucid" is the command's wall time (start-up and
                         model load included); "lucid (start-up taken off)"
                         subtracts the wall time of the same command on a
                         one-line file, run in the same round; "lucid (in
                         process)" uses the `seconds` its JSON output reports
                         for the embedding itself (tokenizing included, as in
                         the other engines' timings), where present. The ratio
                         column compares each with the faster of the others.
                         Skipped, with a message, when the binary has no
                         `embed` subcommand.

Every engine's vectors are checked against sentence-transformers' (cosine
similarity over all sentences, at least 0.9999) before any timing counts;
lucid's only when its JSON output holds the vectors where this script looks.

Usage (from the repository root; the driver needs `tokenizers`, e.g. the
fixtures venv, and the engines run in their own venvs):

    python3 -m venv .cache/fixtures-venv
    .cache/fixtures-venv/bin/pip install torch transformers sentence-transformers tokenizers onnx
    python3 -m venv .cache/bench-embed-venv
    .cache/bench-embed-venv/bin/pip install fastembed
    .cache/fixtures-venv/bin/python scripts/bench/embed.py [MODEL_DIR]
        [--rounds 5] [--threads 2] [--n 256] [--lucid BIN] [--json OUT]
        [--st-python PY] [--fastembed-python PY] [--skip st,fastembed,lucid]

MODEL_DIR defaults to .cache/models/all-MiniLM-L6-v2 (scripts/fetch-test-models.sh);
the lucid binary to $LUCID_BIN, else target/release/lucid. Nothing is
downloaded (HF_HUB_OFFLINE=1).
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MIN_TOKENS, MAX_TOKENS = 10, 60
PROTO = "@@bench "

# --- The sentences ---------------------------------------------------------

OPENERS = [
    "The", "A", "Our", "Every", "No", "This", "That", "Some", "My", "Their", "Yesterday the",
    "In 2019 the", "After the storm the", "According to the report, the", "Surprisingly, the",
]
ADJECTIVES = [
    "quick", "old", "quiet", "enormous", "tiny", "bright", "curious", "tired", "famous", "local",
    "digital", "ancient", "reliable", "noisy", "careful", "hungry", "distant", "modern",
]
NOUNS = [
    "engineer", "river", "library", "committee", "garden", "algorithm", "village", "teacher",
    "orchestra", "satellite", "bakery", "museum", "startup", "volcano", "hospital", "robot",
    "market", "student", "forest", "bridge", "newspaper", "database", "kitchen", "harbour",
]
VERBS = [
    "opened", "crossed", "rebuilt", "studied", "ignored", "described", "measured", "visited",
    "replaced", "translated", "announced", "painted", "reviewed", "followed", "protected",
]
EXTRAS = [
    "before the sun went down", "with surprising care", "for the first time in years",
    "while everyone else was asleep", "despite the heavy rain", "at exactly 7:45 in the morning",
    "using nothing but a pencil and a ruler", "because the old one had finally broken",
    "in front of a crowd of about 300 people", "without asking for permission",
    "and then wrote a long letter about it", "as part of a project funded by the city",
    "although nobody really understood why", "during the long and unusually cold winter",
]


def make_sentences(n: int, tok) -> list[str]:
    """n distinct sentences of MIN_TOKENS..MAX_TOKENS wordpieces, the same every run."""
    rng = random.Random(1234)
    out, seen = [], set()
    while len(out) < n:
        parts = [
            rng.choice(OPENERS), rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS),
            "the", rng.choice(ADJECTIVES), rng.choice(NOUNS),
        ]
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 6, 7])):
            parts.append(rng.choice(EXTRAS))
        s = " ".join(parts) + rng.choice([".", ".", "!", "?"])
        if rng.random() < 0.3:
            s += " " + rng.choice(OPENERS) + " " + rng.choice(NOUNS) + " " + rng.choice(VERBS) + " it."
        k = len(tok.encode(s).ids)
        if MIN_TOKENS <= k <= MAX_TOKENS and s not in seen:
            seen.add(s)
            out.append(s)
    return out


# --- Workers (run in the engines' own Pythons) ------------------------------


def say(*parts) -> None:
    print(PROTO + " ".join(str(p) for p in parts), flush=True)


def worker(kind: str, model_dir: str, onnx_dir: str, sentences_file: str, threads: int) -> None:
    """Loads one engine, embeds the batch once, then answers `run` and `dump PATH`."""
    import numpy as np

    sentences = Path(sentences_file).read_text(encoding="utf-8").splitlines()
    t0 = time.perf_counter()
    if kind == "st":
        import sentence_transformers
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(model_dir, device="cpu")

        def embed():
            return model.encode(sentences)

        version = f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}"
    elif kind == "fastembed":
        import fastembed
        import onnxruntime
        from fastembed import TextEmbedding

        model = TextEmbedding(
            model_name=MODEL_NAME, specific_model_path=onnx_dir, threads=threads, local_files_only=True
        )

        def embed():
            return np.stack(list(model.embed(sentences)))

        version = f"fastembed {fastembed.__version__}, onnxruntime {onnxruntime.__version__}"
    elif kind == "onnxruntime":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(Path(onnx_dir) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(Path(onnx_dir) / "tokenizer.json"))
        tok.enable_truncation(256)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")

        def embed():
            enc = tok.encode_batch(sentences)
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            h = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        version = f"onnxruntime {ort.__version__}"
    else:
        raise SystemExit(f"unknown worker {kind}")
    embed()  # warm-up
    say("ready", f"{time.perf_counter() - t0:.3f}", json.dumps(version))
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            t = time.perf_counter()
            embed()
            say("time", f"{time.perf_counter() - t:.6f}")
        elif cmd[0] == "dump":
            np.save(cmd[1], np.asarray(embed(), dtype=np.float32))
            say("dumped")


def export_onnx(model_dir: Path, onnx_dir: Path, max_seq_length: int) -> None:
    """BertModel -> last_hidden_state as ONNX, with the tokenizer files fastembed reads."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    onnx_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 7592, 102, 0, 0]])
    axes = {0: "batch", 1: "sequence"}
    tmp = onnx_dir / "model.onnx.tmp"
    with torch.no_grad():
        torch.onnx.export(
            Hidden(model), (ids, (ids != 0).long(), torch.zeros_like(ids)), str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes},
            opset_version=17, dynamo=False,
        )
    for f in ("tokenizer.json", "config.json", "special_tokens_map.json"):
        if (model_dir / f).exists():
            shutil.copy(model_dir / f, onnx_dir / f)
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = max_seq_length  # what sentence-transformers truncates at
    (onnx_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.rename(onnx_dir / "model.onnx")


# --- The driver ------------------------------------------------------------


class Worker:
    def __init__(self, name, python, args, env, log: Path):
        self.name, self.log = name, log
        cmd = [python, str(Path(__file__).resolve()), "--worker", *args]
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
            )
        ready = self.expect("ready")
        self.load_s, self.version = float(ready[0]), json.loads(" ".join(ready[1:]))

    def expect(self, word):
        for line in self.proc.stdout:
            if line.startswith(PROTO):
                parts = line[len(PROTO):].split()
                if parts[0] == word:
                    return parts[1:]
        self.proc.wait()
        raise RuntimeError(f"{self.name} worker ended; its log ({self.log}):\n{self.log.read_text()[-3000:]}")

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.expect("time")[0])

    def dump(self, path):
        self.proc.stdin.write(f"dump {path}\n")
        self.proc.stdin.flush()
        self.expect("dumped")

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def lucid_embed_help(lucid: str):
    """`lucid embed --help`, or None when the binary has no embed subcommand."""
    if not Path(lucid).exists():
        return None
    p = subprocess.run([lucid, "embed", "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return p.stdout


def lucid_vectors(out: str):
    """The vectors in `lucid embed --json` output, where this script knows to look."""
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        rows = []
        for line in out.splitlines():
            if line.strip():
                rows.append(json.loads(line))
        doc = rows
    if isinstance(doc, dict):
        for key in ("embeddings", "data", "vectors"):
            if key in doc:
                doc = doc[key]
                break
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        for key in ("embedding", "vector", "values"):
            if key in doc[0]:
                return [d[key] for d in doc]
        return None
    if isinstance(doc, list) and doc and isinstance(doc[0], list):
        return doc
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", nargs="?", default=str(CACHE / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--lucid", default=os.environ.get("LUCID_BIN", str(ROOT / "target" / "release" / "lucid")))
    ap.add_argument("--st-python", default=sys.executable)
    ap.add_argument("--fastembed-python", default=str(CACHE / "bench-embed-venv" / "bin" / "python"))
    ap.add_argument("--onnx-dir", default=str(CACHE / "onnx" / "all-MiniLM-L6-v2"))
    ap.add_argument("--skip", default="", help="comma-separated: st, fastembed, lucid")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--worker", nargs=5, metavar=("KIND", "MODEL", "ONNX", "FILE", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.worker:
        kind, model, onnx, file, threads = args.worker
        return worker(kind, model, onnx, file, int(threads))

    import numpy as np
    from tokenizers import Tokenizer

    skip = set(filter(None, args.skip.split(",")))
    model_dir = Path(args.model_dir).resolve()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    work = CACHE / "bench-embed"
    work.mkdir(parents=True, exist_ok=True)
    sentences = make_sentences(args.n, tok)
    sentences_file = work / "sentences.txt"
    sentences_file.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    one_file = work / "one-sentence.txt"
    one_file.write_text(sentences[0] + "\n", encoding="utf-8")
    lengths = [len(tok.encode(s).ids) for s in sentences]
    print(f"{len(sentences)} sentences, {min(lengths)}-{max(lengths)} tokens "
          f"(mean {statistics.mean(lengths):.1f}), {args.threads} threads, {args.rounds} rounds")
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: the machine is busy (load average {load_before[0]:.2f}); the numbers will show it")

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[var] = str(args.threads)
    env["TOKENIZERS_PARALLELISM"] = "false"

    workers = {}
    wargs = lambda kind: [kind, str(model_dir), args.onnx_dir, str(sentences_file), str(args.threads)]  # noqa: E731
    if "st" not in skip:
        workers["sentence-transformers"] = Worker(
            "sentence-transformers", args.st_python, wargs("st"), env, work / "sentence-transformers.log")
    if "fastembed" not in skip:
        onnx_dir = Path(args.onnx_dir)
        if not (onnx_dir / "model.onnx").exists():
            print(f"exporting {model_dir} to {onnx_dir / 'model.onnx'} ...")
            st_cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
            export_onnx(model_dir, onnx_dir, st_cfg.get("max_seq_length", 512))
        try:
            workers["fastembed"] = Worker(
                "fastembed", args.fastembed_python, wargs("fastembed"), env, work / "fastembed.log")
        except Exception as e:  # noqa: BLE001
            print(f"fastembed could not load {onnx_dir}: {str(e)[-500:]}\nusing onnxruntime directly")
            workers["onnxruntime"] = Worker(
                "onnxruntime", args.fastembed_python, wargs("onnxruntime"), env, work / "onnxruntime.log")

    lucid_cmd = lucid_one = None
    if "lucid" not in skip:
        help_text = lucid_embed_help(args.lucid)
        if help_text is None:
            print(f"lucid: skipped ({args.lucid} is missing or has no `embed` subcommand; "
                  "build it with `cargo build --release` or set LUCID_BIN)")
        else:
            threads = ["--threads", str(args.threads)] if "--threads" in help_text else []
            if not threads:
                print("lucid: `embed` has no --threads; it runs with its default")
            lucid_cmd = [args.lucid, "embed", "--json", *threads, str(model_dir), "--file", str(sentences_file)]
            lucid_one = [args.lucid, "embed", "--json", *threads, str(model_dir), "--file", str(one_file)]

    # Parity with sentence-transformers before timing anything.
    notes = {}
    with tempfile.TemporaryDirectory() as tmp:
        vecs = {}
        for name, w in workers.items():
            w.dump(f"{tmp}/{name}.npy")
            vecs[name] = np.load(f"{tmp}/{name}.npy")
        if lucid_cmd:
            p = subprocess.run(lucid_cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"lucid embed failed ({p.returncode}):\n{p.stderr[-2000:]}")
            v = lucid_vectors(p.stdout)
            if v is None:
                notes["lucid"] = "vectors not found in the JSON output; not checked"
            else:
                vecs["lucid"] = np.asarray(v, dtype=np.float32)
        ref = vecs.get("sentence-transformers")
        for name, v in vecs.items():
            if ref is None or name == "sentence-transformers":
                continue
            if v.shape != ref.shape:
                sys.exit(f"{name}: {v.shape} vectors, sentence-transformers gives {ref.shape}")
            cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
            notes[name] = f"min cosine to sentence-transformers {cos.min():.6f}"
            if cos.min() < 0.9999:
                sys.exit(f"{name}: vectors differ from sentence-transformers' (min cosine {cos.min():.6f})")

    names = list(workers) + (["lucid"] if lucid_cmd else [])
    times = {n: [] for n in names}
    startup, in_process = [], []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if name == "lucid":
                t = time.perf_counter()
                subprocess.run(lucid_one, capture_output=True, env=env, check=True)
                startup.append(time.perf_counter() - t)
                t = time.perf_counter()
                p = subprocess.run(lucid_cmd, capture_output=True, text=True, env=env, check=True)
                times[name].append(time.perf_counter() - t)
                try:
                    in_process.append(float(json.loads(p.stdout)["seconds"]))
                except (ValueError, KeyError, TypeError):
                    pass
            else:
                times[name].append(workers[name].run())
        print(f"round {r + 1}: " + ", ".join(f"{n} {len(sentences) / times[n][-1]:.1f}/s" for n in names))
    for w in workers.values():
        w.close()

    n = len(sentences)
    # name -> (sentences per timed run, the round times)
    series = {name: (n, ts) for name, ts in times.items()}
    if lucid_cmd:
        series["lucid (start-up taken off)"] = (n - 1, [max(t - s, 1e-9) for t, s in zip(times["lucid"], startup)])
        if len(in_process) == len(times["lucid"]):
            series["lucid (in process)"] = (n, in_process)
    rows = {name: k / statistics.median(ts) for name, (k, ts) in series.items()}
    others = {k: v for k, v in rows.items() if not k.startswith("lucid")}
    best = max(others, key=others.get) if others else None

    print()
    print("| engine | sentences/s (median) | best round | rounds (s) | lucid / it |")
    print("|---|---:|---:|---|---:|")
    for name, sps in rows.items():
        k, ts = series[name]
        ratio = ""
        if best and name.startswith("lucid"):
            ratio = f"{sps / others[best]:.2f} (vs {best})"
        print(f"| {name} | {sps:.1f} | {k / min(ts):.1f} | {', '.join(f'{t:.3f}' for t in ts)} | {ratio} |")
    for name, w in workers.items():
        print(f"{name}: {w.version}; load + warm-up {w.load_s:.1f} s" + (f"; {notes[name]}" if name in notes else ""))
    if "lucid" in notes:
        print(f"lucid: {notes['lucid']}")
    if lucid_cmd:
        print(f"lucid: start-up on one sentence, median {statistics.median(startup):.3f} s")
    load_after = os.getloadavg()
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "sentences": n, "threads": args.threads, "rounds": args.rounds,
            "sentences_per_s": rows, "times_s": {k: ts for k, (_, ts) in series.items()}, "lucid_startup_s": startup,
            "versions": {k: w.version for k, w in workers.items()}, "notes": notes,
            "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
