//! Decoding one token at a time, for streaming generated text.
//!
//! A token can end in the middle of a UTF-8 character (byte tokens, GPT-2
//! byte characters, a split emoji), so the decoder holds back an incomplete
//! sequence at the end until the bytes that finish it arrive. Everything it
//! yields, joined, is exactly [`Tokenizer::decode`] of the same ids: bytes
//! that can never become valid UTF-8 become U+FFFD as soon as that is known,
//! with the same rule as `String::from_utf8_lossy`.

use crate::{DecodeState, Tokenizer};

/// Turns ids into text as they come.
///
/// A token can end in the middle of a UTF-8 character, so the decoder holds
/// back an incomplete sequence until the bytes that finish it arrive. The
/// pieces it returns, joined with [`finish`](StreamDecoder::finish)'s, are
/// exactly [`Tokenizer::decode`] of the same ids.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    state: DecodeState,
    /// Bytes not yet returned: an incomplete UTF-8 sequence at most.
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// `skip_special` as in [`Tokenizer::decode`].
    pub fn new(tokenizer: &'a Tokenizer, skip_special: bool) -> StreamDecoder<'a> {
        StreamDecoder {
            tokenizer,
            skip_special,
            state: DecodeState::new(),
            pending: Vec::new(),
        }
    }

    /// Adds one id and returns the text it completes, which may be empty.
    pub fn push(&mut self, id: u32) -> String {
        self.tokenizer
            .decode_into(id, self.skip_special, &mut self.state, &mut self.pending);
        take_complete(&mut self.pending)
    }

    /// Returns what is held back, an incomplete character as U+FFFD, and
    /// starts afresh.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.state = DecodeState::new();
        rest
    }
}

/// Removes and returns the longest prefix of `pending` whose text is settled,
/// leaving only an incomplete (but possibly valid) sequence at the end.
fn take_complete(pending: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while let Some(rest) = pending.get(pos..) {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                pos = pending.len();
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&rest[..valid]));
                pos += valid;
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        pos += bad;
                    }
                    None => break,
                }
            }
        }
    }
    pending.drain(..pos.min(pending.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::take_complete;

    /// Feeds `bytes` in chunks of `step` and checks the joined output equals
    /// the lossy decoding of the whole.
    fn check(bytes: &[u8], step: usize) {
        let mut pending = Vec::new();
        let mut out = String::new();
        for chunk in bytes.chunks(step) {
            pending.extend_from_slice(chunk);
            out.push_str(&take_complete(&mut pending));
            assert!(
                pending.len() < 4,
                "holds back at most an incomplete character"
            );
        }
        out.push_str(&String::from_utf8_lossy(&pending));
        assert_eq!(out, String::from_utf8_lossy(bytes), "step {step}");
    }

    #[test]
    fn chunked_equals_whole() {
        let cases: &[&[u8]] = &[
            "héllo 世界 👩‍👩‍👧".as_bytes(),
            b"\xF0\x9F\x98",
            b"a\xFFb\xE4\xB8c",
            b"\xE4\xB8\xE4\xB8\x96",
            b"\xC0\x80\xED\xA0\x80 ok",
        ];
        for bytes in cases {
            for step in 1..=5 {
                check(bytes, step);
            }
        }
    }
}
