#!/usr/bin/env python3
"""Prints what the reference reader (the `gguf` package from llama.cpp's
gguf-py) sees in a GGUF file, in the text format that
crates/gguf/tests/real_models.rs prints for lucid's reader, so the two can be
compared line by line.

Regenerate the golden files from the repository root (needs `pip install gguf`):

    for m in SmolLM2-135M-Instruct.Q4_1 gemma-3-270m-q4_k_m; do
        python3 crates/gguf/tests/golden/dump_gguf.py .cache/models/$m.gguf \
            > crates/gguf/tests/golden/$m.txt
    done

Format, one item a line:
    version / alignment / data_offset / tensor_count / kv_count N
    kv KEY TYPE VALUE       integers in decimal, floats as their bit pattern in
                            hex, short printable strings quoted, longer strings
                            and all arrays as `len=N fnv=HASH`
    tensor NAME TYPE [ne0, ne1, ...] offset=ABSOLUTE n_bytes=N head=HEX
                            (head: the first 8 bytes of the data)
FNV is FNV-1a 64 over each element in turn: a string as its u64
little-endian length then its UTF-8 bytes, a number as its little-endian
bytes, a bool as one byte.
"""
import sys
from importlib.metadata import version

from gguf import GGUFReader, GGUFValueType

TYPE_NAMES = {
    GGUFValueType.UINT8: "u8",
    GGUFValueType.INT8: "i8",
    GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16",
    GGUFValueType.UINT32: "u32",
    GGUFValueType.INT32: "i32",
    GGUFValueType.UINT64: "u64",
    GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT32: "f32",
    GGUFValueType.FLOAT64: "f64",
    GGUFValueType.BOOL: "bool",
    GGUFValueType.STRING: "string",
}


def fnv1a64(chunks):
    h = 0xCBF29CE484222325
    for chunk in chunks:
        for b in chunk:
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def string_encoding(b):
    return len(b).to_bytes(8, "little") + b


def show_string(b):
    s = b.decode("utf-8")
    if len(s) <= 80 and all(0x20 <= ord(c) < 0x7F for c in s) and '"' not in s and "\\" not in s:
        return f'"{s}"'
    return f"len={len(b)} fnv={fnv1a64([string_encoding(b)])}"


def show_scalar(vtype, part):
    if vtype == GGUFValueType.STRING:
        return show_string(bytes(part))
    if vtype == GGUFValueType.BOOL:
        return "true" if bool(part[0]) else "false"
    if vtype == GGUFValueType.FLOAT32:
        return f"0x{int.from_bytes(part.tobytes(), 'little'):08x}"
    if vtype == GGUFValueType.FLOAT64:
        return f"0x{int.from_bytes(part.tobytes(), 'little'):016x}"
    return str(int(part[0]))


def main(path):
    r = GGUFReader(path)
    print(f"# {path.rsplit('/', 1)[-1]} as read by gguf-py {version('gguf')}")
    fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    print(f"version {int(r.fields['GGUF.version'].parts[-1][0])}")
    print(f"alignment {r.alignment}")
    print(f"data_offset {r.data_offset}")
    print(f"tensor_count {len(r.tensors)}")
    print(f"kv_count {len(fields)}")
    for key, f in fields.items():
        vtype = f.types[0]
        if vtype == GGUFValueType.ARRAY:
            etype = f.types[1]
            parts = [f.parts[i] for i in f.data]
            if etype == GGUFValueType.STRING:
                chunks = [string_encoding(bytes(p)) for p in parts]
            else:
                chunks = [p.tobytes() for p in parts]
            print(f"kv {key} array of {TYPE_NAMES[etype]} len={len(parts)} fnv={fnv1a64(chunks)}")
        else:
            print(f"kv {key} {TYPE_NAMES[vtype]} {show_scalar(vtype, f.parts[f.data[0]])}")
    for t in r.tensors:
        shape = ", ".join(str(int(d)) for d in t.shape)
        head = bytes(r.data[t.data_offset : t.data_offset + min(8, t.n_bytes)]).hex()
        print(
            f"tensor {t.name} {t.tensor_type.name} [{shape}] "
            f"offset={t.data_offset} n_bytes={t.n_bytes} head={head}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
