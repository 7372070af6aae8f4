//! Stop strings in streamed text: text that might be the start of a stop
//! string is held back until it is clear that it is not.
//!
//! The engine's `Session` has the same logic privately; the scheduler keeps
//! its own copy so that the engine's single-sequence API need not grow a
//! public type for it.

#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    /// All text accepted so far.
    text: String,
    /// How much of `text` has been released.
    released: usize,
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            released: 0,
        }
    }

    /// Adds `piece`; returns the text now safe to show and whether a stop
    /// string was found (the text is then cut before it).
    pub(crate) fn push(&mut self, piece: &str) -> (String, bool) {
        let search_from = self.released;
        self.text.push_str(piece);
        if self.stops.is_empty() {
            let out = self.text[self.released..].to_string();
            self.released = self.text.len();
            return (out, false);
        }
        // The earliest match wins, whichever stop string it is.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text[search_from..].find(s.as_str()))
            .min();
        if let Some(i) = hit {
            self.text.truncate(search_from + i);
            let out = self.text[self.released..].to_string();
            self.released = self.text.len();
            return (out, true);
        }
        // Hold back the longest suffix that is a proper prefix of a stop string.
        let mut keep = 0;
        let pending = &self.text[self.released..];
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > keep && pending.ends_with(&s[..i]) {
                    keep = i;
                }
            }
        }
        let safe = self.text.len() - keep;
        let out = self.text[self.released..safe].to_string();
        self.released = safe;
        (out, false)
    }

    /// Releases whatever was held back.
    pub(crate) fn flush(&mut self) -> String {
        let out = self.text[self.released..].to_string();
        self.released = self.text.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_are_cut_and_prefixes_held_back() {
        let mut m = StopMatcher::new(vec!["\nUser:".into(), "END".into()]);
        assert_eq!(m.push("Hello"), ("Hello".into(), false));
        assert_eq!(m.push(" there\nUs"), (" there".into(), false));
        assert_eq!(m.push("ual"), ("\nUsual".into(), false));
        assert_eq!(m.push(" EN"), (" ".into(), false));
        assert_eq!(m.push("D more"), (String::new(), true));
    }

    #[test]
    fn held_back_text_is_released_at_the_end() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ST"), (String::new(), false));
        assert_eq!(m.flush(), "ST");
    }
}
