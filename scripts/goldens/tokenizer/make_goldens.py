#!/usr/bin/env python3
"""Writes the tokenizer goldens: llama.cpp's token ids for every text in
tests/goldens/tokenizer/corpus.json, for the two test models and for variants of
their metadata that exercise more of the tokenizer (other BPE pre-tokenizers on
SmolLM2's vocabulary, SentencePiece's add_space_prefix on Gemma 3's).

Made with llama.cpp as vendored by llama-cpp-python 0.3.36: llama-tokenize
`version: 0.5.0-dev (build 1, commit 0c1e570)`. The version that ran is written
into each golden file as well.

Usage (CI never runs this; the goldens are committed):

    scripts/fetch-test-models.sh
    python3 scripts/goldens/tokenizer/make_goldens.py

Environment (optional):
  LLAMA_TOKENIZE   path of llama-tokenize.
                   default: /work/cache/ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-tokenize
  LUCID_MODEL_DIR  directory with the GGUF files. default: <repo>/.cache/models

The metadata variants are written with the `gguf` Python package (made with
gguf 0.19.0: `pip install gguf==0.19.0`); run this script with a Python that has it.

Each golden file is
  {"generator": ..., "llama_cpp": ..., "model": FILE, "overrides": {KEY: VALUE},
   "items": [{"text": ..., "add_special": bool, "parse_special": bool, "ids": [...]}]}
where add_special is llama_tokenize's (BOS/EOS as the metadata says; llama-tokenize
without --no-bos) and parse_special is llama-tokenize without --no-parse-special.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GOLDEN_DIR = os.path.join(REPO, "tests", "goldens", "tokenizer")
LLAMA_TOKENIZE = os.environ.get(
    "LLAMA_TOKENIZE",
    "/work/cache/ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-tokenize",
)
MODEL_DIR = os.environ.get("LUCID_MODEL_DIR", os.path.join(REPO, ".cache", "models"))

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = "gemma-3-270m-q4_k_m.gguf"

# (add_special, parse_special)
BOTH_PARSE = [(True, True), (True, False)]
ALL_MODES = [(True, True), (True, False), (False, True)]

# Pre-tokenizers checked on SmolLM2's vocabulary and merges: one per regex family
# in llama.cpp's llm_tokenizer_bpe that lucid supports.
PRE_VARIANTS = [
    "default",
    "gpt-2",
    "llama-bpe",
    "dbrx",
    "qwen2",
    "falcon",
    "gpt-4o",
    "tekken",
    "poro-chat",
    "viking",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "seed-coder",
]

# (golden name, model file, metadata overrides, modes)
SETS = [
    ("smollm2", SMOLLM2, {}, BOTH_PARSE),
    ("gemma3", GEMMA3, {}, ALL_MODES),
    ("gemma3-space-prefix", GEMMA3, {"tokenizer.ggml.add_space_prefix": True}, BOTH_PARSE),
] + [
    (f"smollm2-pre-{pre}", SMOLLM2, {"tokenizer.ggml.pre": pre}, [(True, True)])
    for pre in PRE_VARIANTS
]


def llama_cpp_version():
    out = subprocess.run([LLAMA_TOKENIZE, "--version"], capture_output=True, text=True)
    lines = [l.strip() for l in (out.stdout + out.stderr).splitlines() if "version" in l.lower()]
    return lines[0] if lines else "unknown"


def write_variant(src, overrides, dst):
    """Copies the metadata of `src` (no tensors) to `dst`, with `overrides`."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch=arch)
    pending = dict(overrides)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = pending.pop(field.name, field.contents())
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
    for key, value in pending.items():
        vtype = gguf.GGUFValueType.BOOL if isinstance(value, bool) else gguf.GGUFValueType.STRING
        writer.add_key_value(key, value, vtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()


def tokenize(model, text, add_special, parse_special, tmpdir, n):
    path = os.path.join(tmpdir, f"prompt-{n}.txt")
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))
    cmd = [LLAMA_TOKENIZE, "-m", model, "-f", path, "--no-escape", "--ids", "--log-disable"]
    if not add_special:
        cmd.append("--no-bos")
    if not parse_special:
        cmd.append("--no-parse-special")
    out = subprocess.run(cmd, capture_output=True, check=True)
    lines = [l for l in out.stdout.decode().splitlines() if l.strip()]
    return json.loads(lines[-1])


def main():
    for f in (SMOLLM2, GEMMA3):
        if not os.path.exists(os.path.join(MODEL_DIR, f)):
            sys.exit(f"{f} is missing from {MODEL_DIR}: run scripts/fetch-test-models.sh")
    with open(os.path.join(GOLDEN_DIR, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    version = llama_cpp_version()
    print(f"llama-tokenize: {version}", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmpdir:
        for name, model_file, overrides, modes in SETS:
            model = os.path.join(MODEL_DIR, model_file)
            if overrides:
                variant = os.path.join(tmpdir, f"{name}.gguf")
                write_variant(model, overrides, variant)
                model = variant
            jobs = [(text, a, p) for (a, p) in modes for text in corpus]
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                results = list(
                    pool.map(
                        lambda j: tokenize(model, j[1][0], j[1][1], j[1][2], tmpdir, f"{name}-{j[0]}"),
                        enumerate(jobs),
                    )
                )
            items = [
                {"text": text, "add_special": a, "parse_special": p, "ids": ids}
                for (text, a, p), ids in zip(jobs, results)
            ]
            golden = {
                "generator": "scripts/goldens/tokenizer/make_goldens.py",
                "llama_cpp": version,
                "model": model_file,
                "overrides": overrides,
            }
            out_path = os.path.join(GOLDEN_DIR, f"{name}.json")
            with open(out_path, "w", encoding="utf-8") as f:
                # One item per line keeps diffs readable.
                head = json.dumps(golden, ensure_ascii=False)[:-1]
                f.write(head + ', "items": [\n')
                f.write(",\n".join(json.dumps(i, ensure_ascii=False) for i in items))
                f.write("\n]}\n")
            print(f"{out_path}: {len(items)} items", file=sys.stderr)


if __name__ == "__main__":
    main()
