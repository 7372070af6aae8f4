//! Text to token ids and back, built from what a model file says about its
//! vocabulary: byte-level BPE, SentencePiece-style, and Hugging Face's tokenizer.json.
//!
//! For GGUF files the ids are llama.cpp's, id for id: the same pre-tokenizer
//! regexes per `tokenizer.ggml.pre`, the same SentencePiece merge order, the
//! same special-token matching and the same end-of-generation set. The
//! goldens in `tests/goldens/tokenizer` are llama-tokenize's output and the
//! tests hold lucid to them.
//!
//! Encoding goes in three steps: special tokens written in the text are found
//! whole (`special.rs`), the text between them goes to the model (SentencePiece
//! in `spm.rs`, byte-level BPE in `bpe.rs`), and BOS/EOS are added as the
//! metadata says. Decoding maps each token to the bytes it stands for and
//! reads them as UTF-8; [`StreamDecoder`] does the same a token at a time.
//!
//! This crate knows nothing of models' weights or chat formats: it hands out
//! the chat template as text.

mod bpe;
mod bytelevel;
mod error;
mod gguf;
mod hf;
mod special;
mod spm;
mod stream;
pub mod to_gguf;
mod vocab;

use std::path::Path;

pub use error::TokenizerError;
pub use stream::StreamDecoder;

use special::{Fragment, SpecialMatcher};
use vocab::{Attr, Vocab};

/// Turns text into token ids and back, for one model's vocabulary.
///
/// Share it behind an `Arc`: every method takes `&self`, and it is
/// `Send + Sync`.
pub struct Tokenizer {
    vocab: Vocab,
    specials: SpecialMatcher,
    model: Model,
    style: PieceStyle,
    leading_space: LeadingSpace,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    /// A summary: the token table is too big to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.model {
            Model::Spm(..) => "sentencepiece",
            Model::Bpe(_) => "byte-level bpe",
            Model::Hf(_) => "hugging face",
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos())
            .field("eos", &self.eos())
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// A text's ids cut to a length ([`Tokenizer::encode_truncated`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncated {
    pub ids: Vec<u32>,
    /// Whether the end of the text was dropped.
    pub truncated: bool,
}

/// A text pair as one input ([`Tokenizer::encode_pair`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPair {
    pub ids: Vec<u32>,
    /// The segment of each token: 0 for the first text, 1 for the second.
    pub types: Vec<u32>,
    /// Whether either text was cut.
    pub truncated: bool,
}

/// The algorithm that tokenizes the text between special tokens.
#[derive(Debug)]
enum Model {
    /// SentencePiece-style, and whether to put a space in front of each
    /// stretch of text that starts the input or follows a special token.
    Spm(spm::Spm, bool),
    Bpe(Box<bpe::Bpe>),
    /// A Hugging Face pipeline, which finds special tokens itself.
    Hf(Box<hf::HfModel>),
}

/// How a normal token's text maps to the bytes it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceStyle {
    /// `▁` is a space; `<0xXX>` tokens are bytes.
    Spm,
    /// GPT-2's byte characters (`Ġ` is a space).
    ByteLevel,
    /// The text is what it says.
    Raw,
    /// BERT's WordPiece: `##ing` continues a word, any other piece starts
    /// one (after a space).
    WordPiece,
}

/// Whether decoding drops the space that encoding put in front of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeadingSpace {
    Keep,
    /// At the start only (Hugging Face Metaspace decoders).
    StripAtStart,
    /// At the start and after every special token, mirroring where
    /// SentencePiece encoding with `add_space_prefix` put one.
    StripAfterSpecial,
}

/// Decoding state carried from one token to the next.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecodeState {
    /// Nothing but special tokens so far, or the last token was special.
    after_special: bool,
    /// No token produced text yet.
    at_start: bool,
}

impl DecodeState {
    pub(crate) fn new() -> DecodeState {
        DecodeState {
            after_special: true,
            at_start: true,
        }
    }
}

impl Tokenizer {
    /// Builds the tokenizer that GGUF metadata describes (`tokenizer.ggml.*`).
    ///
    /// Supports the `llama` (SentencePiece-style) and `gpt2` (byte-level BPE)
    /// tokenizer models. A `tokenizer.ggml.pre` that lucid does not know is an
    /// error, as it is in llama.cpp; a file without one gets `default`.
    pub fn from_gguf(meta: &lucid_gguf::Metadata) -> Result<Tokenizer, TokenizerError> {
        let l = gguf::load(meta)?;
        Tokenizer::assemble(
            l.vocab,
            l.model,
            l.style,
            l.leading_space,
            (l.add_bos, l.add_eos),
            l.chat_template,
        )
    }

