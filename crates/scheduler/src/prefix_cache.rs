//! Prompt-prefix reuse across requests: the KV caches of finished sequences,
//! kept in a small LRU keyed by the tokens they hold.
//!
//! Requests to one model usually share a prefix (the chat template's system
//! prompt, a few-shot preamble, the conversation so far in a multi-turn
//! chat). A new sequence starts from the entry with the longest common
//! prefix: the entry is moved when the prompt extends all of it (the old
//! sequence is over, nobody else needs it), and copied and truncated when
//! only part of it matches. The bytes held count against the scheduler's
//! KV-cache budget, and entries are evicted, least recently used first, when
//! an admission needs the room.

use lucid_engine::KvCache;

#[derive(Debug)]
struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

#[derive(Debug)]
pub(crate) struct PrefixCache {
    entries: Vec<Entry>,
    max_entries: usize,
    /// Shorter matches are not worth a copy.
    min_reuse: usize,
    clock: u64,
}

impl PrefixCache {
    pub(crate) fn new(max_entries: usize, min_reuse: usize) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            max_entries,
            min_reuse: min_reuse.max(1),
            clock: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.cache.memory_bytes()).sum()
    }

    /// A cache holding the longest prefix of `prompt` that an entry has, at
    /// most `max_reuse` tokens, and its length; `None` when no entry shares
    /// at least `min_reuse` tokens.
    pub(crate) fn take_for(
        &mut self,
        prompt: &[u32],
        max_reuse: usize,
    ) -> Option<(KvCache, usize)> {
        let (best, common) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let n = e
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, n.min(max_reuse))
            })
            .max_by_key(|&(_, n)| n)?;
        if common < self.min_reuse {
            return None;
        }
        self.clock += 1;
        let entry_len = self.entries[best].tokens.len();
        let mut cache = if common == entry_len {
            // The prompt extends the whole entry: take it.
            self.entries.swap_remove(best).cache
        } else {
            self.entries[best].last_used = self.clock;
            self.entries[best].cache.clone()
        };
        cache.truncate(common);
        Some((cache, common))
    }

    /// Keeps a finished sequence's cache, holding `tokens`. An entry that is a
    /// prefix of the new one is dropped; the new one is dropped if an entry
    /// already covers it.
    pub(crate) fn insert(&mut self, tokens: Vec<u32>, cache: KvCache) {
        if self.max_entries == 0 || tokens.len() < self.min_reuse {
            return;
        }
        self.clock += 1;
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.tokens.starts_with(&tokens))
        {
            e.last_used = self.clock;
            return;
        }
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        self.entries.push(Entry {
            tokens,
            cache,
            last_used: self.clock,
        });
        while self.entries.len() > self.max_entries {
            self.evict_lru();
        }
    }

    /// Drops the least recently used entry; returns the bytes freed, or
    /// `None` when empty.
    pub(crate) fn evict_lru(&mut self) -> Option<usize> {
        let (i, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)?;
        Some(self.entries.swap_remove(i).cache.memory_bytes())
    }
}
