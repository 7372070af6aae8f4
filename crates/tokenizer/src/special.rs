//! Splitting text around special tokens written in it, before the text
//! between them goes to the tokenizer model.
//!
//! llama.cpp (`tokenizer_st_partition`) takes the special tokens one at a
//! time, longest text first, and cuts every still-unclaimed stretch of text at
//! each occurrence of that token, leftmost first. The order matters: in
//! `"wxyz"` with tokens `"xyz"` and `"wx"`, the longer one wins although the
//! shorter one starts earlier. Doing that literally costs one scan of the text
//! per special token, and Gemma 3 has over 6,400 of them, so lucid finds every
//! occurrence of every token in one Aho-Corasick pass and then replays
//! llama.cpp's order over those occurrences: by token rank, then by start, an
//! occurrence is taken when none of its bytes is taken yet. That is the same
//! result, because a stretch of unclaimed text in llama.cpp's fragment list is
//! exactly a run of bytes no earlier occurrence took.
//!
//! Control and unknown tokens are matched only when the caller asks to parse
//! special tokens; user-defined tokens always are, as in llama.cpp and
//! Hugging Face (a tokenizer that adds `"\n\n"` as a token wants it whole).

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::TokenizerError;
use crate::vocab::Vocab;

/// A piece of the input: text for the tokenizer model, or a token found whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// The special tokens of one vocabulary, ready to find in text.
#[derive(Debug)]
pub(crate) struct SpecialMatcher {
    /// `None` when the vocabulary has no special tokens.
    automaton: Option<AhoCorasick>,
    /// Per automaton pattern: its token id and its rank (position in
    /// llama.cpp's longest-first order).
    patterns: Vec<(u32, u32)>,
    /// Per pattern: whether it is matched also when special tokens are not
    /// parsed (a user-defined token).
    always: Vec<bool>,
}

impl SpecialMatcher {
    pub fn new(vocab: &Vocab) -> Result<SpecialMatcher, TokenizerError> {
        let ordered = vocab.special_tokens();
        let mut texts = Vec::with_capacity(ordered.len());
        let mut patterns = Vec::with_capacity(ordered.len());
        let mut always = Vec::with_capacity(ordered.len());
        for (rank, &id) in ordered.iter().enumerate() {
            let attr = vocab.attr(id);
            texts.push(vocab.text(id).unwrap_or_default());
            patterns.push((id, rank as u32));
            always.push(!attr.is_hidden());
        }
        let automaton = if texts.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&texts)
                    .map_err(|e| TokenizerError::Backend(e.to_string()))?,
            )
        };
        Ok(SpecialMatcher {
            automaton,
            patterns,
            always,
        })
    }

    /// Cuts `text` into fragments. An empty text gives no fragments.
    pub fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        if text.is_empty() {
            return Vec::new();
        }
        let Some(automaton) = &self.automaton else {
            return vec![Fragment::Text(text)];
        };
        // Start offsets of every occurrence that may be taken, by rank. The
        // automaton reports matches by end offset, which for one pattern is
        // start order, so each list is sorted already.
        let mut by_rank: HashMap<u32, (u32, usize, Vec<usize>)> = HashMap::new();
        for m in automaton.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            let (Some(&(id, rank)), Some(&always)) = (self.patterns.get(p), self.always.get(p))
            else {
                continue;
            };
            if parse_special || always {
                by_rank
                    .entry(rank)
                    .or_insert_with(|| (id, m.len(), Vec::new()))
                    .2
                    .push(m.start());
            }
        }
        if by_rank.is_empty() {
            return vec![Fragment::Text(text)];
        }
        let mut ranks: Vec<u32> = by_rank.keys().copied().collect();
        ranks.sort_unstable();

        // Which bytes are taken, and the taken spans as (start, end, id). A
        // span is at most as long as the longest special token, so checking
        // its bytes one by one stays linear in the text.
        let mut is_taken = vec![false; text.len()];
        let mut taken: Vec<(usize, usize, u32)> = Vec::new();
        for rank in ranks {
            let Some((id, len, starts)) = by_rank.get(&rank) else {
                continue;
            };
            for &start in starts {
                let Some(span) = is_taken.get_mut(start..start + len) else {
                    continue;
                };
                if span.iter().all(|&t| !t) {
                    span.fill(true);
                    taken.push((start, start + len, *id));
                }
            }
        }
        taken.sort_unstable();

        let mut out = Vec::with_capacity(2 * taken.len() + 1);
        let mut pos = 0;
        for (start, end, id) in taken {
            if start > pos
                && let Some(t) = text.get(pos..start)
            {
                out.push(Fragment::Text(t));
            }
            out.push(Fragment::Token(id));
            pos = end;
        }
        if pos < text.len()
            && let Some(t) = text.get(pos..)
        {
            out.push(Fragment::Text(t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Attr;

    fn matcher(tokens: &[(&str, Attr)]) -> SpecialMatcher {
        let texts = tokens.iter().map(|(t, _)| t.to_string()).collect();
        let attrs = tokens.iter().map(|&(_, a)| a).collect();
        let vocab = Vocab::new(texts, Vec::new(), attrs).expect("vocab");
        SpecialMatcher::new(&vocab).expect("matcher")
    }

    use Fragment::{Text, Token};

    #[test]
    fn longer_tokens_win_even_when_they_start_later() {
        let m = matcher(&[("wx", Attr::CONTROL), ("xyz", Attr::CONTROL)]);
        assert_eq!(m.partition("wxyz", true), [Text("w"), Token(1)]);
        assert_eq!(m.partition("wxwxyz", true), [Token(0), Text("w"), Token(1)]);
    }

    #[test]
    fn occurrences_of_one_token_do_not_overlap() {
        let m = matcher(&[("aa", Attr::USER_DEFINED), ("aaa", Attr::USER_DEFINED)]);
        assert_eq!(
            m.partition("aaaaaaa", false),
            [Token(1), Token(1), Text("a")]
        );
        assert_eq!(m.partition("aaaa", false), [Token(1), Text("a")]);
        assert_eq!(m.partition("aa", false), [Token(0)]);
    }

    #[test]
    fn control_tokens_only_when_parsing_special() {
        let m = matcher(&[
            ("<c>", Attr::CONTROL),
            ("<u>", Attr::USER_DEFINED),
            ("<n>", Attr::NORMAL),
        ]);
        assert_eq!(
            m.partition("x<c>y<u><n>", true),
            [Text("x"), Token(0), Text("y"), Token(1), Text("<n>")]
        );
        assert_eq!(
            m.partition("x<c>y<u><n>", false),
            [Text("x<c>y"), Token(1), Text("<n>")]
        );
        assert_eq!(m.partition("", true), []);
    }
}
