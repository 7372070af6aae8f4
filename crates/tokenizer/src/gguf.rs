//! Reading a tokenizer from GGUF metadata (`tokenizer.*` keys), with
//! llama.cpp's defaults for what a file leaves out.

use lucid_gguf::{GgufError, Metadata};

use crate::bpe::{Bpe, PreTokenizer};
use crate::error::TokenizerError;
use crate::spm::Spm;
use crate::vocab::{Attr, SpecialIds, Vocab};
use crate::{LeadingSpace, Model, PieceStyle};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// Everything the loader hands to [`crate::Tokenizer`].
pub(crate) struct Loaded {
    pub vocab: Vocab,
    pub model: Model,
    pub style: PieceStyle,
    pub leading_space: LeadingSpace,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

pub(crate) fn load(meta: &Metadata) -> Result<Loaded, TokenizerError> {
    let model_name = meta.str(MODEL)?;
    if model_name == "bert" {
        return load_wordpiece(meta);
    }
    let is_spm = match model_name {
        "llama" => true,
        "gpt2" => false,
        other => return Err(TokenizerError::UnsupportedModel(other.to_owned())),
    };
    let pre = if is_spm {
        None
    } else {
        let name = match meta.opt_str(PRE)? {
            Some(name) => name,
            None => {
                tracing::warn!(
                    "no tokenizer.ggml.pre in the file; using the `default` pre-tokenizer"
                );
                "default"
            }
        };
        Some(
            PreTokenizer::for_name(name)
                .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(name.to_owned()))?,
        )
    };

    let tokens = meta.str_array(TOKENS)?.clone();
    // llama.cpp accepts integer scores too.
    let scores = match meta.opt_f32_array(SCORES) {
        Ok(Some(s)) => s.to_vec(),
        Ok(None) => Vec::new(),
        Err(e) => match meta.opt_i32_array(SCORES) {
            Ok(Some(s)) => s.iter().map(|&x| x as f32).collect(),
            _ => return Err(e.into()),
        },
    };
    let attrs = meta
        .opt_i32_array(TOKEN_TYPE)?
        .map(|t| t.iter().map(|&t| Attr::from_gguf_type(t)).collect())
        .unwrap_or_default();
    let mut vocab = Vocab::new(tokens, scores, attrs)?;
    let n = vocab.len();

    // llama.cpp's defaults per tokenizer model, dropped when out of range.
    let in_range = |id: u32| ((id as usize) < n).then_some(id);
    let mut special = if is_spm {
        SpecialIds {
            bos: in_range(1),
            eos: in_range(2),
            unk: in_range(0),
            ..SpecialIds::default()
        }
    } else {
        SpecialIds {
            bos: in_range(11),
            eos: in_range(11),
            ..SpecialIds::default()
        }
    };
    for &(key, slot) in ID_KEYS {
        match special_id(meta, key)? {
            Some(id) if (id as usize) < n => *slot(&mut special) = Some(id),
            Some(id) => tracing::warn!("{key} = {id} is out of range ({n} tokens); ignored"),
            None => {}
        }
    }

    let add_bos = meta
        .opt_bool(ADD_BOS)?
        .unwrap_or(is_spm || pre.is_some_and(|p| p.add_bos));
    let add_eos = meta.opt_bool(ADD_EOS)?.unwrap_or(false);
    let add_space_prefix = meta.opt_bool(ADD_SPACE_PREFIX)?.unwrap_or(is_spm);
    vocab.finish_specials(special);

    let model = match pre {
        None => Model::Spm(Spm::new(&vocab), add_space_prefix),
        Some(pre) => Model::Bpe(Box::new(Bpe::new(&vocab, meta.str_array(MERGES)?, pre)?)),
    };
    let (style, leading_space) = if is_spm {
        let leading = if add_space_prefix {
            LeadingSpace::StripAfterSpecial
        } else {
            LeadingSpace::Keep
        };
        (PieceStyle::Spm, leading)
    } else {
        (PieceStyle::ByteLevel, LeadingSpace::Keep)
    };
    Ok(Loaded {
        vocab,
        model,
        style,
        leading_space,
        add_bos,
        add_eos,
        chat_template: meta.opt_str(CHAT_TEMPLATE)?.map(str::to_owned),
    })
}

/// `tokenizer.ggml.model = bert`: WordPiece, run through the `tokenizers`
/// pipeline of a BERT checkpoint ([`crate::hf::load_wordpiece`]). CLS and
/// SEP are llama.cpp's keys for them, else BOS and EOS, else the usual
/// `[CLS]`/`[SEP]` texts.
fn load_wordpiece(meta: &Metadata) -> Result<Loaded, TokenizerError> {
    let tokens = meta.str_array(TOKENS)?;
    let tokens: Vec<&str> = tokens.iter().collect();
    let control: Vec<bool> = match meta.opt_i32_array(TOKEN_TYPE)? {
        Some(types) => (0..tokens.len())
            .map(|i| {
                types
                    .get(i)
                    .is_some_and(|&t| Attr::from_gguf_type(t).is_special())
            })
            .collect(),
        None => tokens
            .iter()
            .map(|t| t.starts_with('[') && t.ends_with(']'))
            .collect(),
    };
    let by_text = |text: &str| tokens.iter().position(|t| *t == text).map(|i| i as u32);
    let id = |keys: &[&str], text: &str| -> Result<u32, TokenizerError> {
        for key in keys {
            if let Some(id) = special_id(meta, key)? {
                return Ok(id);
            }
        }
        by_text(text).ok_or(TokenizerError::MissingSpecial("WordPiece CLS, SEP or UNK"))
    };
    let ids = crate::hf::WordPieceIds {
        cls: id(
            &["tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"],
            "[CLS]",
        )?,
        sep: id(
            &[
                "tokenizer.ggml.seperator_token_id",
                "tokenizer.ggml.eos_token_id",
            ],
            "[SEP]",
        )?,
        unk: id(&["tokenizer.ggml.unknown_token_id"], "[UNK]")?,
    };
    let source = std::path::Path::new("<GGUF tokenizer.ggml.tokens>");
    let l = crate::hf::load_wordpiece(source, &tokens, &control, ids)?;
    Ok(Loaded {
        vocab: l.vocab,
        model: Model::Hf(Box::new(l.model)),
        style: l.style,
        leading_space: l.leading_space,
        add_bos: l.add_bos,
        add_eos: l.add_eos,
        chat_template: meta.opt_str(CHAT_TEMPLATE)?.map(str::to_owned),
    })
}

/// Where each special-token id key goes.
type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;
const ID_KEYS: &[(&str, Slot)] = &[
    ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
    ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
    ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
    ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
    ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
    ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
    ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
    ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
    ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
    ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
    ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
    // Older names of the first three fill-in-the-middle ids.
    ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
    ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
    ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
];

/// A special-token id from metadata. Some converters write -1 for "none";
/// that reads as absent.
fn special_id(meta: &Metadata, key: &str) -> Result<Option<u32>, GgufError> {
    Ok(meta.opt_i64(key)?.and_then(|v| u32::try_from(v).ok()))
}
