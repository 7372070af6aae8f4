//! Speculative decoding: guess the next few tokens cheaply, then let the
//! model check all of them in one forward pass.
//!
//! A decode step reads every weight of the model for one token; a pass over
//! a handful of tokens reads them once too, so checking several guesses costs
//! little more than producing one token. The model's logits at each guessed
//! position choose the token that really comes next there, exactly as a step
//! of its own would: a guess is kept while it equals that choice, and the
//! first choice that differs is kept instead of the guess. The text is
//! therefore the model's own whatever the guesses were; good guesses only
//! make it arrive sooner.
//!
//! Sampling is unchanged as well. Each kept token is drawn by the sequence's
//! sampler from the model's logits at its position, with the same history,
//! one draw per token, as without drafting; a guess survives only when the
//! draw equals it. For a guess that is a single token this is the
//! speculative-sampling rule itself (keep it with the probability the target
//! gives it, otherwise draw from the rest), so the tokens are distributed as
//! the target's.
//!
//! Guesses come from [`PromptLookup`]: the tokens that followed the latest
//! earlier occurrence of the sequence's last few tokens. When an answer
//! repeats what its prompt holds (editing code, quoting a document,
//! extracting fields), many guesses are right.

/// How a generation drafts tokens ahead of the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drafting {
    /// One token per forward pass.
    #[default]
    Off,
    /// Guesses copied from earlier in the sequence.
    PromptLookup(PromptLookup),
}

impl Drafting {
    /// The pace a sequence starts drafting at (never drafting when off).
    pub fn pace(self) -> DraftPace {
        DraftPace::new(match self {
            Drafting::Off => 0,
            Drafting::PromptLookup(lookup) => lookup.max_draft,
        })
    }
}

/// Drafts by prompt lookup: find the sequence's last `n` tokens earlier in
/// it (the longest `n` from `max_ngram` down to `min_ngram` that occurs) and
/// guess that what followed them then follows them now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptLookup {
    /// The longest run of last tokens looked up.
    pub max_ngram: usize,
    /// The shortest run of last tokens that counts as a match.
    pub min_ngram: usize,
    /// The most tokens guessed at once.
    pub max_draft: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        PromptLookup {
            max_ngram: 4,
            min_ngram: 2,
            max_draft: 6,
        }
    }
}

impl PromptLookup {
    /// Writes into `out` (emptied first) at most `max` guesses at the tokens
    /// after `tokens`. Leaves it empty when the last tokens occur nowhere
    /// earlier.
    pub fn draft(&self, tokens: &[u32], max: usize, out: &mut Vec<u32>) {
        out.clear();
        let max = max.min(self.max_draft);
        if max == 0 {
            return;
        }
        let len = tokens.len();
        for n in (self.min_ngram.max(1)..=self.max_ngram).rev() {
            if n >= len {
                continue;
            }
            let tail = &tokens[len - n..];
            // The latest earlier occurrence (one starting before `len - n`
            // has a token after it).
            let found = (0..len - n).rev().find(|&i| &tokens[i..i + n] == tail);
            if let Some(i) = found {
                let after = &tokens[i + n..];
                out.extend_from_slice(&after[..after.len().min(max)]);
                return;
            }
        }
    }
}

/// How much to guess next, from how the last guesses fared.
///
/// A pass over `k` guesses costs more than a step of one token (a fifth more
/// for one guess on SmolLM2, twice as much for ten), so guesses that keep
/// failing would make generation slower than without them. Like the
/// assistant-length rule of `transformers`' assisted generation, the
/// allowance grows by two after a pass whose guesses were all kept and
/// shrinks by one after one that kept some. A pass that kept none halves it
/// and also pauses drafting for a few steps, twice as many after each such
/// pass in a row (up to [`DraftPace::MAX_PAUSE`]): where guesses rarely hold
/// (free-form text, sampling), drafting is tried seldom and costs little.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftPace {
    most: usize,
    allowance: usize,
    pause: usize,
    waiting: usize,
}

impl DraftPace {
    /// The longest pause, in decode steps, after passes that kept nothing.
    pub const MAX_PAUSE: usize = 32;

    /// Starts by allowing `most` guesses, which it never exceeds.
    pub fn new(most: usize) -> DraftPace {
        DraftPace {
            most,
            allowance: most,
            pause: 0,
            waiting: 0,
        }
    }

