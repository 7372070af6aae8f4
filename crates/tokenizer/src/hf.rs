//! Hugging Face checkpoints: `tokenizer.json` runs through the `tokenizers`
//! crate as it is (normalizer, added tokens, pre-tokenizer, model, post-
//! processor), and `tokenizer_config.json` says which tokens are BOS and EOS,
//! whether to add them, and the chat template.
//!
//! The token table is copied into a [`Vocab`] so that the rest of lucid sees
//! one kind of vocabulary: added tokens marked special become control tokens,
//! the others user-defined, as llama.cpp's converter marks them.

use std::path::Path;

use serde::Deserialize;
use tokenizers::utils::truncation::{
    TruncationDirection, TruncationParams, TruncationStrategy, truncate_encodings,
};
use tokenizers::{Encoding, PostProcessor, Tokenizer as HfTokenizer};

use crate::error::TokenizerError;
use crate::vocab::{Attr, SpecialIds, Vocab};
use crate::{LeadingSpace, PieceStyle};

/// The parts of `tokenizer_config.json` lucid reads.
#[derive(Debug, Default, Deserialize)]
struct Config {
    add_bos_token: Option<bool>,
    add_eos_token: Option<bool>,
    bos_token: Option<TokenSpec>,
    eos_token: Option<TokenSpec>,
    unk_token: Option<TokenSpec>,
    chat_template: Option<ChatTemplate>,
}

/// A token in the config: its text, or an added-token object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenSpec {
    Text(String),
    Added { content: String },
}

impl TokenSpec {
    fn content(&self) -> &str {
        match self {
            TokenSpec::Text(s) => s,
            TokenSpec::Added { content } => content,
        }
    }
}

/// One template, or several by name (then lucid takes `default`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChatTemplate {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

/// Everything the loader hands to [`crate::Tokenizer`].
pub(crate) struct Loaded {
    pub vocab: Vocab,
    pub model: HfModel,
    pub style: PieceStyle,
    pub leading_space: LeadingSpace,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

/// The `tokenizers` pipeline, twice: once matching special tokens in text,
/// once treating them as plain text.
#[derive(Debug)]
pub(crate) struct HfModel {
    parse: HfTokenizer,
    literal: HfTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
}

impl HfModel {
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let tk = if parse_special {
            &self.parse
        } else {
            &self.literal
        };
        let encoding = tk
            .encode_fast(text, add_special)
            .map_err(|e| TokenizerError::Backend(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if add_special {
            // The post-processor adds BOS and EOS for some checkpoints (Llama);
            // for others only the config asks for them.
            if self.add_bos
                && let Some(bos) = self.bos
                && ids.first() != Some(&bos)
            {
                ids.insert(0, bos);
            }
            if self.add_eos
                && let Some(eos) = self.eos
                && ids.last() != Some(&eos)
            {
                ids.push(eos);
            }
        }
        Ok(ids)
    }
}

impl HfModel {
    /// The ids and segments of a text pair (a query and a document) as the
    /// post-processor joins them (`[CLS] a [SEP] b [SEP]` for BERT), the
    /// longer text cut first until the whole fits in `max_tokens`, as
    /// `tokenizers`' `longest_first` truncation does. Returns whether
    /// anything was cut.
    pub fn encode_pair(
        &self,
        a: &str,
        b: &str,
        max_tokens: usize,
    ) -> Result<(Vec<u32>, Vec<u32>, bool), TokenizerError> {
        let backend = |e: tokenizers::Error| TokenizerError::Backend(e.to_string());
        let tk = &self.parse;
        let first = tk.encode_fast(a, false).map_err(backend)?;
        let second = tk.encode_fast(b, false).map_err(backend)?;
        let added = tk.get_post_processor().map_or(0, |p| p.added_tokens(true));
        let room = max_tokens.saturating_sub(added);
        let truncated = first.len() + second.len() > room;
        let (first, second) = if truncated {
            let params = TruncationParams {
                direction: TruncationDirection::Right,
                max_length: room,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            };
            truncate_encodings(first, Some(second), &params).map_err(backend)?
        } else {
            (first, Some(second))
        };
        let joined: Encoding = tk.post_process(first, second, true).map_err(backend)?;
        Ok((
            joined.get_ids().to_vec(),
            joined.get_type_ids().to_vec(),
            truncated,
        ))
    }
}

fn hf_error(path: &Path, message: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::HfFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

pub(crate) fn load(json_path: &Path, config_path: Option<&Path>) -> Result<Loaded, TokenizerError> {
    let json = fs_err::read_to_string(json_path)?;
    let config: Config = match config_path {
        Some(p) => {
            let text = fs_err::read_to_string(p)?;
            serde_json::from_str(&text).map_err(|e| hf_error(p, e))?
        }
        None => Config::default(),
    };
    load_json(&json, json_path, config, config_path)
}

/// A BERT WordPiece vocabulary from GGUF metadata, as llama.cpp's converter
/// writes it, run as the `tokenizer.json` pipeline the checkpoint had: the
/// converter marks a word's first piece with `▁` and drops the `##` of the
/// others, which is undone here; text is lowercased with accents stripped
/// (as llama.cpp's WPM tokenizer and uncased BERT's normalizer do), split at
/// whitespace and punctuation, and joined as `[CLS] a [SEP]` (`[CLS] a
/// [SEP] b [SEP]` for a pair).
pub(crate) fn load_wordpiece(
    source: &Path,
    tokens: &[&str],
    control: &[bool],
    ids: WordPieceIds,
) -> Result<Loaded, TokenizerError> {
    let texts: Vec<String> = tokens
        .iter()
        .map(|t| {
            if let Some(word) = t.strip_prefix('▁') {
                word.to_owned()
            } else if t.starts_with('[') && t.ends_with(']') {
                (*t).to_owned()
            } else {
                format!("##{t}")
            }
        })
        .collect();
    let name = |id: u32, what: &str| -> Result<String, TokenizerError> {
        texts
            .get(id as usize)
            .cloned()
            .ok_or_else(|| hf_error(source, format!("the {what} id {id} is out of range")))
    };
    let (cls, sep, unk) = (
        name(ids.cls, "CLS")?,
        name(ids.sep, "SEP")?,
        name(ids.unk, "unknown-token")?,
    );
    let vocab: serde_json::Map<String, serde_json::Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::Value::from(i)))
        .collect();
    let added: Vec<serde_json::Value> = texts
        .iter()
        .zip(control)
        .enumerate()
        .filter(|(_, (_, c))| **c)
        .map(|(i, (t, _))| {
            serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let special = |t: &str, id: u32| serde_json::json!({"id": t, "ids": [id], "tokens": [t]});
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": sep, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": sep, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": sep, "type_id": 1}}],
            "special_tokens": {cls.clone(): special(&cls, ids.cls), sep.clone(): special(&sep, ids.sep)}
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab}
    });
    let config = Config {
        unk_token: Some(TokenSpec::Text(unk)),
        ..Config::default()
    };
    load_json(&json.to_string(), source, config, None)
}

