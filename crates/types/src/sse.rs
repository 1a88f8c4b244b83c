//! Server-sent events: an incremental decoder and an encoder.
//!
//! The decoder follows the WHATWG event-stream parsing rules: lines end in LF, CRLF or a lone
//! CR (also when the CR and LF arrive in different reads), lines starting with `:` are comments,
//! several `data:` lines join with `\n`, and a blank line dispatches the event. Bytes may arrive
//! split anywhere, including inside a UTF-8 sequence: only whole lines are decoded.
//!
//! ```
//! use switchyard_types::sse::SseDecoder;
//!
//! let mut decoder = SseDecoder::new();
//! let mut events = Vec::new();
//! decoder.feed(b"data: {\"a\":", &mut events);
//! assert!(events.is_empty());
//! decoder.feed(b"1}\r\n\r\n", &mut events);
//! assert_eq!(events[0].data, "{\"a\":1}");
//! ```

use bytes::{BufMut, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the stream named one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field of this event, when present.
    pub id: Option<String>,
    /// The `retry:` field of this event, in milliseconds, when present and numeric.
    pub retry: Option<u64>,
}

/// An incremental event-stream decoder; feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line being read, not yet terminated.
    line: Vec<u8>,
    /// The previous read ended in CR: a leading LF in the next read belongs to it.
    after_cr: bool,
    /// The stream's first bytes have been seen (a leading BOM is dropped only there).
    started: bool,
    pending: Pending,
}

#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
}

// === impl SseDecoder ===

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `bytes`, pushing every event they complete onto `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) {
        if !self.started && !bytes.is_empty() {
            self.started = true;
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(at) = memchr::memchr2(b'\n', b'\r', bytes) {
            let line_end = &bytes[..at];
            if self.line.is_empty() {
                self.process_line(line_end, out);
            } else {
                self.line.extend_from_slice(line_end);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                self.line = line;
                self.line.clear();
            }
            if bytes[at] == b'\r' {
                match bytes.get(at + 1) {
                    Some(b'\n') => bytes = &bytes[at + 2..],
                    Some(_) => bytes = &bytes[at + 1..],
                    None => {
                        self.after_cr = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[at + 1..];
            }
        }
        self.line.extend_from_slice(bytes);
    }

    /// Ends the stream. Per the specification an unterminated last event is dropped; the
    /// return value says whether anything was left over, so callers can report a truncation.
    pub fn finish(&mut self) -> bool {
        let leftover = !self.line.is_empty() || self.pending.has_data;
        self.line.clear();
        self.pending = Pending::default();
        leftover
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.pending.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(&value);
                self.pending.has_data = true;
            }
            b"event" => self.pending.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.pending.id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.pending.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let pending = std::mem::take(&mut self.pending);
        if pending.has_data {
            out.push(SseEvent {
                event: pending.event,
                data: pending.data,
                id: pending.id,
                retry: pending.retry,
            });
        }
    }
}

/// The data of the event that ends an OpenAI stream.
pub const DONE: &str = "[DONE]";

/// Appends one event to `buf`: an optional `event:` line, one `data:` line per line of `data`,
/// and the blank line that dispatches it.
pub fn encode(buf: &mut BytesMut, event: Option<&str>, data: &str) {
    buf.reserve(data.len() + 16 + event.map_or(0, |e| e.len() + 8));
    if let Some(event) = event {
        buf.put_slice(b"event: ");
        buf.put_slice(strip_newlines(event).as_bytes());
        buf.put_u8(b'\n');
    }
    // `lines()` would swallow a trailing empty line; split keeps every line the data has.
    for line in data.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        buf.put_slice(b"data: ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
}

/// Appends a comment line (a keep-alive that clients ignore).
pub fn encode_comment(buf: &mut BytesMut, text: &str) {
    buf.put_slice(b": ");
    buf.put_slice(strip_newlines(text).as_bytes());
    buf.put_slice(b"\n\n");
}

fn strip_newlines(s: &str) -> &str {
    s.split(['\n', '\r']).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn decodes_lf_crlf_and_lone_cr() {
        let events = decode_all(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\n"]);
        assert_eq!(data(&events), ["a", "b", "c", "d"]);
    }

    #[test]
    fn crlf_split_across_reads_is_one_terminator() {
        let events = decode_all(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]);
        assert_eq!(data(&events), ["a", "b"]);
    }

    #[test]
    fn joins_multi_line_data_and_skips_comments() {
        let events = decode_all(&[b": keep-alive\n\ndata: one\n: mid\ndata: two\n\n"]);
        assert_eq!(data(&events), ["one\ntwo"]);
    }

    #[test]
    fn reads_event_id_and_retry_fields() {
        let events = decode_all(&[b"event: message_start\nid: 7\nretry: 300\ndata:{}\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].retry, Some(300));
        assert_eq!(events[0].data, "{}");
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        let events = decode_all(&[b"\n\n\nevent: x\n\ndata: y\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None, "event type resets at each blank line");
    }

    #[test]
    fn utf8_split_inside_a_character_survives() {
        let text = "data: héllo\n\n".as_bytes();
        let events = decode_all(&[&text[..8], &text[8..]]);
        assert_eq!(data(&events), ["héllo"]);
    }

    #[test]
    fn leading_bom_is_dropped() {
        let events = decode_all(&[b"\xEF\xBB\xBFdata: x\n\n"]);
        assert_eq!(data(&events), ["x"]);
    }

    #[test]
    fn finish_reports_an_unterminated_event() {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        decoder.feed(b"data: partial", &mut out);
        assert!(out.is_empty());
        assert!(decoder.finish());
        assert!(!decoder.finish());
    }

    #[test]
    fn encoder_splits_lines_and_names_events() {
        let mut buf = BytesMut::new();
        encode(&mut buf, Some("ping"), "a\nb");
        encode_comment(&mut buf, "hi");
        assert_eq!(&buf[..], b"event: ping\ndata: a\ndata: b\n\n: hi\n\n");
    }

    fn arb_event() -> impl Strategy<Value = (Option<String>, String)> {
        (
            proptest::option::of("[a-z_]{1,12}"),
            // Data may hold any character, newlines included, except a lone CR, which SSE
            // cannot carry (it is a line terminator on the wire).
            "[^\r]{0,40}",
        )
    }

    proptest! {
        /// Whatever the events and however the bytes are split, decode(encode(x)) == x.
        #[test]
        fn round_trips_under_any_split(
            events in proptest::collection::vec(arb_event(), 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut wire = BytesMut::new();
            for (event, data) in &events {
                encode(&mut wire, event.as_deref(), data);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut decoder = SseDecoder::new();
            let mut out = Vec::new();
            let mut start = 0;
            for point in points.into_iter().chain([wire.len()]) {
                decoder.feed(&wire[start..point], &mut out);
                start = point;
            }
            prop_assert!(!decoder.finish());
            let got: Vec<(Option<String>, String)> =
                out.into_iter().map(|e| (e.event, e.data)).collect();
            prop_assert_eq!(got, events);
        }

        /// Arbitrary bytes never panic the decoder, however they are split.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in 0usize..256) {
            let cut = cut.min(bytes.len());
            let mut decoder = SseDecoder::new();
            let mut out = Vec::new();
            decoder.feed(&bytes[..cut], &mut out);
            decoder.feed(&bytes[cut..], &mut out);
            decoder.finish();
        }
    }
}
