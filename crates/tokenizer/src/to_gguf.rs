//! A Hugging Face checkpoint's byte-level BPE tokenizer restated as GGUF's
//! `tokenizer.ggml.*` keys, as llama.cpp's converter writes them: how lucid
//! runs a checkpoint whose tokenizer `tokenizers` does not need to run (GPT-2
//! style `vocab.json` and `merges.txt`), and what `lucid quantize` writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lucid_gguf::{Array, Metadata, Value};
use serde_json::Value as Json;

use crate::error::TokenizerError;
use crate::vocab::gguf_type;

type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// BOS and EOS ids from a model's own configuration (`config.json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelIds {
    pub bos: Option<u64>,
    pub eos: Option<u64>,
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| open_error(path, &e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| open_error(path, &format!("invalid JSON: {e}")))
}

fn open_error(path: &Path, message: &str) -> TokenizerError {
    TokenizerError::HfFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// GGUF's `tokenizer.ggml.*` keys for a checkpoint's byte-level BPE
/// tokenizer, as llama.cpp's converter writes them: tokens by id (padded
/// with `[PAD{i}]` up to `n_vocab`, the rows of the embedding, when given),
/// their types (added special tokens are control tokens, other added tokens
/// user-defined), merges, BOS/EOS and whether to add BOS.
///
/// The tokenizer is `tokenizer.json`, or `vocab.json` and `merges.txt`. Its
/// pre-tokenizer must be GPT-2's (a `ByteLevel` step with its regex), the
/// one `tokenizer.ggml.pre = gpt-2` names; anything else is an error rather
/// than a file that would tokenize differently.
///
/// `dir` is the checkpoint directory; `model_ids` the BOS and EOS ids its
/// `config.json` gives, used when the tokenizer's files name none.
pub fn metadata(dir: &Path, n_vocab: Option<usize>, model_ids: ModelIds) -> Result<Metadata> {
    let specials = SpecialTokens::read(dir)?;
    let json_path = dir.join("tokenizer.json");
    if json_path.is_file() {
        let json = read_json(&json_path)?;
        if json.pointer("/model/type").and_then(Json::as_str) == Some("WordPiece") {
            return wordpiece_metadata(&json_path, &json, n_vocab);
        }
    }
    let bpe = if json_path.is_file() {
        BpeVocab::from_tokenizer_json(&json_path)?
    } else {
        BpeVocab::from_vocab_files(dir, &specials)?
    };
    let n_vocab = n_vocab.unwrap_or(bpe.tokens.len());
    if bpe.tokens.len() > n_vocab {
        return Err(open_error(
            &bpe.source,
            &format!(
                "has {} tokens but the model only {n_vocab} embeddings",
                bpe.tokens.len()
            ),
        ));
    }
    // Ids the tokenizer leaves out, and the embedding rows past its last
    // token, become unused padding tokens, as llama.cpp's converter makes them.
    let mut texts = Vec::with_capacity(n_vocab);
    let mut kinds = Vec::with_capacity(n_vocab);
    for i in 0..n_vocab {
        match bpe.tokens.get(i).cloned().flatten() {
            Some(t) => {
                texts.push(t);
                kinds.push(bpe.types[i]);
            }
            None => {
                texts.push(format!("[PAD{i}]"));
                kinds.push(gguf_type::UNUSED);
            }
        }
    }
    let by_text: HashMap<&str, usize> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let id_of = |key: &str| {
        specials
            .text(key)
            .and_then(|t| by_text.get(t.as_str()).copied())
    };
    let config_id = |id: Option<u64>| {
        id.and_then(|id| usize::try_from(id).ok())
            .filter(|&id| id < n_vocab)
    };
    let ids = [
        (
            "tokenizer.ggml.bos_token_id",
            id_of("bos_token").or_else(|| config_id(model_ids.bos)),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            id_of("eos_token").or_else(|| config_id(model_ids.eos)),
        ),
        ("tokenizer.ggml.unknown_token_id", id_of("unk_token")),
        ("tokenizer.ggml.padding_token_id", id_of("pad_token")),
    ];

    let mut meta = Metadata::new();
    meta.insert("tokenizer.ggml.model", Value::String("gpt2".into()));
    meta.insert("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    meta.insert("tokenizer.ggml.tokens", Value::from(texts.clone()));
    meta.insert("tokenizer.ggml.token_type", Value::Array(Array::I32(kinds)));
    meta.insert("tokenizer.ggml.merges", Value::from(bpe.merges));
    for (key, id) in ids {
        if let Some(id) = id.and_then(|i| u32::try_from(i).ok()) {
            meta.insert(key, Value::U32(id));
        }
    }
    let add_bos = specials.flag("add_bos_token").unwrap_or(false);
    meta.insert("tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
    if let Some(add_eos) = specials.flag("add_eos_token") {
        meta.insert("tokenizer.ggml.add_eos_token", Value::Bool(add_eos));
    }
    if let Some(t) = specials.config.get("chat_template").and_then(Json::as_str) {
        meta.insert("tokenizer.chat_template", Value::String(t.to_string()));
    }
    Ok(meta)
}

/// A BERT WordPiece `tokenizer.json` as llama.cpp's converter writes it
/// (`tokenizer.ggml.model = bert`): a word's first piece gets a `▁` in
/// front, a continuation piece loses its `##`, `[…]` tokens stay as they
/// are; added special tokens are control tokens; CLS, SEP, UNK, PAD and MASK
/// by their ids. llama.cpp's WordPiece tokenizer always lowercases, so a
/// cased vocabulary is refused rather than written to tokenize differently.
fn wordpiece_metadata(path: &Path, json: &Json, n_vocab: Option<usize>) -> Result<Metadata> {
    if json
        .pointer("/normalizer/lowercase")
        .and_then(Json::as_bool)
        == Some(false)
    {
        return Err(open_error(
            path,
            "a cased WordPiece vocabulary (normalizer.lowercase = false) cannot be \
             written as GGUF: llama.cpp's WordPiece tokenizer lowercases",
        ));
    }
    let vocab = json
        .pointer("/model/vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| open_error(path, "model.vocab is not an object"))?;
    let mut by_id: Vec<Option<String>> = Vec::new();
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < 1 << 24)
            .ok_or_else(|| open_error(path, &format!("token {text:?} has a bad id")))?;
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some(text.clone());
    }
    let mut special = vec![false; by_id.len()];
    for added in json
        .get("added_tokens")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let id = added.get("id").and_then(Json::as_u64).map(|i| i as usize);
        let is_special = added.get("special").and_then(Json::as_bool) == Some(true);
        if let (Some(id), true) = (id, is_special)
            && id < special.len()
        {
            special[id] = true;
        }
    }
    let n = n_vocab.unwrap_or(by_id.len()).max(by_id.len());
    let mut texts = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    for i in 0..n {
        match by_id.get(i).cloned().flatten() {
            Some(t) => {
                let phantom = if t.starts_with('[') && t.ends_with(']') {
                    t
                } else if let Some(rest) = t.strip_prefix("##") {
                    rest.to_owned()
                } else {
                    format!("\u{2581}{t}")
                };
                texts.push(phantom);
                kinds.push(if special.get(i) == Some(&true) {
                    gguf_type::CONTROL
                } else {
                    gguf_type::NORMAL
                });
            }
            None => {
                texts.push(format!("[PAD{i}]"));
                kinds.push(gguf_type::UNUSED);
            }
        }
    }
    let id_of = |text: &str| by_id.iter().position(|t| t.as_deref() == Some(text));
    let mut meta = Metadata::new();
    meta.insert("tokenizer.ggml.model", Value::String("bert".into()));
    meta.insert("tokenizer.ggml.tokens", Value::from(texts));
    meta.insert("tokenizer.ggml.token_type", Value::Array(Array::I32(kinds)));
    for (key, text) in [
        ("tokenizer.ggml.cls_token_id", "[CLS]"),
        ("tokenizer.ggml.seperator_token_id", "[SEP]"),
        ("tokenizer.ggml.unknown_token_id", "[UNK]"),
        ("tokenizer.ggml.padding_token_id", "[PAD]"),
        ("tokenizer.ggml.mask_token_id", "[MASK]"),
    ] {
        if let Some(id) = id_of(text).and_then(|i| u32::try_from(i).ok()) {
            meta.insert(key, Value::U32(id));
        }
    }
    meta.insert("tokenizer.ggml.add_bos_token", Value::Bool(true));
    meta.insert("tokenizer.ggml.add_eos_token", Value::Bool(true));
    Ok(meta)
}

/// `tokenizer_config.json`, with `special_tokens_map.json` (older uploads)
/// for the special tokens it does not name.
struct SpecialTokens {
    config: Json,
    map: Json,
}

impl SpecialTokens {
    fn read(dir: &Path) -> Result<SpecialTokens> {
        let read = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                read_json(&p)
            } else {
                Ok(Json::Null)
            }
        };
        Ok(SpecialTokens {
            config: read("tokenizer_config.json")?,
            map: read("special_tokens_map.json")?,
        })
    }

    /// The text of `bos_token`, `eos_token`, ...: a string or an added-token
    /// object with `content`.
    fn text(&self, key: &str) -> Option<String> {
        [&self.config, &self.map]
            .into_iter()
            .find_map(|j| match j.get(key)? {
                Json::String(s) => Some(s.clone()),
                obj => obj.get("content")?.as_str().map(str::to_string),
            })
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.config.get(key).and_then(Json::as_bool)
    }
}

