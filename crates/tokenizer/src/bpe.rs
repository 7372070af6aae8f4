//! Byte-level BPE from a GGUF vocabulary and merge list (GGUF's `gpt2`
//! tokenizer model).
//!
//! What differs between byte-level BPE models is how text is cut into words
//! before merging: `tokenizer.ggml.pre` names a pre-tokenizer, and llama.cpp
//! (`llm_tokenizer_bpe`) maps each name to a list of regexes applied one after
//! the other, every regex cutting the pieces the previous one left, keeping
//! both the matches and the text between them (`Split(regex, Isolated)` in
//! `tokenizers` terms). Each word then becomes GPT-2 byte characters and goes
//! through the merges. The regexes below are llama.cpp's, which it adapted
//! from each model's tokenizer.json (case-insensitive groups spelled out, for
//! example); each family is checked against llama-tokenize in
//! `tests/goldens.rs`.
//!
//! The words are cut here rather than by a `tokenizers` pre-tokenizer
//! pipeline because that pipeline tracks offsets and alignments per byte,
//! which made encoding about four times slower; the ids are the same. The
//! merges are lucid's too, a rank table over token ids and a heap per word as
//! in llama.cpp: building the `tokenizers` crate's BPE model (a map from
//! owned strings, merge pairs as strings) was two thirds of loading SmolLM2.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fancy_regex::Regex;
use lucid_gguf::StringArray;

use crate::bytelevel;
use crate::error::TokenizerError;
use crate::vocab::Vocab;

/// GPT-2's word regex.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's word regex: numbers in groups of up to three, newlines kept with
/// the punctuation before them.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o's (also Llama 4's): words split before capitals, contractions kept.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken: GPT-4o's without contractions and with single digits.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// BLOOM's and Poro's: everything up to whitespace or sentence punctuation.
const PORO: &str = " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+";

/// DeepSeek's runs of CJK ideographs and Hangul.
const CJK_HANGUL: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";

/// How one family of models cuts text into words before BPE.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreTokenizer {
    /// Applied in order, each to the pieces the previous one left.
    pub regexes: &'static [&'static str],
    /// A word that is a token as a whole is taken without merging (Llama 3).
    pub ignore_merges: bool,
    /// Whether BOS is added when the metadata does not say.
    pub add_bos: bool,
}

impl PreTokenizer {
    const fn new(regexes: &'static [&'static str]) -> PreTokenizer {
        PreTokenizer {
            regexes,
            ignore_merges: false,
            add_bos: false,
        }
    }

    const fn llama3_style(regexes: &'static [&'static str]) -> PreTokenizer {
        PreTokenizer {
            regexes,
            ignore_merges: true,
            add_bos: true,
        }
    }

    /// The pre-tokenizer that `tokenizer.ggml.pre` names, as llama.cpp maps
    /// the names; a file without the key gets `default`, as in llama.cpp.
    /// Names whose llama.cpp splitter is not a plain regex list (kimi-k2,
    /// afmoe, superbpe, tiny_aya, gemma4, ...) are not here, and an unknown
    /// name is an error rather than a guess that would give wrong ids.
    pub fn for_name(name: &str) -> Option<PreTokenizer> {
        const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
        let pre = match name {
            "default" => PreTokenizer::new(DEFAULT),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => PreTokenizer::llama3_style(&[LLAMA3]),
            "dbrx" | "smaug-bpe" => PreTokenizer::new(&[LLAMA3]),
            "falcon" => PreTokenizer::new(&[
                r"[\p{P}\$\+<=>\^~\|`]+",
                r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
                "[0-9][0-9][0-9]",
            ]),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => PreTokenizer::new(&[r"\p{N}", GPT2]),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "trillion" | "granite-docling" | "exaone4" | "jina-v1-en" | "jina-v2-code"
            | "roberta-bpe" => PreTokenizer::new(&[GPT2]),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez"
            | "hunyuan" | "solar-open" | "grok-2" => PreTokenizer::new(&[QWEN2]),
            "poro-chat" | "bloom" | "gpt3-finnish" => PreTokenizer::new(&[PORO]),
            "viking" => PreTokenizer::new(&[PORO, r"\p{N}"]),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => {
                PreTokenizer::new(&[GPT4O])
            }
            "tekken" => PreTokenizer::llama3_style(&[TEKKEN]),
            // These ranges are written as escapes: an editor's Unicode
            // normalization would turn some of them around.
            "deepseek-llm" => PreTokenizer::new(&[
                "[\r\n]",
                "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
                "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
                r"\s+$",
                CJK_HANGUL,
                r"\p{N}+",
            ]),
            "deepseek-coder" => {
                PreTokenizer::new(&["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_HANGUL, r"\p{N}"])
            }
            "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => PreTokenizer::new(&[
                r"\p{N}{1,3}",
                "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
            ]),
            "seed-coder" => PreTokenizer::new(&[
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
            ]),
            _ => return None,
        };
        Some(pre)
    }
}

