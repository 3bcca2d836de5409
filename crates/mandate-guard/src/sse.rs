//! Reading the revocation feed's server-sent events so that bad bytes cost little.
//!
//! Two things stand between the network and the SSE parser (`eventsource-stream`):
//! - A size cap. A parser has to hold an event until the blank line that ends it, so a server
//!   (or anything in between) that sends a line that never ends would make it buffer without
//!   limit. The bytes of the event in progress are counted first, and the stream fails as soon
//!   as one event is longer than the cap; the subscriber then drops the connection and
//!   reconnects. Real feed entries are a few hundred bytes.
//! - Lossy UTF-8 decoding. The parser's own decoder, on an invalid byte, holds it and
//!   everything after it back, waiting for a completion that never comes: the connection
//!   stays open, keep-alives keep it from timing out, and every later revocation is silently
//!   lost while memory grows. Invalid bytes are replaced with U+FFFD here instead, as the SSE
//!   specification says a decoder must, so a bad byte spoils only the event it is in, which is
//!   then skipped as malformed.

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

/// Why reading the event stream stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("an event is longer than {0} bytes")]
    EventTooLarge(usize),
}

/// The events of `body`, failing with [`ReadError::EventTooLarge`] before any event longer
/// than `max_event` bytes (its lines together, line endings not counted) is buffered, and
/// with invalid UTF-8 replaced.
pub(crate) fn bounded_events<S, B>(
    body: S,
    max_event: usize,
) -> impl Stream<Item = Result<Event, EventStreamError<ReadError>>>
where
    S: Stream<Item = reqwest::Result<B>>,
    B: AsRef<[u8]>,
{
    let mut limit = EventSizeLimit::new(max_event);
    let mut utf8 = LossyUtf8::default();
    body.map(move |chunk| {
        let chunk = chunk?;
        limit.check(chunk.as_ref())?;
        Ok::<_, ReadError>(utf8.decode(chunk.as_ref()))
    })
    .eventsource()
}

/// Decodes UTF-8 that arrives in pieces, replacing invalid bytes with U+FFFD.
#[derive(Debug, Default)]
struct LossyUtf8 {
    /// The first bytes of a character whose other bytes are still to come (at most 3).
    pending: Vec<u8>,
}

impl LossyUtf8 {
    fn decode(&mut self, chunk: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(chunk);
        let mut text = String::with_capacity(bytes.len());
        let mut pieces = bytes.utf8_chunks().peekable();
        while let Some(piece) = pieces.next() {
            text.push_str(piece.valid());
            let invalid = piece.invalid();
            if invalid.is_empty() {
                continue;
            }
            let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
            if incomplete && pieces.peek().is_none() {
                self.pending = invalid.to_vec();
            } else {
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        text
    }
}

/// Tracks the size of the event being received, byte by byte, across chunk boundaries.
///
/// An event ends at an empty line; a line ends at CR, LF or CRLF (the SSE grammar).
#[derive(Debug)]
struct EventSizeLimit {
    max: usize,
    /// Bytes of the current event so far, line endings excluded.
    event_len: usize,
    /// Nothing but a line ending has been seen since the last line ending.
    line_empty: bool,
    /// The previous byte was CR, so an LF now belongs to the same line ending.
    after_cr: bool,
}

impl EventSizeLimit {
    fn new(max: usize) -> Self {
        Self {
            max,
            event_len: 0,
            line_empty: true,
            after_cr: false,
        }
    }

    /// Accounts for `chunk`; refuses it if the event in progress grows past the cap.
    fn check(&mut self, chunk: &[u8]) -> Result<(), ReadError> {
        for &byte in chunk {
            self.step(byte);
            if self.event_len > self.max {
                return Err(ReadError::EventTooLarge(self.max));
            }
        }
        Ok(())
    }

    fn step(&mut self, byte: u8) {
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => {}
            b'\n' | b'\r' => {
                if self.line_empty {
                    self.event_len = 0;
                }
                self.line_empty = true;
            }
            _ => {
                self.event_len += 1;
                self.line_empty = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits(max: usize, chunks: &[&[u8]]) -> bool {
        let mut limit = EventSizeLimit::new(max);
        chunks.iter().all(|c| limit.check(c).is_ok())
    }

    #[test]
    fn an_event_may_be_as_long_as_the_cap_and_no_longer() {
        assert!(fits(10, &[b"data: abcd\n\n"]), "exactly 10 bytes");
        assert!(!fits(10, &[b"data: abcde\n\n"]), "11 bytes");
        assert!(
            !fits(10, &[b"data: ab", b"cde"]),
            "across chunks, no newline yet"
        );
        assert!(!fits(10, &[b"data:\ndata:\ndata:\n"]), "lines add up");
    }

    #[test]
    fn a_blank_line_ends_the_event_in_every_line_ending() {
        for ending in [&b"\n\n"[..], b"\r\r", b"\r\n\r\n", b"\n\r\n", b"\r\n\n"] {
            let mut limit = EventSizeLimit::new(10);
            for _ in 0..100 {
                limit.check(b"data: abcd").unwrap();
                limit.check(ending).unwrap();
            }
        }
    }

    #[test]
    fn utf8_is_decoded_across_chunks_and_invalid_bytes_are_replaced() {
        let mut utf8 = LossyUtf8::default();
        let e_acute = "é".as_bytes();
        assert_eq!(utf8.decode(b"caf"), "caf");
        assert_eq!(utf8.decode(&e_acute[..1]), "", "held until complete");
        assert_eq!(utf8.decode(&e_acute[1..]), "é");
        assert_eq!(utf8.decode(b"a\xffb\xfe"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(
            utf8.decode(b"\xe2\x82"),
            "",
            "a truncated euro sign, so far"
        );
        assert_eq!(utf8.decode(b"x"), "\u{FFFD}x", "never completed");
        assert!(utf8.pending.is_empty());
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        // "\r" then "\n" is a single line ending, so no blank line: the event goes on.
        assert!(!fits(10, &[b"data: abc\r", b"\ndata: abc\n\n"]));
        assert!(fits(10, &[b"data: abc\r", b"\n\r", b"\ndata: abc\n\n"]));
    }
}
