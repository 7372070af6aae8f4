//! The token table every tokenizer shares: id to text, text to id, what kind
//! each token is, the special ids, and which ids end generation.
//!
//! The kinds and the end-of-generation rules follow llama.cpp's
//! `llama_vocab::impl::load`, because a model behaves as its GGUF was made to
//! behave only if lucid reads the same tokens as special that llama.cpp does.
//! Several of those rules go by token text (`<|im_end|>`, `<end_of_turn>`...),
//! since converters often leave the ids out of the metadata.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use lucid_gguf::StringArray;

use crate::error::TokenizerError;

/// The values of GGUF's `tokenizer.ggml.token_type` (llama.cpp's
/// `llama_token_type`).
pub(crate) mod gguf_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// What a token is, as a set of flags. llama.cpp keeps flags rather than one
/// kind because its text rules add `CONTROL` to tokens of any kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attr(u8);

impl Attr {
    pub const UNDEFINED: Attr = Attr(0);
    pub const NORMAL: Attr = Attr(1);
    pub const UNKNOWN: Attr = Attr(1 << 1);
    pub const CONTROL: Attr = Attr(1 << 2);
    pub const USER_DEFINED: Attr = Attr(1 << 3);
    pub const UNUSED: Attr = Attr(1 << 4);
    pub const BYTE: Attr = Attr(1 << 5);
    /// lucid's own: a token that marks an input lucid does not run (an
    /// image's start in a multimodal family). It is matched in text as its
    /// type says, and renders as nothing unless special tokens are asked for.
    pub const MARKER: Attr = Attr(1 << 6);

    /// The flags for a value of GGUF's `tokenizer.ggml.token_type`.
    pub fn from_gguf_type(t: i32) -> Attr {
        match t {
            gguf_type::NORMAL => Attr::NORMAL,
            gguf_type::UNKNOWN => Attr::UNKNOWN,
            gguf_type::CONTROL => Attr::CONTROL,
            gguf_type::USER_DEFINED => Attr::USER_DEFINED,
            gguf_type::UNUSED => Attr::UNUSED,
            gguf_type::BYTE => Attr::BYTE,
            _ => Attr::UNDEFINED,
        }
    }

