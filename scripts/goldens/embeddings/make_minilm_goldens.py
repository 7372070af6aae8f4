#!/usr/bin/env python3
"""Writes the sentence-embedding goldens for all-MiniLM-L6-v2:
tests/goldens/embeddings/minilm.json and minilm.f32.

The texts (about 300) are written and generated here, deterministically: short
and long sentences, questions, code, numbers, punctuation, accents (both
precomposed and combining), Chinese, Japanese, Korean, Greek, Cyrillic, Arabic,
Hebrew, Hindi, emoji, mixed case, whitespace oddities (tabs, double spaces,
leading and trailing spaces, newlines, no-break and zero-width spaces), control
characters, the empty string, a word longer than WordPiece's 100-character
limit, and texts longer than the model's max_seq_length (256 tokens), some of
them longer than 512 wordpieces.

For each text the golden records
  st_ids     the input_ids sentence-transformers feeds the model: its
             Transformer module's preprocess() on that text alone (so no
             padding), after its truncation at max_seq_length (256), i.e.
             [CLS] ... [SEP];
  truncated  whether that truncation dropped tokens;
  raw_ids    the ids of `tokenizers.Tokenizer.from_file(tokenizer.json)` with
             `no_padding()` and `no_truncation()` (tokenizer.json itself asks
             for padding and truncation at 128), special tokens added, i.e.
             [CLS] ... [SEP] over the whole text;
and, in minilm.f32, the embedding: exactly what
`SentenceTransformer(dir).encode(texts)` returns with its default settings
(batch_size 32, normalize_embeddings=False, float32). The checkpoint's own
modules.json ends in a Normalize module, so these are unit vectors already.
minilm.f32 is little-endian float32, row-major [len(items), 384], item i in
row i (the JSON would be about 1.8 MB with the vectors inline). The JSON also
carries `cos_sim`: util.cos_sim of the embeddings of a few pairs of items.

The model file's sha256 and the versions of torch, transformers,
sentence-transformers, tokenizers and numpy are written into the JSON.

Usage (CI never runs this; the goldens are committed):

    python3 -m venv .cache/fixtures-venv
    .cache/fixtures-venv/bin/pip install torch transformers sentence-transformers tokenizers safetensors numpy
    scripts/fetch-test-models.sh     # or any copy of the sentence-transformers checkpoint
    .cache/fixtures-venv/bin/python scripts/goldens/embeddings/make_minilm_goldens.py \\
        [.cache/models/all-MiniLM-L6-v2] [--out tests/goldens/embeddings]

The model directory is the sentence-transformers checkpoint
(sentence-transformers/all-MiniLM-L6-v2: config.json, model.safetensors,
tokenizer.json, modules.json, 1_Pooling/config.json, sentence_bert_config.json).
Nothing is downloaded (HF_HUB_OFFLINE is set). The texts and ids are exact; the
embeddings depend slightly on the torch build and thread count (they are
computed with 2 threads, in batches padded as encode pads them), so compare
them with a tolerance (they agree with a one-at-a-time run to about 1e-6).
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[3]
DEFAULT_MODEL = REPO / ".cache" / "models" / "all-MiniLM-L6-v2"
DEFAULT_OUT = REPO / "tests" / "goldens" / "embeddings"

# --- The texts -------------------------------------------------------------

HANDWRITTEN = [
    # Plain sentences, short and not so short.
    "Hello world",
    "The cat sat on the mat.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "The new movie is so great.",
    "A man is playing a guitar.",
    "A woman is watching TV.",
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "I love pasta.",
    "Do you like pizza?",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "How do I reset my password?",
    "Why is the sky blue?",
    "Rayleigh scattering makes short wavelengths of sunlight scatter more than long ones.",
    "Who wrote Pride and Prejudice?",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
    "Where can I buy a train ticket to Edinburgh???",
    "when does the library open on sundays",
    "Embeddings map text to vectors so that similar meanings land close together.",
    "Cosine similarity is the dot product of two vectors divided by the product of their norms.",
    "x",
    "I",
    "a",
    "OK",
    ".",
    "?!",
    "...",
    # Case.
    "HELLO WORLD",
    "hello world",
    "hElLo WoRlD",
    "The QUICK brown Fox JUMPS over the lazy DOG.",
    "iPhone, eBay, McDonald's and YouTube are brand names.",
    "NASA's JWST observed GN-z11 in 2023.",
    # Numbers.
    "3.14159265358979323846",
    "The meeting is at 10:30 am on 2024-03-15.",
    "Call me at +1 (555) 123-4567 or 555.987.6543.",
    "It costs $1,299.99 (about €1.200,50 or £1,050).",
    "1 2 3 4 5 6 7 8 9 10",
    "1234567890123456789012345678901234567890",
    "The answer is 42, not 41 or 43.",
    "Temperatures ranged from -40°C to +50°C.",
    "Version 2.0.1-beta.3+build.456 was released.",
    "0x7fffffff == 2147483647",
    "1e-12 < 3.5E+8",
    "50% off, 100% cotton, 0.5‰ alcohol",
    # Punctuation.
    "Wait... what?!",
    "\"Quoted,\" she said, 'and single-quoted.'",
    "“Curly quotes” and ‘single curly’ and «guillemets» and „low quotes“",
    "em—dash, en–dash, hyphen-minus, non‑breaking‑hyphen",
    "(parentheses) [brackets] {braces} <angles>",
    "email: someone@example.com, url: https://example.com/path?q=1&r=2#frag",
    "#hashtag @mention $CASHTAG ~tilde ^caret |pipe \\backslash /slash",
    "!!!???...,,,;;;:::",
    "a.b.c.d.e.f.g",
    "don't won't can't shouldn't y'all'd've",
    "Mr. Smith went to Washington, D.C., on Jan. 3rd.",
    "* bullet one\n* bullet two\n- dash three",
    "Ünïcödé ∂ιαкρïτιcs ⊕ ∑ ∫ √ ∞ ≈ ≠ ≤ ≥",
    "→ ← ↑ ↓ ⇒ ⇔ • · … ™ © ® § ¶ † ‡",
    # Code.
    "def add(a, b):\n    return a + b",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "fn main() { println!(\"Hello, {}!\", name); }",
    "const f = (x) => x ?? 0;",
    "<div class=\"note\">Hello &amp; welcome</div>",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "git commit -m 'fix: handle empty input' && git push origin main",
    "import numpy as np; np.linalg.norm(v, ord=2)",
    "$ cargo test --release -- --nocapture",
    "snake_case_identifier camelCaseIdentifier PascalCaseIdentifier SCREAMING_CASE",
    "std::vector<std::pair<int, float>> v;",
    "#include <stdio.h>\nint main(void) { return 0; }",
    # Accents and diacritics (precomposed).
    "café",
    "naïve",
    "The café served a naïve crème brûlée to the fiancée.",
    "Zürich, São Paulo, Kraków, Reykjavík, Málaga, Ørsted, Łódź",
    "Ça va? Très bien, merci. À bientôt!",
    "Der Bär aß große Äpfel über der Brücke.",
    "El niño comió piñata en el año pasado.",
    "Dvořák, Smetana, Janáček",
    "ﬁnancial ﬂow (ligatures)",
    # Accents as combining characters (NFD).
    "cafe\u0301",
    "nai\u0308ve",
    "Zu\u0308rich and Sa\u0303o Paulo",
    # Other scripts.
    "我爱自然语言处理。",
    "今天天气很好，我们去公园散步吧。",
    "机器学习是人工智能的一个分支。",
    "東京は日本の首都です。",
    "こんにちは、世界！",
    "ひらがなとカタカナと漢字を混ぜた文章です。",
    "안녕하세요, 세계!",
    "Καλημέρα κόσμε! Η γλώσσα είναι ελληνική.",
    "ΑΒΓΔ αβγδ ΣΊΣΥΦΟΣ σίσυφος",
    "Привет, мир! Как дела?",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "اللغة العربية جميلة جداً.",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Mixed: English, 中文, 日本語, Ελληνικά, العربية and русский in one line.",
    # Emoji and symbols.
    "😀",
    "I love it ❤️🔥👍",
    "Family: 👨‍👩‍👧‍👦, flag: 🇫🇷, skin tone: 👋🏽",
    "The rocket 🚀 launched at 🕙 and landed 🌕.",
    "☕ + 🥐 = 😊",
    # Whitespace oddities.
    "",
    " ",
    "   ",
    "\t",
    "\n",
    " \t\n \r\n ",
    "  leading spaces",
    "trailing spaces   ",
    "   both sides   ",
    "double  spaces  between  words",
    "tabs\tbetween\twords",
    "new\nlines\nbetween\nwords",
    "windows\r\nline\r\nendings",
    "mixed \t \n whitespace\t\t\tkinds",
    "no\u00a0break\u00a0spaces",
    "zero\u200bwidth\u200bspaces",
    "\ufeffbyte order mark at the start",
    "ideographic\u3000space",
    "thin\u2009space and em\u2003space",
    # Control characters and other oddities.
    "control\x00chars\x01in\x07the\x1ftext",
    "soft\u00adhyphen",
    "right-to-left \u202emark\u202c here",
    "replacement char \ufffd here",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "antidisestablishmentarianism and floccinaucinihilipilification",
    "a" * 101,
    "b" * 100,
    "word " + "x" * 150 + " word",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbb",
    "[CLS] [SEP] [PAD] [MASK] [UNK] are special tokens",
    "[unused0] and ##suffix and ## alone",
    "<s> </s> <|endoftext|> <pad>",
    "http://a.b/c_d-e.f?g=h%20i",
    "C:\\Users\\someone\\Documents\\file.txt",
    "😀😀😀😀😀😀😀😀😀😀",
    "ǅungla ǈudi ǋ Ǳ ǲ ǳ (title-case digraphs)",
    "İstanbul ıi Iİ ẞ ß ς σ Σ",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "①②③ ⅰⅱⅲ ¹²³ ½ ¾",
]

SUBJECTS = [
    "the teacher", "a young programmer", "my neighbour", "the committee", "an old fisherman",
    "the robot", "our team", "a curious child", "the city council", "the orchestra",
    "a startup", "the doctor", "the river", "a small bird", "the algorithm",
]
VERBS = [
    "explained", "rejected", "painted", "measured", "ignored", "celebrated", "rebuilt",
    "translated", "predicted", "followed", "questioned", "repaired", "discovered", "sold",
]
OBJECTS = [
    "the old bridge", "a difficult proof", "the quarterly report", "seven red apples",
    "the broken window", "an ancient manuscript", "the neural network", "a new recipe",
    "the mountain trail", "every single email", "the jazz standard", "a tiny garden",
    "the election results", "a complicated tax form", "the night sky",
]
TAILS = [
    "", " yesterday", " in the rain", " before lunch", " with great care", " for the third time",
    " without telling anyone", " at 3 a.m.", " during the long winter of 1987",
    " because nobody else would", " while the cameras were rolling",
]
QUESTIONS = [
    "How do I {v} {o}?", "Why did {s} {v} {o}?", "Can {s} {v} {o} tomorrow?",
    "What happens when {s} {v}s {o}?", "Is it true that {s} {v} {o}?",
]
TOPICS = [
    "photosynthesis", "the French Revolution", "quantum computing", "sourdough bread",
    "plate tectonics", "the stock market", "machine translation", "the human heart",
    "medieval castles", "renewable energy", "jazz improvisation", "the immune system",
    "black holes", "coral reefs", "the printing press", "vaccines", "honey bees",
    "compilers", "the Silk Road", "glaciers",
]
FACTS = [
    "is studied by scientists around the world",
    "has changed a great deal over the last century",
    "can be explained with a simple diagram",
    "was first described hundreds of years ago",
    "depends on many interacting parts",
    "is often misunderstood by the public",
    "remains an active area of research",
    "has important economic consequences",
]
WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education foot boy age policy music market sense nation plan college interest death "
    "experience effect class control care field development role effort rate heart drug show "
    "leader light voice wife police mind price report decision son view relationship town road"
).split()
RARE = (
    "sesquipedalian defenestration lugubrious perspicacious obstreperous quixotic "
    "pusillanimous tergiversation callipygian borborygmus xerophthalmia zymurgy "
    "cacophonous ebullient flibbertigibbet hemidemisemiquaver onomatopoeia "
    "pharmacokinetics thermoluminescence electroencephalography otorhinolaryngology "
    "Tchaikovsky Schwarzenegger Wojciechowski Ouagadougou Llanfairpwllgwyngyll"
).split()


def generated(rng: random.Random) -> list[str]:
    out = []
    # Simple subject-verb-object sentences, some with odd case or spacing.
    for i in range(70):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."
        s = s[0].upper() + s[1:]
        if i % 10 == 3:
            s = s.upper()
        elif i % 10 == 7:
            s = s.lower()
        elif i % 10 == 5:
            s = s.replace(" ", "  ", 2)
        elif i % 10 == 9:
            s = " " + s + "\t"
        out.append(s)
    # Questions.
    for _ in range(30):
        q = rng.choice(QUESTIONS).format(
            s=rng.choice(SUBJECTS), v=rng.choice(VERBS).removesuffix("ed").removesuffix("d"),
            o=rng.choice(OBJECTS),
        )
        out.append(q[0].upper() + q[1:])
    # Two- or three-sentence paragraphs about a topic.
    for _ in range(40):
        topic = rng.choice(TOPICS)
        n = rng.randint(2, 3)
        facts = rng.sample(FACTS, n)
        text = " ".join(f"{topic[0].upper() + topic[1:]} {f}." for f in facts)
        out.append(text)
    # Word salads of 3 to 60 words with the odd number or rare word.
    for _ in range(40):
        n = rng.randint(3, 60)
        words = []
        for _ in range(n):
            r = rng.random()
            if r < 0.08:
                words.append(str(rng.randint(0, 10**rng.randint(1, 7))))
            elif r < 0.13:
                words.append(rng.choice(RARE))
            else:
                words.append(rng.choice(WORDS))
        out.append(" ".join(words))
    return out


def long_texts(rng: random.Random) -> list[str]:
    """Texts longer than 256 tokens; the last few longer than 512 wordpieces."""
    out = []
    # Just over the limit: prose of common words, 270 to 400 words.
    for n in (270, 300, 400):
        sents = []
        while sum(len(s.split()) for s in sents) < n:
            sents.append(
                f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."
                .capitalize()
            )
        out.append(" ".join(sents))
    # A long multi-line document with a code block and a list.
    lines = []
    for i in range(40):
        lines.append(f"{i + 1}. {rng.choice(TOPICS).capitalize()} {rng.choice(FACTS)}.")
        if i % 10 == 4:
            lines.append("    fn step(x: f32) -> f32 { x.max(0.0) * 0.5 }")
    out.append("\n".join(lines))
    # Many wordpieces per word: rare words and long numbers (well over 512 pieces).
    out.append(" ".join(rng.choice(RARE) for _ in range(200)))
    out.append(" ".join(f"{rng.randint(10**5, 10**9)}.{rng.randint(0, 9999):04d}" for _ in range(150)))
    # One token per character: 600 CJK characters.
    han = "人工智能机器学习自然语言处理深度神经网络模型训练数据向量检索"
    out.append("".join(rng.choice(han) for _ in range(600)))
    # Mixed scripts and emoji, long.
    pieces = ["café", "naïve", "Ελληνικά", "русский", "日本語", "😀", "العربية", "MixedCase", "123.45", "—"]
    out.append(" ".join(rng.choice(pieces) for _ in range(700)))
    # Plain prose, 1000 words.
    out.append(" ".join(rng.choice(WORDS) for _ in range(1000)))
    return out


def texts() -> list[str]:
    rng = random.Random(20240601)
    assert len(set(HANDWRITTEN)) == len(HANDWRITTEN), "duplicate handwritten texts"
    # dict.fromkeys: drops a generated text seen before, keeping the order.
    return list(dict.fromkeys(HANDWRITTEN + generated(rng) + long_texts(rng)))


# Pairs (by text) whose cosine similarity is recorded: close, related, unrelated.
COS_PAIRS = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("The new movie is awesome.", "The new movie is so great."),
    ("A man is playing a guitar.", "What is the capital of France?"),
    ("café", "cafe\u0301"),
]

# --- Output ----------------------------------------------------------------


def g7(x: float) -> float:
    return float(f"{x:.7g}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def st_input_ids(model, text: str) -> list[int]:
    """The ids sentence-transformers feeds the model for one text."""
    first = model[0]
    prep = getattr(first, "preprocess", None) or first.tokenize
    features = prep([text])
    ids = features["input_ids"][0].tolist()
    assert all(features["attention_mask"][0].tolist()), "padding on a single text"
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()

    import numpy as np
    import safetensors
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer, util

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    items = texts()
    model = SentenceTransformer(str(model_dir), device="cpu")
    max_len = model.max_seq_length
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")

    rows = []
    for i, text in enumerate(items):
        st_ids = st_input_ids(model, text)
        raw_ids = tok.encode(text).ids
        truncated = len(raw_ids) > len(st_ids)
        # The relation the Rust side relies on: sentence-transformers' ids are
        # the whole-text ids cut to max_seq_length with [SEP] put back.
        expect = raw_ids if len(raw_ids) <= max_len else raw_ids[: max_len - 1] + [sep]
        assert st_ids == expect, f"item {i}: sentence-transformers and tokenizers disagree"
        assert st_ids[0] == cls and st_ids[-1] == sep
        rows.append({"i": i, "text": text, "truncated": truncated, "st_ids": st_ids, "raw_ids": raw_ids})

    emb = model.encode(items)  # the defaults: batch_size 32, normalize_embeddings=False
    assert emb.dtype == np.float32 and emb.shape == (len(items), (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)())
    # Sanity: the same vectors one at a time (no padding in the batch).
    single = np.stack([model.encode([t])[0] for t in items[:: 25]])
    drift = float(np.abs(single - emb[:: 25]).max())
    assert drift < 1e-5, drift

    index = {t: i for i, t in enumerate(items)}
    cos = []
    for a, b in COS_PAIRS:
        ia, ib = index[a], index[b]
        v = util.cos_sim(torch.from_numpy(emb[ia : ia + 1]), torch.from_numpy(emb[ib : ib + 1]))
        cos.append({"a": ia, "b": ib, "cos_sim": g7(float(v[0, 0]))})

    emb.astype("<f4").tofile(out / "minilm.f32")
    header = {
        "generator": "scripts/goldens/embeddings/make_minilm_goldens.py",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_safetensors_sha256": sha256(model_dir / "model.safetensors"),
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "max_seq_length": max_len,
        "dim": int(emb.shape[1]),
        "embeddings": {
            "file": "minilm.f32",
            "layout": "little-endian float32, row-major [n_items, dim], row i = items[i]",
            "source": "SentenceTransformer(dir).encode(texts) with default settings "
            "(batch_size=32, normalize_embeddings=False); modules.json ends in Normalize, "
            "so the rows are unit vectors",
            "threads": args.threads,
            "max_abs_diff_batched_vs_single": drift,
        },
        "st_ids": "input_ids from the model's Transformer module (preprocess) for the text alone, "
        "truncated at max_seq_length: [CLS] ... [SEP]",
        "raw_ids": "tokenizers.Tokenizer.from_file(tokenizer.json) with no_padding() and "
        "no_truncation(), add_special_tokens=True",
        "cos_sim": cos,
        "n_items": len(rows),
    }
    with open(out / "minilm.json", "w", encoding="utf-8") as f:
        f.write("{\n")
        for k, v in header.items():
            f.write(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n")
        f.write(' "items": [\n')
        for j, r in enumerate(rows):
            f.write("  " + json.dumps(r, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if j + 1 < len(rows) else "\n")
        f.write(" ]\n}\n")

    n_trunc = sum(r["truncated"] for r in rows)
    n_512 = sum(len(r["raw_ids"]) > 512 for r in rows)
    print(
        f"{len(rows)} texts ({n_trunc} truncated at {max_len}, {n_512} over 512 pieces), "
        f"minilm.json {os.path.getsize(out / 'minilm.json') / 1024:.0f} KiB, "
        f"minilm.f32 {os.path.getsize(out / 'minilm.f32') / 1024:.0f} KiB, "
        f"batched vs single {drift:.2e}, {time.time() - t0:.0f} s"
    )
    for c in cos:
        print(f"cos_sim({c['a']}, {c['b']}) = {c['cos_sim']}")


if __name__ == "__main__":
    main()