/// The special ids a GGUF WordPiece vocabulary names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WordPieceIds {
    pub cls: u32,
    pub sep: u32,
    pub unk: u32,
}

fn load_json(
    json: &str,
    json_path: &Path,
    config: Config,
    config_path: Option<&Path>,
) -> Result<Loaded, TokenizerError> {
    let mut parse: HfTokenizer = json.parse().map_err(|e| hf_error(json_path, e))?;
    // Some files fix a length for training batches (all-MiniLM pads and cuts
    // every input to 128); lucid cuts where the model's use says, and never
    // pads.
    parse.with_padding(None);
    parse
        .with_truncation(None)
        .map_err(|e| hf_error(json_path, e))?;
    let raw: serde_json::Value = serde_json::from_str(json).map_err(|e| hf_error(json_path, e))?;

    let (style, leading_space) = piece_style(raw.get("decoder"));

    // The token table, with holes (ids no token has) left empty.
    let ids = parse.get_vocab(true);
    let n = ids.values().max().map_or(0, |&m| m as usize + 1);
    // Ids are dense in every real tokenizer; a stray huge id would make the
    // table below enormous.
    if n > 2 * ids.len() + 65_536 {
        return Err(hf_error(
            json_path,
            format!("token ids go up to {} for {} tokens", n - 1, ids.len()),
        ));
    }
    let mut texts = vec![String::new(); n];
    for (text, &id) in &ids {
        if let Some(slot) = texts.get_mut(id as usize) {
            slot.clone_from(text);
        }
    }
    let mut attrs = vec![Attr::NORMAL; n];
    for (id, text) in texts.iter().enumerate() {
        if text.is_empty() {
            attrs[id] = Attr::UNDEFINED;
        } else if style == PieceStyle::Spm && is_byte_token(text) {
            attrs[id] = Attr::BYTE;
        }
    }
    for (id, added) in parse.get_added_tokens_decoder() {
        if let Some(a) = attrs.get_mut(id as usize) {
            *a = if added.special {
                Attr::CONTROL
            } else {
                Attr::USER_DEFINED
            };
        }
    }
    let model_unk = raw
        .pointer("/model/unk_token")
        .and_then(serde_json::Value::as_str);
    let unk_text = config
        .unk_token
        .as_ref()
        .map(TokenSpec::content)
        .or(model_unk);
    let unk = unk_text.and_then(|t| ids.get(t).copied());
    if let Some(a) = unk.and_then(|u| attrs.get_mut(u as usize)) {
        *a = a.with(Attr::UNKNOWN);
    }
    let mut vocab = Vocab::new(texts.into(), Vec::new(), attrs)?;

    let lookup = |spec: &Option<TokenSpec>, what: &str| -> Result<Option<u32>, TokenizerError> {
        match spec {
            None => Ok(None),
            Some(s) => match vocab.id(s.content()) {
                Some(id) => Ok(Some(id)),
                None => Err(hf_error(
                    config_path.unwrap_or(json_path),
                    format!("{what} token {:?} is not in the vocabulary", s.content()),
                )),
            },
        }
    };
    let bos = lookup(&config.bos_token, "bos")?;
    let mut eos = lookup(&config.eos_token, "eos")?;
    if eos.is_none() && config_path.is_none() {
        // Without a config, take the usual end-of-text tokens for EOS.
        eos = ["</s>", "<|endoftext|>", "<eos>", "<|end_of_text|>"]
            .iter()
            .find_map(|t| vocab.id(t));
    }

    // Does the post-processor add BOS or EOS by itself?
    let empty = parse
        .encode_fast("", true)
        .map_err(|e| hf_error(json_path, e))?;
    let post_bos = bos.is_some() && empty.get_ids().first() == bos.as_ref();
    let post_eos = eos.is_some() && empty.get_ids().last() == eos.as_ref();
    let add_bos = config.add_bos_token.unwrap_or(false) || post_bos;
    let add_eos = config.add_eos_token.unwrap_or(false) || post_eos;

    vocab.finish_specials(SpecialIds {
        bos,
        eos,
        unk,
        ..SpecialIds::default()
    });

    let chat_template = match config.chat_template {
        Some(ChatTemplate::One(t)) => Some(t),
        Some(ChatTemplate::Named(list)) => list
            .iter()
            .find(|t| t.name == "default")
            .or(list.first())
            .map(|t| t.template.clone()),
        None => None,
    };

    let mut literal = parse.clone();
    literal.set_encode_special_tokens(true);
    Ok(Loaded {
        vocab,
        model: HfModel {
            parse,
            literal,
            bos,
            eos,
            add_bos,
            add_eos,
        },
        style,
        leading_space,
        add_bos,
        add_eos,
        chat_template,
    })
}

