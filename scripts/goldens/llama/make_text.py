#!/usr/bin/env python3
"""Rebuilds tests/data/alice-ch1-2.txt, the perplexity text (see tests/data/README.md).

Source: "Alice's Adventures in Wonderland" by Lewis Carroll (1865, public domain), the Project Gutenberg
"Millennium Fulcrum Edition 2.9" as shipped in the Canterbury corpus file alice29.txt, taken from the
Brotli 1.1.0 source distribution on PyPI (Brotli-1.1.0/tests/testdata/alice29.txt).

Transformation: CRLF -> LF, leading blank lines removed, keep the title, Chapter I and Chapter II up to the
end of the paragraph "... Don't let me hear the name again!'" (21,653 characters), one final newline.

Usage: python3 scripts/goldens/llama/make_text.py [--sdist PATH/Brotli-1.1.0.tar.gz]
Without --sdist it runs `python3 -m pip download --no-deps --no-binary :all: Brotli==1.1.0` (PyPI only)
into a temporary directory. Checks the sha256 of the source file and of the result.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = os.path.join(REPO, "tests", "data", "alice-ch1-2.txt")
MEMBER = "Brotli-1.1.0/tests/testdata/alice29.txt"
SRC_SHA = "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
N_CHARS = 21653
END = "Don't let me hear\nthe name again!'"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist
        if not sdist:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, "Brotli==1.1.0"], check=True)
            sdist = os.path.join(tmp, "Brotli-1.1.0.tar.gz")
        with tarfile.open(sdist) as tf:
            raw = tf.extractfile(MEMBER).read()
    got = hashlib.sha256(raw).hexdigest()
    if got != SRC_SHA:
        raise SystemExit(f"{MEMBER}: sha256 {got} != {SRC_SHA}")
    text = raw.decode("ascii").replace("\r\n", "\n").lstrip("\n")[:N_CHARS]
    assert text.endswith(END), text[-80:]
    data = (text + "\n").encode("ascii")
    with open(OUT, "wb") as f:
        f.write(data)
    print(f"wrote {OUT}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