/// A byte-level BPE vocabulary: tokens by id with llama.cpp's token types,
/// and merges as `"a b"`.
struct BpeVocab {
    source: PathBuf,
    tokens: Vec<Option<String>>,
    types: Vec<i32>,
    merges: Vec<String>,
}

impl BpeVocab {
    fn empty(source: &Path) -> BpeVocab {
        BpeVocab {
            source: source.to_path_buf(),
            tokens: Vec::new(),
            types: Vec::new(),
            merges: Vec::new(),
        }
    }

    fn place(&mut self, id: Option<u64>, text: &str, ty: i32) -> Result<()> {
        let id = id
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < 1 << 24)
            .ok_or_else(|| open_error(&self.source, &format!("token {text:?} has a bad id")))?;
        if self.tokens.len() <= id {
            self.tokens.resize(id + 1, None);
            self.types.resize(id + 1, 0);
        }
        self.tokens[id] = Some(text.to_string());
        self.types[id] = ty;
        Ok(())
    }

    fn from_tokenizer_json(path: &Path) -> Result<BpeVocab> {
        let tok = read_json(path)?;
        let bad = |why: &str| open_error(path, why);
        let model = tok.get("model").ok_or_else(|| bad("has no `model`"))?;
        if model.get("type").and_then(Json::as_str) != Some("BPE") {
            return Err(bad(
                "is not a BPE tokenizer; lucid writes GGUF only for byte-level BPE",
            ));
        }
        check_gpt2_pre_tokenizer(&tok).map_err(|why| bad(&why))?;
        let mut v = BpeVocab::empty(path);
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| bad("model.vocab is not an object"))?;
        for (text, id) in vocab {
            v.place(id.as_u64(), text, gguf_type::NORMAL)?;
        }
        for a in tok
            .get("added_tokens")
            .and_then(Json::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let content = a
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("an added token has no content"))?;
            let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
            let ty = if special {
                gguf_type::CONTROL
            } else {
                gguf_type::USER_DEFINED
            };
            v.place(a.get("id").and_then(Json::as_u64), content, ty)?;
        }
        v.merges = model
            .get("merges")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("model.merges is not an array"))?
            .iter()
            .map(|m| match m {
                Json::String(s) => Some(s.clone()),
                Json::Array(pair) => match pair.as_slice() {
                    [Json::String(a), Json::String(b)] => Some(format!("{a} {b}")),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| bad("model.merges entries must be \"a b\" or [\"a\", \"b\"]"))?;
        Ok(v)
    }

    /// GPT-2's original files: `vocab.json` (text to id) and `merges.txt`
    /// (a `#version` line, then one merge per line). The special tokens the
    /// configs name, and `added_tokens_decoder`'s, are control tokens.
    fn from_vocab_files(dir: &Path, specials: &SpecialTokens) -> Result<BpeVocab> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        if !vocab_path.is_file() || !merges_path.is_file() {
            return Err(open_error(
                &dir.join("tokenizer.json"),
                "is missing, and so are vocab.json and merges.txt: the checkpoint has no tokenizer lucid reads",
            ));
        }
        let mut v = BpeVocab::empty(&vocab_path);
        let vocab = read_json(&vocab_path)?;
        let vocab = vocab
            .as_object()
            .ok_or_else(|| open_error(&vocab_path, "is not a JSON object"))?;
        let special_texts: Vec<String> = ["bos_token", "eos_token", "unk_token", "pad_token"]
            .iter()
            .filter_map(|k| specials.text(k))
            .collect();
        for (text, id) in vocab {
            let ty = if special_texts.contains(text) {
                gguf_type::CONTROL
            } else {
                gguf_type::NORMAL
            };
            v.place(id.as_u64(), text, ty)?;
        }
        if let Some(added) = specials
            .config
            .get("added_tokens_decoder")
            .and_then(Json::as_object)
        {
            for (id, a) in added {
                let Some(content) = a.get("content").and_then(Json::as_str) else {
                    continue;
                };
                let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
                let ty = if special {
                    gguf_type::CONTROL
                } else {
                    gguf_type::USER_DEFINED
                };
                v.place(id.parse().ok(), content, ty)?;
            }
        }
        let text = std::fs::read_to_string(&merges_path)
            .map_err(|e| open_error(&merges_path, &e.to_string()))?;
        v.merges = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("#version"))
            .map(str::to_string)
            .collect();
        Ok(v)
    }
}

