//! Incremental AWS event-stream framing (`application/vnd.amazon.eventstream`), the binary
//! stream format of Bedrock's ConverseStream: bytes in (in whatever pieces the network
//! delivers), CRC-checked messages out, each turned into the same `(event, data)` pair the SSE
//! parser yields so one stream translator interface serves both framings.
//!
//! A message is, big-endian:
//! `[total_len u32][headers_len u32][prelude_crc u32][headers][payload][message_crc u32]`,
//! where `prelude_crc` is the CRC-32 of the first 8 bytes and `message_crc` that of everything
//! before it. Headers are `name_len u8, name, type u8, value` with a type-dependent value size.
//!
//! Only framing lives here; what an event means is the business of the adapter.

use bytes::{Buf, BytesMut};
use serde_json::json;

use crate::sse::Event;

/// The largest message accepted. AWS caps event-stream messages at 16 MiB; a larger length is
/// a corrupt prelude, and waiting for that many bytes would only hold memory.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Prelude (12) plus the trailing message CRC (4).
const OVERHEAD: usize = 16;

/// Why the stream cannot be decoded any further. Messages name offsets and sizes only, never
/// payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// One decoded message: its string-valued headers and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// As the `(event, data)` pair stream translators take. An `event` message is named by
    /// its `:event-type`; an `exception` message becomes `exception:<:exception-type>` with its
    /// JSON payload; an `error` message becomes `error:<:error-code>` with
    /// `{"message": <:error-message>}` (its payload is empty: the details ride in headers).
    pub fn into_event(self) -> Result<Event, DecodeError> {
        let message_type = self.header(":message-type").unwrap_or("event");
        let event = match message_type {
            "exception" => format!(
                "exception:{}",
                self.header(":exception-type").unwrap_or_default()
            ),
            "error" => {
                let code = self.header(":error-code").unwrap_or_default();
                let message = self.header(":error-message").unwrap_or_default();
                let data = json!({ "message": message }).to_string();
                return Ok(Event::Message {
                    event: Some(format!("error:{code}")),
                    data,
                });
            }
            _ => self.header(":event-type").unwrap_or_default().to_string(),
        };
        let data = String::from_utf8(self.payload)
            .map_err(|_| DecodeError("an event-stream payload is not UTF-8".into()))?;
        Ok(Event::Message {
            event: Some(event),
            data,
        })
    }
}

/// Buffers bytes until whole messages are there. After an error the decoder stays failed:
/// the stream's framing is lost and nothing after it can be trusted.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    failed: bool,
}

impl Decoder {
    /// Feeds a piece of the stream; complete messages are appended to `out` as events.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError("the event stream is already corrupt".into()));
        }
        self.buf.extend_from_slice(chunk);
        loop {
            match self.next_message() {
                Ok(Some(m)) => out.push(m.into_event().inspect_err(|_| self.failed = true)?),
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }

    /// Whether bytes of an unfinished message are waiting (a stream that ends here was cut).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete message, if the buffer holds one.
    fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        let total = be32(&self.buf[0..4]) as usize;
        let headers_len = be32(&self.buf[4..8]) as usize;
        let prelude_crc = be32(&self.buf[8..12]);
        // Checked before trusting the lengths, so a corrupt prelude is reported at once
        // instead of waiting for bytes that will never come.
        if crc32fast::hash(&self.buf[0..8]) != prelude_crc {
            return Err(DecodeError("event-stream prelude CRC mismatch".into()));
        }
        if !(OVERHEAD..=MAX_MESSAGE).contains(&total) || headers_len > total - OVERHEAD {
            return Err(DecodeError(format!(
                "event-stream message lengths are invalid (total {total}, headers {headers_len})"
            )));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total);
        let message_crc = be32(&frame[total - 4..]);
        if crc32fast::hash(&frame[..total - 4]) != message_crc {
            return Err(DecodeError("event-stream message CRC mismatch".into()));
        }
        let headers = parse_headers(&frame[12..12 + headers_len])?;
        let payload = frame[12 + headers_len..total - 4].to_vec();
        Ok(Some(Message { headers, payload }))
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// The string headers of a message; values of other types are skipped over (Bedrock sends
/// only strings, but the format allows the others and their sizes are fixed by type).
fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let bad = || DecodeError("event-stream headers are malformed".into());
    let mut out = Vec::new();
    while b.has_remaining() {
        let name_len = usize::from(b.try_get_u8().map_err(|_| bad())?);
        if b.len() < name_len {
            return Err(bad());
        }
        let name = String::from_utf8(b[..name_len].to_vec()).map_err(|_| bad())?;
        b.advance(name_len);
        let kind = b.try_get_u8().map_err(|_| bad())?;
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            _ => return Err(bad()),
        };
        let len = match fixed {
            Some(n) => n,
            None => usize::from(b.try_get_u16().map_err(|_| bad())?),
        };
        if b.len() < len {
            return Err(bad());
        }
        if kind == 7 {
            let value = String::from_utf8(b[..len].to_vec()).map_err(|_| bad())?;
            out.push((name, value));
        }
        b.advance(len);
    }
    Ok(out)
}