    /// How many tokens the next decode step may guess (0 while paused); each
    /// call is one step.
    pub fn next_allowance(&mut self) -> usize {
        if self.waiting > 0 {
            self.waiting -= 1;
            return 0;
        }
        self.allowance
    }

    /// Records that a pass checked `drafted` guesses and kept `kept`.
    pub fn record(&mut self, drafted: usize, kept: usize) {
        if drafted == 0 {
            return;
        }
        if kept == drafted {
            self.allowance = (self.allowance + 2).min(self.most);
            self.pause = 0;
        } else if kept == 0 {
            self.allowance = (self.allowance / 2).max(1);
            self.pause = (self.pause * 2).clamp(1, Self::MAX_PAUSE);
            self.waiting = self.pause;
        } else {
            self.allowance = self.allowance.saturating_sub(1).max(1);
            self.pause = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(lookup: PromptLookup, tokens: &[u32], max: usize) -> Vec<u32> {
        let mut out = vec![99];
        lookup.draft(tokens, max, &mut out);
        out
    }

    #[test]
    fn the_latest_longest_match_is_continued() {
        let lookup = PromptLookup {
            max_ngram: 3,
            min_ngram: 1,
            max_draft: 4,
        };
        // "1 2 3" occurs at 0 (then 4 5) and at 5 (then 9); the latest wins.
        let tokens = [1, 2, 3, 4, 5, 1, 2, 3, 9, 7, 1, 2, 3];
        assert_eq!(draft(lookup, &tokens, 10), vec![9, 7, 1, 2]);
        assert_eq!(draft(lookup, &tokens, 2), vec![9, 7]);
        // Only "3" matches as a single token: its latest earlier occurrence is at 1.
        let tokens = [5, 3, 8, 6, 4, 3];
        assert_eq!(draft(lookup, &tokens, 10), vec![8, 6, 4, 3]);
        // A longer match beats a later shorter one.
        let tokens = [1, 2, 7, 0, 2, 8, 1, 2];
        assert_eq!(draft(lookup, &tokens, 10), vec![7, 0, 2, 8]);
    }

    #[test]
    fn a_match_may_overlap_the_tail() {
        let lookup = PromptLookup {
            max_ngram: 2,
            min_ngram: 2,
            max_draft: 8,
        };
        // A run of one token: the draft continues it with what is known.
        assert_eq!(draft(lookup, &[4, 4, 4, 4], 8), vec![4]);
        assert_eq!(draft(lookup, &[1, 2, 1, 2, 1, 2], 8), vec![1, 2]);
    }

    #[test]
    fn the_pace_follows_the_guesses() {
        let mut pace = DraftPace::new(8);
        assert_eq!(pace.next_allowance(), 8);
        // Some kept: one fewer; all kept: two more, up to the most.
        pace.record(8, 3);
        assert_eq!(pace.next_allowance(), 7);
        pace.record(7, 7);
        assert_eq!(pace.next_allowance(), 8);
        // None kept: half as many, after a pause that doubles while
        // nothing is kept.
        pace.record(8, 0);
        assert_eq!(pace.next_allowance(), 0);
        assert_eq!(pace.next_allowance(), 4);
        pace.record(4, 0);
        assert_eq!((0..2).map(|_| pace.next_allowance()).sum::<usize>(), 0);
        assert_eq!(pace.next_allowance(), 2);
        for _ in 0..10 {
            pace.record(1, 0);
            while pace.next_allowance() == 0 {}
        }
        assert_eq!(pace.pause, DraftPace::MAX_PAUSE);
        assert_eq!(pace.next_allowance(), 1);
        // A kept guess ends the pauses.
        pace.record(1, 1);
        assert_eq!(pace.next_allowance(), 3);
        pace.record(3, 0);
        assert_eq!(pace.next_allowance(), 0);
        assert_eq!(pace.next_allowance(), 1);
        // A pass that drafted nothing changes nothing.
        pace.record(0, 0);
        assert_eq!(pace.next_allowance(), 1);
    }

    #[test]
    fn no_match_no_draft() {
        let lookup = PromptLookup::default();
        assert!(draft(lookup, &[1, 2, 3, 4, 5], 10).is_empty());
        assert!(draft(lookup, &[], 10).is_empty());
        assert!(draft(lookup, &[1, 2, 1, 2], 0).is_empty());
        // Shorter than the shortest n-gram.
        let single = PromptLookup {
            min_ngram: 3,
            ..lookup
        };
        assert!(draft(single, &[1, 2, 1, 2], 10).is_empty());
    }
}