/// A byte-level BPE tokenizer: pre-tokenizer, byte mapping and merges.
#[derive(Debug)]
pub(crate) struct Bpe {
    /// The merge rules by the ids they join: `(left, right)` → (rank, id of
    /// the merged token). A lower rank merges first.
    merges: HashMap<(u32, u32), (u32, u32), foldhash::fast::RandomState>,
    /// The id of each byte's GPT-2 character, if the vocabulary has it.
    byte_ids: [Option<u32>; 256],
    ignore_merges: bool,
    regexes: Vec<Regex>,
    /// GPT-2's character for each byte.
    byte_chars: [char; 256],
}

impl Bpe {
    /// Builds the tokenizer from the vocabulary and the merge rules, one
    /// `"left right"` string per rule, highest priority first.
    pub fn new(
        vocab: &Vocab,
        merges: &StringArray,
        pre: PreTokenizer,
    ) -> Result<Bpe, TokenizerError> {
        let byte_chars = bytelevel::byte_chars();
        let mut byte_ids = [None; 256];
        let mut buf = [0u8; 4];
        for (id, c) in byte_ids.iter_mut().zip(byte_chars) {
            *id = vocab.id(c.encode_utf8(&mut buf));
        }
        // A seeded hash keeps a hostile file from making the table quadratic.
        let mut rules = HashMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut joined = String::new();
        for (index, line) in merges.iter().enumerate() {
            let bad = |e: fn(usize, String) -> TokenizerError| e(index, line.to_owned());
            // llama.cpp splits at the first space after the first byte, so a
            // rule may merge a token that starts with a space.
            let split = line
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i);
            let Some((left, right)) =
                split.and_then(|i| Some((line.get(..i)?, line.get(i + 1..)?)))
            else {
                return Err(bad(|index, line| TokenizerError::BadMerge { index, line }));
            };
            if left.is_empty() || right.is_empty() {
                return Err(bad(|index, line| TokenizerError::BadMerge { index, line }));
            }
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let (Some(l), Some(r), Some(merged)) =
                (vocab.id(left), vocab.id(right), vocab.id(&joined))
            else {
                return Err(bad(|index, line| TokenizerError::MergeNotInVocab {
                    index,
                    line,
                }));
            };
            // The first rule for a pair counts, as in llama.cpp.
            rules.entry((l, r)).or_insert((index as u32, merged));
        }
        let regexes = pre
            .regexes
            .iter()
            .map(|r| {
                Regex::new(r)
                    .map_err(|e| TokenizerError::Backend(format!("pre-tokenizer regex {r:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Bpe {
            merges: rules,
            byte_ids,
            ignore_merges: pre.ignore_merges,
            regexes,
            byte_chars,
        })
    }

    /// Cuts `text` into words: each regex cuts every piece the previous one
    /// left into its matches and the text between them.
    fn words<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, TokenizerError> {
        let mut pieces = vec![text];
        for regex in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                let mut last = 0;
                for m in regex.find_iter(piece) {
                    let m = m.map_err(|e| TokenizerError::Backend(e.to_string()))?;
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        Ok(pieces)
    }

    /// Appends the tokens of `text` (no special tokens in it) to `out`.
    pub fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        let mut mapped = String::new();
        let mut word = Word::default();
        for piece in self.words(text)? {
            if self.ignore_merges {
                mapped.clear();
                mapped.extend(piece.bytes().map(|b| self.byte_chars[usize::from(b)]));
                if let Some(id) = vocab.id(&mapped) {
                    out.push(id);
                    continue;
                }
            }
            // A byte whose character is not in the vocabulary has no token
            // and is left out, as the `tokenizers` crate's BPE does.
            word.reset(piece.bytes().filter_map(|b| self.byte_ids[usize::from(b)]));
            word.merge_all(&self.merges);
            out.extend(word.tokens());
        }
        Ok(())
    }
}

/// One word during merging: its symbols as a linked list over the byte
/// positions they started at, and the candidate merges by rank.
#[derive(Default)]
struct Word {
    /// Per starting position: the symbol's id, or `None` once it merged into
    /// the symbol on its left.
    ids: Vec<Option<u32>>,
    /// Per position: the position of the next live symbol.
    next: Vec<usize>,
    /// Per position: the position of the previous live symbol.
    prev: Vec<usize>,
    /// Candidate merges: (rank, left position, right position), lowest rank
    /// first and, among equal ranks, leftmost first.
    heap: BinaryHeap<Reverse<(u32, usize, usize)>>,
}

impl Word {
    const NONE: usize = usize::MAX;

    fn reset(&mut self, ids: impl Iterator<Item = u32>) {
        self.ids.clear();
        self.ids.extend(ids.map(Some));
        let n = self.ids.len();
        self.next.clear();
        self.next
            .extend((1..=n).map(|i| if i == n { Self::NONE } else { i }));
        self.prev.clear();
        self.prev
            .extend((0..n).map(|i| i.checked_sub(1).unwrap_or(Self::NONE)));
        self.heap.clear();
    }

    /// The merge of the symbols at `left` and `right`, if a rule joins them.
    fn candidate(
        &self,
        merges: &HashMap<(u32, u32), (u32, u32), foldhash::fast::RandomState>,
        left: usize,
        right: usize,
    ) -> Option<(u32, u32)> {
        let (l, r) = (
            self.ids.get(left).copied()??,
            self.ids.get(right).copied()??,
        );
        merges.get(&(l, r)).copied()
    }

    fn push(
        &mut self,
        merges: &HashMap<(u32, u32), (u32, u32), foldhash::fast::RandomState>,
        left: usize,
        right: usize,
    ) {
        if let Some((rank, _)) = self.candidate(merges, left, right) {
            self.heap.push(Reverse((rank, left, right)));
        }
    }

    /// Applies merges, lowest rank first, until no rule joins two neighbours.
    fn merge_all(&mut self, merges: &HashMap<(u32, u32), (u32, u32), foldhash::fast::RandomState>) {
        for i in 1..self.ids.len() {
            self.push(merges, i - 1, i);
        }
        while let Some(Reverse((rank, left, right))) = self.heap.pop() {
            // A stale entry: one side merged away, or changed since.
            if self.next.get(left) != Some(&right) {
                continue;
            }
            let Some((now, merged)) = self.candidate(merges, left, right) else {
                continue;
            };
            if now != rank {
                continue;
            }
            self.ids[left] = Some(merged);
            self.ids[right] = None;
            let after = self.next[right];
            self.next[left] = after;
            if after != Self::NONE {
                self.prev[after] = left;
                self.push(merges, left, after);
            }
            let before = self.prev[left];
            if before != Self::NONE {
                self.push(merges, before, left);
            }
        }
    }

    /// The ids of the live symbols, in order.
    fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids.iter().filter_map(|&id| id)
    }
}