/// Whether `tokenizer.json` splits text as GPT-2 does: a `ByteLevel`
/// pre-tokenizer using its regex, without a prefix space, and no normalizer
/// beyond NFC (which llama.cpp, like GPT-NeoX's own tokenizer, leaves out).
fn check_gpt2_pre_tokenizer(tok: &Json) -> std::result::Result<(), String> {
    let pre = tok.get("pre_tokenizer").unwrap_or(&Json::Null);
    let byte_level = match pre.get("type").and_then(Json::as_str) {
        Some("ByteLevel") => pre,
        _ => return Err("has a pre-tokenizer other than GPT-2's ByteLevel one".into()),
    };
    if byte_level.get("use_regex").and_then(Json::as_bool) == Some(false) {
        return Err("has a ByteLevel pre-tokenizer without GPT-2's regex".into());
    }
    if byte_level.get("add_prefix_space").and_then(Json::as_bool) == Some(true) {
        return Err("adds a prefix space, which GGUF's gpt-2 pre-tokenizer does not".into());
    }
    match tok.get("normalizer") {
        None | Some(Json::Null) => Ok(()),
        Some(n) if n.get("type").and_then(Json::as_str) == Some("NFC") => Ok(()),
        Some(_) => Err("has a normalizer, which GGUF's gpt-2 tokenizer cannot express".into()),
    }
}
