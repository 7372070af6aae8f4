//! SentencePiece-style tokenization from a vocabulary with scores (GGUF's
//! `llama` tokenizer model), as llama.cpp's `llm_tokenizer_spm` does it.
//!
//! Spaces become `▁` (U+2581), the text is cut into UTF-8 characters, and then
//! the adjacent pair whose joined text is the best-scoring token is merged,
//! again and again, until no adjacent pair is a token. Ties go to the leftmost
//! pair. A piece left over that is not a token is written as its bytes, each
//! as a `<0xXX>` byte token (or the one-byte token), or the unknown token when
//! the vocabulary has no byte token for it.
//!
//! This is not the `tokenizers` crate's Unigram or BPE: neither merges by
//! vocabulary score like this, and matching llama.cpp id for id is the point.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::TokenizerError;
use crate::vocab::Vocab;

/// Marks "no neighbour" in the symbol list.
const NONE: usize = usize::MAX;

/// The SPM tokenizer's own state: which token stands for each byte.
#[derive(Debug)]
pub(crate) struct Spm {
    /// Indexed by byte value.
    byte_tokens: Vec<Option<u32>>,
    unk: Option<u32>,
}

impl Spm {
    pub fn new(vocab: &Vocab) -> Spm {
        let mut byte_tokens = vec![None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            // llama.cpp's byte_to_token: the <0xXX> token, else the token that
            // is the byte itself (only an ASCII byte can be a token's whole text).
            *slot = vocab.id(&format!("<0x{b:02X}>")).or_else(|| {
                u8::try_from(b)
                    .ok()
                    .filter(u8::is_ascii)
                    .and_then(|b| vocab.id(char::from(b).encode_utf8(&mut [0; 4])))
            });
        }
        Spm {
            byte_tokens,
            unk: vocab.special.unk,
        }
    }

    /// Appends the tokens of `text` to `out`. `space_prefix` puts a space in
    /// front first (the `add_space_prefix` of SentencePiece).
    pub fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        space_prefix: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        let mut escaped = String::with_capacity(text.len() + 3 + text.len() / 2);
        if space_prefix {
            escaped.push('▁');
        }
        for c in text.chars() {
            escaped.push(if c == ' ' { '▁' } else { c });
        }
        Session::new(vocab, &escaped).run(self, out)
    }
}

/// A run of the text: a character at first, a token's worth after merges.
/// `len == 0` marks a symbol merged into its left neighbour.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

/// A candidate merge of two adjacent symbols into the token `text[left..]`.
#[derive(Clone, Copy, Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// The joined length in bytes when the bigram was made; a later merge of
    /// either side changes it, which marks the bigram stale.
    size: usize,
}

impl Ord for Bigram {
    /// Higher score first, then the leftmost.
    fn cmp(&self, other: &Bigram) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Bigram) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Bigram) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

struct Session<'a> {
    vocab: &'a Vocab,
    text: &'a str,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

impl<'a> Session<'a> {
    fn new(vocab: &'a Vocab, text: &'a str) -> Session<'a> {
        let mut symbols = Vec::with_capacity(text.len());
        let mut iter = text.char_indices().peekable();
        while let Some((start, c)) = iter.next() {
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: if i == 0 { NONE } else { i - 1 },
                next: if iter.peek().is_some() { i + 1 } else { NONE },
            });
        }
        Session {
            vocab,
            text,
            symbols,
            queue: BinaryHeap::new(),
        }
    }

    fn run(mut self, spm: &Spm, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        for i in 1..self.symbols.len() {
            self.try_add_bigram(i - 1, i);
        }
        while let Some(bigram) = self.queue.pop() {
            let (left, right) = (self.symbols[bigram.left], self.symbols[bigram.right]);
            if left.len == 0 || right.len == 0 || left.len + right.len != bigram.size {
                continue;
            }
            self.symbols[bigram.left].len += right.len;
            self.symbols[bigram.left].next = right.next;
            self.symbols[bigram.right].len = 0;
            if right.next != NONE {
                self.symbols[right.next].prev = bigram.left;
            }
            self.try_add_bigram(left.prev, bigram.left);
            self.try_add_bigram(bigram.left, right.next);
        }

        let mut i = if self.symbols.is_empty() { NONE } else { 0 };
        while i != NONE {
            let sym = self.symbols[i];
            let piece = &self.text[sym.start..sym.start + sym.len];
            if let Some(id) = self.vocab.id(piece) {
                out.push(id);
            } else {
                for &b in piece.as_bytes() {
                    match spm
                        .byte_tokens
                        .get(usize::from(b))
                        .copied()
                        .flatten()
                        .or(spm.unk)
                    {
                        Some(id) => out.push(id),
                        None => return Err(TokenizerError::NoTokenForByte(b)),
                    }
                }
            }
            i = sym.next;
        }
        Ok(())
    }

    fn try_add_bigram(&mut self, left: usize, right: usize) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (self.symbols[left], self.symbols[right]);
        let size = l.len + r.len;
        let Some(joined) = self.text.get(l.start..l.start + size) else {
            return;
        };
        if let Some(id) = self.vocab.id(joined) {
            self.queue.push(Bigram {
                score: self.vocab.score(id),
                left,
                right,
                size,
            });
        }
    }
}
