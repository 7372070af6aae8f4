#!/usr/bin/env python3
"""A random-weight GGUF of a real model's shape, for benchmarks.

Speed does not depend on the weights' values, so a file with the shapes of
Llama 3.2 1B measures what a user's real Llama 3.2 1B would get. This writes
the model in f16 with gguf-py (llama-architecture metadata, llama.cpp's
tensor names, a byte-level BPE vocabulary of the right size whose first 256
tokens are the bytes and the rest padding), then, for each type asked for,
`llama-quantize` turns it into that type.

    python scripts/bench/synthetic_model.py --shape llama3.2-1b \\
        --types Q4_K_M,IQ4_XS --llama-bin DIR --out .cache/synthetic

needs numpy and gguf (pip install gguf numpy). Files are written under
`--out` (default `.cache/synthetic`), never committed.
"""

import argparse
import subprocess
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType

SHAPES = {
    # hidden, layers, heads, kv heads, ffn, vocab, rope base, context
    "llama3.2-1b": (2048, 16, 32, 8, 8192, 128256, 500000.0, 131072),
    "llama3.2-3b": (3072, 28, 24, 8, 8192, 128256, 500000.0, 131072),
    "llama3.1-8b": (4096, 32, 32, 8, 14336, 128256, 500000.0, 131072),
}


def write_f16(path: Path, shape: str, seed: int = 0) -> None:
    d, n_layers, heads, kv, ff, vocab, base, ctx = SHAPES[shape]
    head_dim = d // heads
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    w.add_name(f"synthetic {shape}")
    w.add_context_length(ctx)
    w.add_embedding_length(d)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type(1)  # mostly f16
    # The 256 bytes as GPT-2's byte-level BPE writes them, then padding.
    byte_chars = [chr(c) for c in range(ord("!"), ord("~") + 1)] + [chr(c) for c in range(ord("¡"), ord("¬") + 1)] + [chr(c) for c in range(ord("®"), ord("ÿ") + 1)]
    table = {ord(c): c for c in byte_chars}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # One merge (" t"): GGUF readers need the merges key, and an empty list
    # is not written.
    tokens = [table[b] for b in range(256)] + [table[32] + "t"]
    tokens += [f"[PAD{i}]" for i in range(vocab - len(tokens))]
    types = [TokenType.NORMAL] * 257 + [TokenType.UNUSED] * (vocab - 257)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{table[32]} t"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_add_bos_token(False)

    def mat(rows, cols):
        # Small values, as trained weights have; f16 in llama.cpp's layout.
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def ones(n):
        return np.ones(n, dtype=np.float32)

    w.add_tensor("token_embd.weight", mat(vocab, d))
    for i in range(n_layers):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", ones(d))
        w.add_tensor(f"{p}.attn_q.weight", mat(heads * head_dim, d))
        w.add_tensor(f"{p}.attn_k.weight", mat(kv * head_dim, d))
        w.add_tensor(f"{p}.attn_v.weight", mat(kv * head_dim, d))
        w.add_tensor(f"{p}.attn_output.weight", mat(d, heads * head_dim))
        w.add_tensor(f"{p}.ffn_norm.weight", ones(d))
        w.add_tensor(f"{p}.ffn_gate.weight", mat(ff, d))
        w.add_tensor(f"{p}.ffn_up.weight", mat(ff, d))
        w.add_tensor(f"{p}.ffn_down.weight", mat(d, ff))
    w.add_tensor("output_norm.weight", ones(d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="llama3.2-1b", choices=sorted(SHAPES))
    ap.add_argument("--types", default="Q4_K_M", help="comma-separated llama-quantize types")
    ap.add_argument("--llama-bin", required=True, help="directory with llama-quantize")
    ap.add_argument("--out", default=".cache/synthetic")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f16 = out / f"{args.shape}-f16.gguf"
    if not f16.exists():
        write_f16(f16, args.shape)
    for t in args.types.split(","):
        target = out / f"{args.shape}-{t.lower()}.gguf"
        if not target.exists():
            subprocess.run([f"{args.llama_bin}/llama-quantize", str(f16), str(target), t, "2"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(target)


if __name__ == "__main__":
    main()