    pub fn has(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    pub fn with(self, other: Attr) -> Attr {
        Attr(self.0 | other.0)
    }

    /// Tokens that the text partition matches as whole tokens.
    pub fn is_special(self) -> bool {
        self.has(Attr(
            Attr::CONTROL.0 | Attr::USER_DEFINED.0 | Attr::UNKNOWN.0,
        ))
    }

    /// Tokens that render as nothing unless special tokens are asked for.
    pub fn is_hidden(self) -> bool {
        self.has(Attr(Attr::CONTROL.0 | Attr::UNKNOWN.0 | Attr::MARKER.0))
    }
}

/// The ids with a role, each absent when the vocabulary has none.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Token texts that llama.cpp takes for end-of-turn when no id says so.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

const EOM_TEXTS: &[&str] = &["<|eom_id|>"];

/// Fill-in-the-middle tokens: llama.cpp marks them control, and ends
/// generation on the pad, repository and file-separator ones.
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Token texts that end generation wherever they are in the vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Tokens that gpt-oss writes into its output and that must always render.
const ALWAYS_RENDERED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// The token table.
#[derive(Debug)]
pub(crate) struct Vocab {
    texts: StringArray,
    scores: Vec<f32>,
    attrs: Vec<Attr>,
    /// Token ids by text: the keys are the texts in `texts`, looked up
    /// through their ids, so that the table holds no second copy of them.
    ids: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    pub special: SpecialIds,
    eog: HashSet<u32>,
}

impl Vocab {
    /// Builds the table from parallel per-token lists. `scores` and `attrs`
    /// may be empty (all 0.0, all normal). Empty token texts get llama.cpp's
    /// placeholder `[EMPTY_<id>]` so that text maps back to one id.
    pub fn new(
        texts: StringArray,
        scores: Vec<f32>,
        attrs: Vec<Attr>,
    ) -> Result<Vocab, TokenizerError> {
        let n = texts.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n > u32::MAX as usize {
            return Err(TokenizerError::IdOutOfRange {
                what: "token",
                id: u32::MAX,
                n_tokens: n,
            });
        }
        let scores = if scores.is_empty() {
            vec![0.0; n]
        } else if scores.len() < n {
            return Err(TokenizerError::ArrayTooShort {
                key: "tokenizer.ggml.scores",
                len: scores.len(),
                n_tokens: n,
            });
        } else {
            scores
        };
        let attrs = if attrs.is_empty() {
            vec![Attr::NORMAL; n]
        } else if attrs.len() < n {
            return Err(TokenizerError::ArrayTooShort {
                key: "tokenizer.ggml.token_type",
                len: attrs.len(),
                n_tokens: n,
            });
        } else {
            attrs
        };
        let texts = if texts.iter().any(str::is_empty) {
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| match text {
                    "" => Cow::Owned(format!("[EMPTY_{i}]")),
                    text => Cow::Borrowed(text),
                })
                .collect()
        } else {
            texts
        };
        // A seeded hash keeps a hostile file from making the table quadratic.
        let hasher = foldhash::fast::RandomState::default();
        let mut ids = HashTable::with_capacity(n);
        for (i, text) in texts.iter().enumerate() {
            let id = i as u32;
            let entry = ids.entry(
                hasher.hash_one(text),
                |&j: &u32| &texts[j as usize] == text,
                |&j: &u32| hasher.hash_one(&texts[j as usize]),
            );
            match entry {
                hashbrown::hash_table::Entry::Occupied(first) => {
                    return Err(TokenizerError::DuplicateToken {
                        text: text.to_owned(),
                        first: *first.get(),
                        second: id,
                    });
                }
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(id);
                }
            }
        }
        Ok(Vocab {
            texts,
            scores,
            attrs,
            ids,
            hasher,
            special: SpecialIds::default(),
            eog: HashSet::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize)
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.ids
            .find(self.hasher.hash_one(text), |&j| {
                &self.texts[j as usize] == text
            })
            .copied()
    }

    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The flags of `id`; an id out of range has none.
    pub fn attr(&self, id: u32) -> Attr {
        self.attrs
            .get(id as usize)
            .copied()
            .unwrap_or(Attr::UNDEFINED)
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    fn add_attr(&mut self, id: u32, attr: Attr) {
        if let Some(a) = self.attrs.get_mut(id as usize) {
            *a = a.with(attr);
        }
    }

    /// Marks the tokens with these texts as input markers ([`Attr::MARKER`]).
    pub(crate) fn mark_markers(&mut self, texts: &[&str]) {
        for text in texts {
            if let Some(id) = self.id(text)
                && self.attr(id).is_special()
            {
                self.add_attr(id, Attr::MARKER);
            }
        }
    }

    fn set_attr(&mut self, id: u32, attr: Attr) {
        if let Some(a) = self.attrs.get_mut(id as usize) {
            *a = attr;
        }
    }

    /// Finds the roles that metadata left out by token text, marks the tokens
    /// that play them as control tokens, and works out the end-of-generation
    /// set, as llama.cpp does after reading the ids from metadata.
    pub fn finish_specials(&mut self, special: SpecialIds) {
        self.special = special;

        // llama.cpp walks a hash map here, so which of several candidates wins
        // is unspecified; lucid takes the lowest id. Every candidate that ends
        // generation is in the EOG set below regardless.
        let mut detected: Vec<u32> = Vec::new();
        let lowest = |texts: &[&str]| texts.iter().filter_map(|t| self.id(t)).min();
        let found: [Option<u32>; 8] = [
            lowest(EOT_TEXTS),
            lowest(EOM_TEXTS),
            lowest(FIM_PRE_TEXTS),
            lowest(FIM_SUF_TEXTS),
            lowest(FIM_MID_TEXTS),
            lowest(FIM_PAD_TEXTS),
            lowest(FIM_REP_TEXTS),
            lowest(FIM_SEP_TEXTS),
        ];
        let slots: [&mut Option<u32>; 8] = [
            &mut self.special.eot,
            &mut self.special.eom,
            &mut self.special.fim_pre,
            &mut self.special.fim_suf,
            &mut self.special.fim_mid,
            &mut self.special.fim_pad,
            &mut self.special.fim_rep,
            &mut self.special.fim_sep,
        ];
        for (slot, id) in slots.into_iter().zip(found) {
            if let (None, Some(id)) = (*slot, id) {
                *slot = Some(id);
                detected.push(id);
            }
        }
        for id in detected {
            self.add_attr(id, Attr::CONTROL);
        }

        let mut eog: HashSet<u32> = [
            self.special.fim_pad,
            self.special.fim_rep,
            self.special.fim_sep,
        ]
        .into_iter()
        .flatten()
        .collect();
        // Texts are unique, so each listed text is at most one token.
        let by_text: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| self.id(t)).collect();
        let rendered: Vec<u32> = ALWAYS_RENDERED.iter().filter_map(|t| self.id(t)).collect();
        for id in by_text {
            eog.insert(id);
            self.add_attr(id, Attr::CONTROL);
        }
        for id in rendered {
            self.set_attr(id, Attr::USER_DEFINED);
        }
        eog.extend(
            [self.special.eos, self.special.eot, self.special.eom]
                .into_iter()
                .flatten(),
        );

        // gpt-oss and Solar Open end a turn with <|return|> or <|call|> (<|calls|>
        // and <|flush|>), and use <|end|> between messages inside one turn.
        let find = |eog: &HashSet<u32>, t: &str| find_text(&self.texts, eog, t);
        let has_return = find(&eog, "<|return|>").is_some();
        let has_call = find(&eog, "<|call|>").is_some() || find(&eog, "<|calls|>").is_some();
        let has_flush = find(&eog, "<|flush|>").is_some();
        let end = find(&eog, "<|end|>").filter(|_| has_call && (has_return || has_flush));
        // Gemma 4 and PLaMo have an ordinary </s> token.
        let has_normal_s =
            find(&eog, "<|tool_response>").is_some() || find(&eog, "<|plamo:eos|>").is_some();
        let s = find(&eog, "</s>").filter(|_| has_normal_s);
        if let Some(end) = end {
            eog.remove(&end);
            self.set_attr(end, Attr::USER_DEFINED);
        }
        if let Some(s) = s {
            eog.remove(&s);
            self.set_attr(s, Attr::NORMAL);
        }
        self.eog = eog;
    }

    /// The ids matched as whole tokens in text, longest text first, as
    /// llama.cpp's special-token cache orders them (ties by id here; llama.cpp
    /// leaves their order unspecified).
    pub fn special_tokens(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.len() as u32)
            .filter(|&id| self.attr(id).is_special())
            .collect();
        ids.sort_by(|&a, &b| {
            let (la, lb) = (self.texts[a as usize].len(), self.texts[b as usize].len());
            lb.cmp(&la).then(a.cmp(&b))
        });
        ids
    }
}

/// The id in `eog` whose text is `t`.
fn find_text(texts: &StringArray, eog: &HashSet<u32>, t: &str) -> Option<u32> {
    eog.iter()
        .copied()
        .find(|&id| texts.get(id as usize) == Some(t))
}
