//! Server-sent events, as the WHATWG HTML standard defines the
//! `text/event-stream` format, decoded incrementally from network chunks.
//!
//! All three vendors stream over SSE but frame it differently (OpenAI ends
//! with `data: [DONE]`, Anthropic names every event, Gemini just closes the
//! connection), so this module only turns bytes into [`SseEvent`]s; each
//! vendor module maps events to [`ChatEvent`]s with an `EventMapper`.
//! Chunks may split a line, a CRLF pair or a UTF-8 character anywhere, which
//! is why the decoder keeps bytes until a whole line has arrived.

use std::collections::VecDeque;

use futures::StreamExt;

use crate::http::BodyReader;
use crate::{ChatEvent, ChatStream, ProviderError};

/// The longest line the decoder will hold before giving up on the stream,
/// so that a server that never sends a newline cannot exhaust memory.
const MAX_LINE: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the event had one (the standard's default type
    /// is `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` field seen, if any.
    pub id: Option<String>,
}

/// The event stream broke the decoder's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE line is longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// An incremental `text/event-stream` decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// A line ended with `\r`; a `\n` at the start of the next chunk belongs to it.
    skip_lf: bool,
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        SseDecoder::default()
    }

    /// Feeds the next chunk and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut out = Vec::new();
        let mut chunk = chunk;
        if self.skip_lf && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            if b == b'\n' || b == b'\r' {
                if self.buf.is_empty() {
                    self.line(&chunk[start..i], &mut out);
                } else {
                    self.buf.extend_from_slice(&chunk[start..i]);
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, &mut out);
                }
                if b == b'\r' {
                    if i + 1 < chunk.len() {
                        if chunk[i + 1] == b'\n' {
                            i += 1;
                        }
                    } else {
                        self.skip_lf = true;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        self.buf.extend_from_slice(&chunk[start..]);
        if self.buf.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(out)
    }

    /// Whether bytes of an unfinished line or event are pending; at the end
    /// of the stream they are discarded, as the standard says.
    pub fn has_partial_event(&self) -> bool {
        !self.buf.is_empty() || self.has_data
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<SseEvent>) {
        let mut raw = raw;
        if !self.started {
            self.started = true;
            raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
        }
        if raw.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(SseEvent {
                    event: self.event.take(),
                    data,
                    id: self.id.clone(),
                });
                self.has_data = false;
            } else {
                self.event = None;
            }
            return;
        }
        if raw[0] == b':' {
            return; // A comment: keep-alive padding.
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields are ignored, as the standard says.
        }
    }
}

/// What a vendor module does with decoded events.
pub(crate) trait EventMapper: Send + 'static {
    /// Handles one event, pushing any chat events it yields onto `out`.
    /// Returns `true` when the answer is complete and no more events are needed.
    fn on_event(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, ProviderError>;

    /// The body ended before [`on_event`](EventMapper::on_event) said the
    /// answer was complete; either finish it or explain why it is truncated.
    fn on_eof(&mut self, out: &mut VecDeque<ChatEvent>) -> Result<(), ProviderError>;
}

struct State<M> {
    body: BodyReader,
    decoder: SseDecoder,
    mapper: M,
    ready: VecDeque<ChatEvent>,
    /// An error to yield once `ready` is drained.
    failed: Option<ProviderError>,
    done: bool,
}

/// Turns an SSE response body into a [`ChatStream`] through `mapper`. The
/// body (and with it the connection) is dropped as soon as the answer is
/// complete, an error is yielded, or the stream itself is dropped.
pub(crate) fn chat_stream<M: EventMapper>(body: BodyReader, mapper: M) -> ChatStream {
    let state = State {
        body,
        decoder: SseDecoder::new(),
        mapper,
        ready: VecDeque::new(),
        failed: None,
        done: false,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            if let Some(event) = st.ready.pop_front() {
                return Some((Ok(event), Some(st)));
            }
            if let Some(err) = st.failed.take() {
                return Some((Err(err.redact(st.body.secret())), None));
            }
            if st.done {
                return None;
            }
            match st.body.chunk().await {
                Ok(Some(bytes)) => {
                    tracing::trace!(bytes = bytes.len(), "stream chunk");
                    let events = match st.decoder.feed(&bytes) {
                        Ok(events) => events,
                        Err(e) => {
                            st.failed =
                                Some(ProviderError::protocol(st.body.provider(), e.to_string()));
                            continue;
                        }
                    };
                    for event in events {
                        match st.mapper.on_event(event, &mut st.ready) {
                            Ok(false) => {}
                            Ok(true) => {
                                st.done = true;
                                break;
                            }
                            Err(e) => {
                                st.failed = Some(e);
                                break;
                            }
                        }
                    }
                }
                Ok(None) => {
                    if let Err(e) = st.mapper.on_eof(&mut st.ready) {
                        st.failed = Some(e);
                    }
                    st.done = true;
                }
                Err(e) => st.failed = Some(e),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    /// Feeds `input` split at every possible pair of points, and checks that
    /// the events are always the same.
    fn check(input: &str, expect: &[SseEvent]) {
        let bytes = input.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut d = SseDecoder::new();
                let mut got = d.feed(&bytes[..i]).unwrap();
                got.extend(d.feed(&bytes[i..j]).unwrap());
                got.extend(d.feed(&bytes[j..]).unwrap());
                assert_eq!(got, expect, "split at {i} and {j} of {input:?}");
            }
        }
    }

    #[test]
    fn decodes_data_lines() {
        check(
            "data: {\"a\":1}\n\ndata: [DONE]\n\n",
            &[ev(None, "{\"a\":1}"), ev(None, "[DONE]")],
        );
    }

    #[test]
    fn joins_multi_line_data() {
        check("data: one\ndata:two\ndata\n\n", &[ev(None, "one\ntwo\n")]);
    }

    #[test]
    fn keeps_event_names_and_skips_comments() {
        check(
            ": keep-alive\n\nevent: ping\ndata: {}\n\n:x\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &[
                ev(Some("ping"), "{}"),
                ev(Some("message_stop"), "{\"type\":\"message_stop\"}"),
            ],
        );
    }

    #[test]
    fn accepts_crlf_and_cr_line_endings() {
        check(
            "data: a\r\n\r\ndata: b\r\rdata: c\n\n",
            &[ev(None, "a"), ev(None, "b"), ev(None, "c")],
        );
    }

    #[test]
    fn multi_byte_characters_survive_any_split() {
        check("data: héllo ✓ 🦀\n\n", &[ev(None, "héllo ✓ 🦀")]);
    }

    #[test]
    fn strips_bom_and_one_space_only() {
        check("\u{feff}data:  two spaces\n\n", &[ev(None, " two spaces")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        check("event: ping\n\ndata: x\n\n", &[ev(None, "x")]);
    }

    #[test]
    fn pending_partial_event_is_visible() {
        let mut d = SseDecoder::new();
        assert!(d.feed(b"data: {\"trunc").unwrap().is_empty());
        assert!(d.has_partial_event());
    }

    #[test]
    fn refuses_endless_lines() {
        let mut d = SseDecoder::new();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut result = Ok(vec![]);
        for _ in 0..9 {
            result = d.feed(&chunk);
        }
        assert_eq!(result, Err(LineTooLong));
    }
}
