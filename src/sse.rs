//! Incremental Server-Sent Events framing: bytes in (in whatever pieces the network delivers),
//! complete events out, and the encoder for events the gateway sends. Accepts LF, CRLF and CR
//! line endings, `data:` with or without a space, multi-line data, and `:` comments.
//!
//! Only framing lives here; what an event means is the business of the relay and the adapters.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A `:` comment line outside any event (keep-alives, vendor progress notes).
    Comment(String),
    Message {
        event: Option<String>,
        data: String,
    },
}

#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feeds a piece of the stream; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) {
        // Taken out of `self` so lines can be borrowed from it while `self.line` runs.
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        while let Some(rel) = buf[pos..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let end = pos + rel;
            let next = if buf[end] == b'\r' {
                match buf.get(end + 1) {
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                    // A CR at the very end may be the first half of a CRLF: wait for more.
                    None => break,
                }
            } else {
                end + 1
            };
            self.line(&String::from_utf8_lossy(&buf[pos..end]), out);
            pos = next;
        }
        buf.drain(..pos);
        self.buf = buf;
    }

    /// Ends the stream: a trailing event without its blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&rest)
                .trim_end_matches('\r')
                .to_string();
            self.line(&line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            if self.data.is_none() && self.event.is_none() {
                out.push(Event::Comment(comment.trim_start().to_string()));
            }
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let event = self.event.take();
        // An `event:` with no data is not delivered (per the SSE spec).
        if let Some(data) = self.data.take() {
            out.push(Event::Message { event, data });
        }
    }
}

/// Appends the wire form of a `data` event (with an optional `event:` name) to `out`.
pub fn encode_into(out: &mut BytesMut, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// The wire form of one `data` event.
pub fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    encode_into(&mut out, event, data);
    out.freeze()
}

/// Test helper: the named events in `bytes` with their JSON data, comments skipped.
#[cfg(test)]
pub fn json_events(bytes: &[u8]) -> Vec<(String, serde_json::Value)> {
    let mut parsed = Vec::new();
    Parser::default().push(bytes, &mut parsed);
    parsed
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { event, data } => Some((
                event.unwrap_or_default(),
                serde_json::from_str(&data).expect("JSON data"),
            )),
            Event::Comment(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<Event> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            p.push(c, &mut out);
        }
        p.finish(&mut out);
        out
    }

    fn msg(event: Option<&str>, data: &str) -> Event {
        Event::Message {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn any_split_any_line_ending() {
        let lf =
            b"data: {\"a\":1}\n\nevent: ping\ndata:x\ndata: y\n\n: keep-alive\n\ndata: [DONE]\n\n";
        let want = vec![
            msg(None, "{\"a\":1}"),
            msg(Some("ping"), "x\ny"),
            Event::Comment("keep-alive".into()),
            msg(None, "[DONE]"),
        ];
        let crlf = String::from_utf8_lossy(lf).replace('\n', "\r\n");
        let cr = String::from_utf8_lossy(lf).replace('\n', "\r");
        for input in [lf.to_vec(), crlf.into_bytes(), cr.into_bytes()] {
            for piece in [1, 2, 3, 7, 1000] {
                assert_eq!(parse_in_pieces(&input, piece), want, "piece {piece}");
            }
        }
    }

    #[test]
    fn trailing_event_without_blank_line() {
        assert_eq!(parse_in_pieces(b"data: last", 4), vec![msg(None, "last")]);
    }

    #[test]
    fn encode_round_trips() {
        let bytes = encode(Some("e"), "a\nb");
        assert_eq!(parse_in_pieces(&bytes, 3), vec![msg(Some("e"), "a\nb")]);
    }
}