/// One message in the wire format, for tests and mock upstreams: string headers, then payload.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (h.len() + payload.len() + OVERHEAD) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = include_bytes!("../tests/fixtures/bedrock/converse-stream.bin");
    const EVENTS: &str = include_str!("../tests/fixtures/bedrock/converse-stream.events.jsonl");
    const TOOLS: &[u8] = include_bytes!("../tests/fixtures/bedrock/converse-stream.tools.bin");
    const ERROR: &[u8] = include_bytes!("../tests/fixtures/bedrock/converse-stream.error.bin");

    fn decode_all(bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.push(bytes, &mut out)?;
        assert!(!d.has_partial());
        Ok(out)
    }

    /// The decoded view of a fixture, as `(event, payload)` pairs.
    fn expected(jsonl: &str) -> Vec<(String, serde_json::Value)> {
        jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let h = &v["headers"];
                let name = match h[":message-type"].as_str() {
                    Some("exception") => {
                        format!("exception:{}", h[":exception-type"].as_str().unwrap())
                    }
                    _ => h[":event-type"].as_str().unwrap().to_string(),
                };
                (name, v["payload"].clone())
            })
            .collect()
    }

    fn pairs(events: &[Event]) -> Vec<(String, serde_json::Value)> {
        events
            .iter()
            .map(|e| match e {
                Event::Message { event, data } => (
                    event.clone().unwrap_or_default(),
                    serde_json::from_str(data).unwrap(),
                ),
                Event::Comment(_) => panic!("no comments in event streams"),
            })
            .collect()
    }

    #[test]
    fn decodes_the_fixtures_like_botocore() {
        assert_eq!(pairs(&decode_all(STREAM).unwrap()), expected(EVENTS));
        let tools = include_str!("../tests/fixtures/bedrock/converse-stream.tools.events.jsonl");
        assert_eq!(pairs(&decode_all(TOOLS).unwrap()), expected(tools));
        let error = include_str!("../tests/fixtures/bedrock/converse-stream.error.events.jsonl");
        assert_eq!(pairs(&decode_all(ERROR).unwrap()), expected(error));
    }

    #[test]
    fn a_stream_split_at_every_offset_decodes_the_same() {
        let whole = decode_all(TOOLS).unwrap();
        for cut in 0..=TOOLS.len() {
            let mut d = Decoder::default();
            let mut out = Vec::new();
            d.push(&TOOLS[..cut], &mut out).unwrap();
            d.push(&TOOLS[cut..], &mut out).unwrap();
            assert_eq!(out, whole, "split at {cut}");
            assert!(!d.has_partial());
        }
        // And byte by byte.
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for b in STREAM {
            d.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, decode_all(STREAM).unwrap());
    }

    #[test]
    fn a_truncated_stream_leaves_a_partial_message() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.push(&STREAM[..STREAM.len() - 3], &mut out).unwrap();
        assert!(d.has_partial());
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn crc_failures_are_errors_and_stick() {
        // A flipped payload byte: the message CRC catches it.
        let mut bad = STREAM.to_vec();
        bad[100] ^= 0x01;
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let e = d.push(&bad, &mut out).unwrap_err();
        assert!(e.0.contains("message CRC"), "{e}");
        assert!(out.is_empty());
        assert!(d.push(b"", &mut out).is_err());
        // A flipped length: the prelude CRC catches it before any wait for the bytes.
        let mut bad = STREAM.to_vec();
        bad[1] ^= 0x40;
        let e = Decoder::default().push(&bad[..12], &mut out).unwrap_err();
        assert!(e.0.contains("prelude CRC"), "{e}");
    }

    #[test]
    fn encode_round_trips_and_error_messages_carry_their_headers() {
        let frame = encode(
            &[
                (":message-type", "error"),
                (":error-code", "InternalFailure"),
                (":error-message", "boom"),
            ],
            b"",
        );
        let events = decode_all(&frame).unwrap();
        assert_eq!(
            events,
            vec![Event::Message {
                event: Some("error:InternalFailure".into()),
                data: r#"{"message":"boom"}"#.into()
            }]
        );
        // Non-string headers are skipped over by their fixed sizes.
        let mut m = encode(&[(":event-type", "x")], b"{}");
        let extra = [1u8, b'n', 4, 0, 0, 0, 7];
        let hl = be32(&m[4..8]) as usize;
        m.splice(12 + hl..12 + hl, extra);
        let total = m.len() as u32;
        m[0..4].copy_from_slice(&total.to_be_bytes());
        m[4..8].copy_from_slice(&((hl + extra.len()) as u32).to_be_bytes());
        let c = crc32fast::hash(&m[0..8]);
        m[8..12].copy_from_slice(&c.to_be_bytes());
        let end = m.len() - 4;
        let c = crc32fast::hash(&m[..end]);
        m[end..].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            decode_all(&m).unwrap(),
            vec![Event::Message {
                event: Some("x".into()),
                data: "{}".into()
            }]
        );
    }
}
