//! Stop strings: generation ends before the first occurrence of any of
//! them, and streamed text never shows a piece of one.

/// Finds stop strings in streamed text, holding back what might be the start
/// of one until it is clear that it is not.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// All text accepted so far.
    text: String,
    /// How much of `text` has been released.
    released: usize,
    /// Which stop string was found, once one was.
    matched: Option<usize>,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings are ignored.
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            released: 0,
            matched: None,
        }
    }

    /// Adds `piece`; returns the text now safe to show and whether a stop
    /// string was found (the text is then cut before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        // A match may start in text still held back, never in released text.
        let search_from = self.released;
        self.text.push_str(piece);
        // The earliest match wins, whichever stop string it is.
        let hit = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(k, s)| self.text[search_from..].find(s.as_str()).map(|i| (i, k)))
            .min();
        if let Some((i, k)) = hit {
            self.matched = Some(k);
            self.text.truncate(search_from + i);
            return (self.flush(), true);
        }
        // Hold back the longest suffix that is a proper prefix of a stop string.
        let pending = &self.text[self.released..];
        let mut keep = 0;
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
    pub fn flush(&mut self) -> String {
        let out = self.text[self.released..].to_string();
        self.released = self.text.len();
        out
    }

    /// The stop string that was found, if one was.
    pub fn matched(&self) -> Option<&str> {
        self.matched.map(|k| self.stops[k].as_str())
    }

    /// All accepted text, cut before a stop string if one was found.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_cut_and_prefixes_held_back() {
        let mut m = StopMatcher::new(["\nUser:".to_string(), "END".to_string()]);
        assert_eq!(m.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.push(" there\nUs"), (" there".to_string(), false));
        assert_eq!(m.push("ual"), ("\nUsual".to_string(), false));
        assert_eq!(m.push(" EN"), (" ".to_string(), false));
        assert_eq!(m.matched(), None);
        assert_eq!(m.push("D more"), (String::new(), true));
        assert_eq!(m.matched(), Some("END"));
        assert_eq!(m.into_text(), "Hello there\nUsual ");
    }

    #[test]
    fn a_held_back_prefix_that_does_not_complete_is_released() {
        let mut m = StopMatcher::new(["STOP".to_string()]);
        assert_eq!(m.push("ST"), (String::new(), false));
        assert_eq!(m.push("AY"), ("STAY".to_string(), false));
        assert_eq!(m.push("S"), (String::new(), false));
        assert_eq!(m.flush(), "S");
        assert_eq!(m.into_text(), "STAYS");
    }

    // Regression: the stop string listed first used to win even when another
    // one occurred earlier in the text.
    #[test]
    fn the_earliest_match_wins_whatever_the_order_of_the_stops() {
        let mut m = StopMatcher::new(["B".to_string(), "A".to_string()]);
        assert_eq!(m.push("xxAyyB"), ("xx".to_string(), true));
        assert_eq!(m.matched(), Some("A"));
    }
}
