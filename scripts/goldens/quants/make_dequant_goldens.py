#!/usr/bin/env python3
"""Writes the dequantization goldens: random blocks of every element type
lucid reads, with the float32 values gguf-py's `gguf.quants.dequantize` makes of
them, for crates/tensor/tests/dequant_goldens.rs, which checks that lucid's
`dequantize_row` gives the same values bit for bit.

gguf-py is llama.cpp's own Python package; its dequantization follows
ggml-quants.c operation for operation in float32, so agreeing with it to the
bit is agreeing with llama.cpp's.

Usage (CI never runs this; the goldens are committed):

    python3 -m venv /tmp/quants-venv
    /tmp/quants-venv/bin/pip install gguf==0.19.0 numpy
    /tmp/quants-venv/bin/python scripts/goldens/quants/make_dequant_goldens.py

The blocks are random bytes, except that every half-precision scale (and
minimum) is a finite value drawn log-uniformly between 2^-14 and 4 with a
random sign, and in the first block of each type one is subnormal and, where
a block has two, one is zero: no NaN or infinity ever enters. The float types
(F32, F16, BF16) get random finite bit patterns, subnormals and both zeros
included. The seed is fixed, so a rerun with the same packages writes the same
bytes.

Each `<TYPE>.bin` is, little-endian:
    b"LQDG", u32 format version (1), u32 ggml type id, u32 number of values,
    u32 number of bytes of the row, the row's bytes, then one f32 per value.
`manifest.json` records the packages that made them and each file's sha256.
"""

import hashlib
import importlib.metadata
import json
import os
import platform
import struct
import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT_DIR = os.path.join(REPO, "tests", "goldens", "quants")
SEED = 20250611
MAGIC = b"LQDG"
VERSION = 1

# The types lucid reads as weights, with the byte offsets of the
# half-precision scales (and minimums) inside one block. Q8_1 and Q8_K are
# lucid's activation formats and gguf-py cannot dequantize them.
QUANTIZED = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}
FLOATS = [T.F32, T.F16, T.BF16]
# Values of each float type, blocks of each quantized type.
FLOAT_VALUES = 256
BLOCKS_32 = 8
BLOCKS_256 = 4


def random_halves(rng, n):
    """Finite, moderate half-precision values: ±2^[-14, 2)."""
    mag = np.exp2(rng.uniform(-14.0, 2.0, n))
    sign = np.where(rng.integers(0, 2, n) == 1, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def quantized_row(rng, qtype, offsets):
    block_len, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = BLOCKS_32 if block_len == 32 else BLOCKS_256
    blocks = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    for b in range(n_blocks):
        halves = random_halves(rng, len(offsets))
        if b == 0:
            # A subnormal scale, and a zero one where there are two.
            halves[0] = np.uint16(rng.integers(1, 0x400)).view(np.float16) * (
                -1 if rng.integers(0, 2) else 1
            )
            if len(offsets) > 1:
                halves[1] = np.float16(0.0)
        for o, h in zip(offsets, halves):
            blocks[b, o : o + 2] = np.frombuffer(h.tobytes(), dtype=np.uint8)
    return blocks.reshape(-1)


def float_row(rng, qtype):
    """Random finite bit patterns of the float type."""
    if qtype == T.F32:
        bits = rng.integers(0, 2**32, FLOAT_VALUES, dtype=np.uint64).astype(np.uint32)
        exp_all_ones = (bits & 0x7F800000) == 0x7F800000
        bits[exp_all_ones] &= ~np.uint32(0x40000000)
        # Both zeros and a subnormal.
        bits[:3] = [0x00000000, 0x80000000, 0x00000001]
    else:
        exp_mask = 0x7C00 if qtype == T.F16 else 0x7F80
        bits = rng.integers(0, 2**16, FLOAT_VALUES, dtype=np.uint32).astype(np.uint16)
        exp_all_ones = (bits & exp_mask) == exp_mask
        # Clearing the exponent's top bit leaves a finite value.
        top = np.uint16(0x4000)
        bits[exp_all_ones] &= ~top
        bits[:3] = [0x0000, 0x8000, 0x0001]
    return bits.view(np.uint8).copy()


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)
    files = []
    for qtype in FLOATS + list(QUANTIZED):
        if qtype in QUANTIZED:
            row = quantized_row(rng, qtype, QUANTIZED[qtype])
        else:
            row = float_row(rng, qtype)
        values = quants.dequantize(row, qtype).astype(np.float32, copy=False).reshape(-1)
        if not np.all(np.isfinite(values)):
            sys.exit(f"{qtype.name}: gguf-py made a value that is not finite")
        body = (
            MAGIC
            + struct.pack("<IIII", VERSION, int(qtype), values.size, row.size)
            + row.tobytes()
            + values.astype("<f4").tobytes()
        )
        name = f"{qtype.name}.bin"
        with open(os.path.join(OUT_DIR, name), "wb") as f:
            f.write(body)
        files.append(
            {
                "file": name,
                "type": qtype.name,
                "ggml_id": int(qtype),
                "values": int(values.size),
                "row_bytes": int(row.size),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )
        print(f"{name}: {values.size} values from {row.size} bytes")
    manifest = {
        "generator": "scripts/goldens/quants/make_dequant_goldens.py",
        "reference": "gguf.quants.dequantize",
        "gguf": importlib.metadata.version("gguf"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "seed": SEED,
        "format": "b'LQDG', u32 version, u32 ggml type id, u32 values, u32 row bytes, row, f32 values (little-endian)",
        "files": files,
    }
    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