    /// Builds the tokenizer of a Hugging Face checkpoint from its
    /// `tokenizer.json` and, when given, `tokenizer_config.json` (BOS, EOS,
    /// whether to add them, chat template).
    pub fn from_hf_file(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
    ) -> Result<Tokenizer, TokenizerError> {
        let l = hf::load(tokenizer_json, tokenizer_config)?;
        Tokenizer::assemble(
            l.vocab,
            Model::Hf(Box::new(l.model)),
            l.style,
            l.leading_space,
            (l.add_bos, l.add_eos),
            l.chat_template,
        )
    }

    fn assemble(
        vocab: Vocab,
        model: Model,
        style: PieceStyle,
        leading_space: LeadingSpace,
        (add_bos, add_eos): (bool, bool),
        chat_template: Option<String>,
    ) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer {
            specials: SpecialMatcher::new(&vocab)?,
            vocab,
            model,
            style,
            leading_space,
            add_bos,
            add_eos,
            chat_template,
        })
    }

    /// The token ids of `text`.
    ///
    /// `add_special` adds BOS (and EOS) where the model asks for them, as
    /// `llama_tokenize` does. `parse_special` matches control tokens written in
    /// the text (`<|im_start|>`) as those tokens; without it they are
    /// tokenized as plain text. User-defined tokens are matched either way.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        if let Model::Hf(hf) = &self.model {
            return hf.encode(text, add_special, parse_special);
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.push(self.bos().ok_or(TokenizerError::MissingSpecial("BOS"))?);
        }
        let mut prev_special = true;
        for fragment in self.specials.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match &self.model {
                        Model::Spm(spm, space_prefix) => {
                            spm.encode(&self.vocab, t, *space_prefix && prev_special, &mut out)?;
                        }
                        Model::Bpe(bpe) => bpe.encode(&self.vocab, t, &mut out)?,
                        Model::Hf(_) => {}
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.push(self.eos().ok_or(TokenizerError::MissingSpecial("EOS"))?);
        }
        Ok(out)
    }

    /// The ids of `text` with special tokens added and parsed (as
    /// [`Tokenizer::encode`] with both on), cut to at most `max_tokens`: the
    /// end of the text is dropped and the tokens the model adds around it
    /// (`[CLS]` … `[SEP]`, BOS) are kept, as `tokenizers`' truncation does.
    pub fn encode_truncated(
        &self,
        text: &str,
        max_tokens: usize,
    ) -> Result<Truncated, TokenizerError> {
        let full = self.encode(text, true, true)?;
        if full.len() <= max_tokens {
            return Ok(Truncated {
                ids: full,
                truncated: false,
            });
        }
        let plain = self.encode(text, false, true)?;
        let added = full.len().saturating_sub(plain.len());
        if max_tokens < added || full.len() != plain.len() + added {
            return Err(TokenizerError::TooShortToTruncate { max_tokens, added });
        }
        // The added tokens before the text: where `plain` starts in `full`.
        let prefix = (0..=added)
            .find(|&k| full[k..k + plain.len()] == plain[..])
            .unwrap_or(0);
        let keep = max_tokens - added;
        let mut ids = Vec::with_capacity(max_tokens);
        ids.extend_from_slice(&full[..prefix]);
        ids.extend_from_slice(&plain[..keep]);
        ids.extend_from_slice(&full[prefix + plain.len()..]);
        Ok(Truncated {
            ids,
            truncated: true,
        })
    }

    /// The ids and segment of each token of a text pair joined as the
    /// model's tokenizer joins them (`[CLS] a [SEP] b [SEP]`), cut to
    /// `max_tokens` longest text first: what a cross-encoder reads. Only
    /// Hugging Face `tokenizer.json` pipelines know how to join a pair.
    pub fn encode_pair(
        &self,
        a: &str,
        b: &str,
        max_tokens: usize,
    ) -> Result<EncodedPair, TokenizerError> {
        match &self.model {
            Model::Hf(hf) => {
                let (ids, types, truncated) = hf.encode_pair(a, b, max_tokens)?;
                Ok(EncodedPair {
                    ids,
                    types,
                    truncated,
                })
            }
            _ => Err(TokenizerError::NoPairTemplate),
        }
    }

    /// The text of `ids`, with invalid UTF-8 replaced by U+FFFD.
    ///
    /// `skip_special` leaves out control tokens (BOS, `<|im_end|>`...);
    /// otherwise they appear as their text. Ids out of range are skipped.
    /// The result is the concatenation of what a [`StreamDecoder`] yields for
    /// the same ids: no clean-up of spaces before punctuation (llama.cpp's
    /// `clean_spaces`) is applied, so that streamed and whole text agree.
    ///
    /// For SentencePiece vocabularies with `add_space_prefix`, the space that
    /// encoding put in front of the text and after each special token is
    /// dropped again, so that `decode(encode(x)) == x`. (llama.cpp drops it
    /// only from the very first token, and not when that follows a BOS.)
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut state = DecodeState::new();
        for &id in ids {
            self.decode_into(id, skip_special, &mut state, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Appends what `id` adds to decoded text.
    pub(crate) fn decode_into(
        &self,
        id: u32,
        skip_special: bool,
        state: &mut DecodeState,
        out: &mut Vec<u8>,
    ) {
        let Some(text) = self.vocab.text(id) else {
            return;
        };
        let attr = self.vocab.attr(id);
        if attr.is_special() {
            state.after_special = true;
            if !(skip_special && attr.is_hidden()) {
                out.extend_from_slice(text.as_bytes());
            }
            return;
        }
        let start = out.len();
        self.piece_into(text, attr, out);
        let strip = match self.leading_space {
            LeadingSpace::Keep => false,
            LeadingSpace::StripAtStart => state.at_start,
            LeadingSpace::StripAfterSpecial => state.after_special,
        };
        if strip && out.get(start) == Some(&b' ') {
            out.remove(start);
        }
        if out.len() > start {
            state.at_start = false;
        }
        state.after_special = false;
    }

    /// The bytes a token stands for: byte tokens as their byte, `▁` and GPT-2
    /// byte characters mapped back, special tokens as their text. Empty for
    /// an id out of range or an unused token.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(text) = self.vocab.text(id) {
            let attr = self.vocab.attr(id);
            if attr.is_special() {
                out.extend_from_slice(text.as_bytes());
            } else {
                self.piece_into(text, attr, &mut out);
            }
        }
        out
    }

    fn piece_into(&self, text: &str, attr: Attr, out: &mut Vec<u8>) {
        if attr.has(Attr::BYTE) {
            match text
                .strip_prefix("<0x")
                .and_then(|t| t.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => out.push(b),
                None => out.extend_from_slice(text.as_bytes()),
            }
            return;
        }
        if !attr.has(Attr::NORMAL) {
            // Unused and undefined tokens render as nothing, as in llama.cpp.
            return;
        }
        match self.style {
            PieceStyle::Spm => {
                for (i, part) in text.split('▁').enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(part.as_bytes());
                }
            }
            PieceStyle::ByteLevel => bytelevel::decode_into(text, out),
            PieceStyle::Raw => out.extend_from_slice(text.as_bytes()),
            PieceStyle::WordPiece => match text.strip_prefix("##") {
                Some(rest) => out.extend_from_slice(rest.as_bytes()),
                None => {
                    out.push(b' ');
                    out.extend_from_slice(text.as_bytes());
                }
            },
        }
    }

    /// The token's text as the vocabulary stores it (`Ġhello`, `▁hello`,
    /// `<0x0A>`), or `None` for an id out of range.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// Treats the special tokens with these texts as markers of inputs the
    /// model's family takes and lucid does not run (Gemma 3's image
    /// markers): decoded as nothing unless special tokens are asked for,
    /// as control tokens are, and tokenized exactly as before.
    pub fn mark_input_markers(&mut self, texts: &[&str]) {
        self.vocab.mark_markers(texts);
    }

    /// The number of ids, including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.special.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.special.eos
    }

    /// Whether `encode(.., add_special: true, ..)` puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether generating `id` ends the turn: EOS, end-of-turn, end-of-message
    /// and the end-of-turn tokens llama.cpp knows by text (`<|im_end|>`,
    /// `<end_of_turn>`, `<|eot_id|>`, `<|endoftext|>`, ...).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.vocab.is_eog(id)
    }

    /// Whether `id` is a control token (BOS, EOS, chat markers), which
    /// decoding with `skip_special` leaves out.
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id).has(Attr::CONTROL)
    }

    /// The Jinja chat template the model ships (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// A decoder that turns ids into text one at a time.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Tokenizer>();
        check::<super::StreamDecoder<'static>>();
    }

    #[test]
    fn debug_output_is_a_summary() {
        let vocab = super::Vocab::new(vec!["a"].into(), Vec::new(), Vec::new()).expect("vocab");
        let t = super::Tokenizer::assemble(
            vocab,
            super::Model::Bpe(Box::new(
                super::bpe::Bpe::new(
                    &super::Vocab::new(vec!["a"].into(), Vec::new(), Vec::new()).expect("vocab"),
                    &lucid_gguf::StringArray::default(),
                    super::bpe::PreTokenizer::for_name("gpt-2").expect("known"),
                )
                .expect("bpe"),
            )),
            super::PieceStyle::ByteLevel,
            super::LeadingSpace::Keep,
            (false, false),
            None,
        )
        .expect("tokenizer");
        let s = format!("{t:?}");
        assert!(s.contains("vocab_size: 1") && s.len() < 200, "{s}");
    }
}
