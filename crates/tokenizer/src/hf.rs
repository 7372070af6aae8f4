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
use tokenizers::Tokenizer as HfTokenizer;

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

fn hf_error(path: &Path, message: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::HfFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

pub(crate) fn load(json_path: &Path, config_path: Option<&Path>) -> Result<Loaded, TokenizerError> {
    let json = fs_err::read_to_string(json_path)?;
    let parse: HfTokenizer = json.parse().map_err(|e| hf_error(json_path, e))?;
    let raw: serde_json::Value = serde_json::from_str(&json).map_err(|e| hf_error(json_path, e))?;
    let config: Config = match config_path {
        Some(p) => {
            let text = fs_err::read_to_string(p)?;
            serde_json::from_str(&text).map_err(|e| hf_error(p, e))?
        }
        None => Config::default(),
    };

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
            "Strip" if d.get("start").and_then(|s| s.as_u64()).unwrap_or(0) > 0 => {
                leading = LeadingSpace::StripAtStart;
            }
            _ => {}
        }
    }
    (style, leading)
}
