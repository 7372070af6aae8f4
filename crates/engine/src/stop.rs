//! Stop strings: generation ends before the first occurrence of any of
//! them, and streamed text never shows a piece of one.

/// Finds stop strings in streamed text, holding back what might be the start
/// of one.
#[derive(Debug)]
pub struct StopMatcher<'a> {
    stops: &'a [String],
    /// All text accepted so far.
    text: String,
    /// How much of `text` has been released.
    released: usize,
}

impl<'a> StopMatcher<'a> {
    pub fn new(stops: &'a [String]) -> Self {
        StopMatcher {
            stops,
            text: String::new(),
            released: 0,
        }
    }

    /// Adds `piece`; returns the text now safe to show and whether a stop
    /// string was found (the text is then cut before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        let search_from = self.released;
        self.text.push_str(piece);
        for s in self.stops.iter().filter(|s| !s.is_empty()) {
            // A match may start in text already held back, never in released text.
            if let Some(i) = self.text[search_from..].find(s.as_str()) {
                self.text.truncate(search_from + i);
                let out = self.text[self.released..].to_string();
                self.released = self.text.len();
                return (out, true);
            }
        }
        // Hold back the longest suffix that is a prefix of a stop string.
        let mut keep = 0;
        for s in self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > keep && self.text[self.released..].ends_with(&s[..i]) {
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

    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_cut_and_prefixes_held_back() {
        let stops = vec!["\nUser:".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.push(" there\nUs"), (" there".to_string(), false));
        assert_eq!(m.push("er: hi"), (String::new(), true));
        assert_eq!(m.into_text(), "Hello there");
    }

    #[test]
    fn a_held_back_prefix_that_does_not_complete_is_released() {
        let stops = vec!["STOP".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("ST"), (String::new(), false));
        assert_eq!(m.push("AY"), ("STAY".to_string(), false));
        assert_eq!(m.push("S"), (String::new(), false));
        assert_eq!(m.flush(), "S");
        assert_eq!(m.into_text(), "STAYS");
    }
}