/// `<0xXX>`, a byte-fallback token.
fn is_byte_token(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 6
        && b.starts_with(b"<0x")
        && b[5] == b'>'
        && b[3..5].iter().all(u8::is_ascii_hexdigit)
}

/// How token texts turn into bytes, read from the tokenizer.json decoder:
/// GPT-2 byte characters, SentencePiece `▁` and byte tokens, or plain text.
fn piece_style(decoder: Option<&serde_json::Value>) -> (PieceStyle, LeadingSpace) {
    let Some(decoder) = decoder else {
        return (PieceStyle::Raw, LeadingSpace::Keep);
    };
    let parts: Vec<&serde_json::Value> = match decoder.get("decoders").and_then(|d| d.as_array()) {
        Some(list) => list.iter().collect(),
        None => vec![decoder],
    };
    fn kind(d: &serde_json::Value) -> &str {
        d.get("type").and_then(|t| t.as_str()).unwrap_or("")
    }
    let mut style = PieceStyle::Raw;
    let mut leading = LeadingSpace::Keep;
    for d in parts {
        match kind(d) {
            "ByteLevel" => style = PieceStyle::ByteLevel,
            "ByteFallback" => style = PieceStyle::Spm,
            "Replace" if d.pointer("/pattern/String").and_then(|p| p.as_str()) == Some("▁") => {
                style = PieceStyle::Spm;
            }
            "Metaspace" => {
                style = PieceStyle::Spm;
                let scheme = d.get("prepend_scheme").and_then(|s| s.as_str());
                let old = d.get("add_prefix_space").and_then(|s| s.as_bool());
                if matches!(scheme, Some("first" | "always")) || old == Some(true) {
                    leading = LeadingSpace::StripAtStart;
                }
            }
            "WordPiece" => {
                style = PieceStyle::WordPiece;
                leading = LeadingSpace::StripAtStart;
            }
            "Strip" if d.get("start").and_then(|s| s.as_u64()).unwrap_or(0) > 0 => {
                leading = LeadingSpace::StripAtStart;
            }
            _ => {}
        }
    }
    (style, leading)
}
