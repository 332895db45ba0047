//! The stream relay: the client's response body for `stream: true`. It pulls the provider's
//! stream bytes as they arrive (SSE, or AWS event-stream frames for Bedrock, which its
//! translator turns into OpenAI chunks), forwards each complete event at once (never buffering the stream),
//! notes the usage chunk for accounting, drops that chunk when the client did not ask for it,
//! and ends the stream with an error event if the provider breaks off or goes silent.
//!
//! It owns the upstream body, so a client that disconnects drops it and with it the provider
//! connection: the upstream request is cancelled promptly. It also owns the request context,
//! whose accounting runs exactly once, when the stream ends or the client goes away.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use tokio::time::Sleep;

use super::Ctx;
use crate::api::openai::{Usage, UsagePeek};
use crate::body::{Body, BoxError};
use crate::error::Error;
use crate::eventstream;
use crate::providers::{StreamFraming, StreamTranslate};
use crate::sse::{self, Event};

/// Past this much pending output a frame is sent even if more upstream data is ready.
const COALESCE_LIMIT: usize = 64 * 1024;
/// Scheduler turns without new upstream data after which pending output is sent.
const MAX_IDLE_YIELDS: u8 = 3;

/// Cuts the upstream bytes into events, by the provider's framing.
enum Framer {
    Sse(sse::Parser),
    EventStream(eventstream::Decoder),
}

impl Framer {
    fn push(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), eventstream::DecodeError> {
        match self {
            Self::Sse(p) => {
                p.push(data, out);
                Ok(())
            }
            Self::EventStream(d) => d.push(data, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<Event>) {
        // An unfinished binary frame is dropped: the missing end event reports the cut.
        if let Self::Sse(p) = self {
            p.finish(out);
        }
    }
}

pub struct Relay {
    upstream: Body,
    parser: Framer,
    events: Vec<Event>,
    ctx: Option<Ctx>,
    strip_usage: bool,
    usage: Option<Usage>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    last_activity: Instant,
    /// Output waiting for one scheduler turn (see `poll_frame`).
    held: BytesMut,
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    first_sent: bool,
    saw_done: bool,
    saw_error: bool,
    /// Scheduler turns in a row that brought no new upstream data.
    idle_yields: u8,
    /// Turns a non-OpenAI provider's events into OpenAI chunks.
    translate: Option<Box<dyn StreamTranslate>>,
    /// Bytes of generated text relayed so far, for an output estimate when no usage comes.
    text_bytes: u64,
    /// The status to record when the provider reported an error in the stream.
    error_status: u16,
    /// Pseudonym restoration and response scanning (data protection), when the policy asks.
    dlp: Option<crate::dlp::stream::StreamGuard>,
    done: bool,
}

impl Relay {
    pub fn new(
        upstream: Body,
        ctx: Ctx,
        client_wants_usage: bool,
        translate: Option<Box<dyn StreamTranslate>>,
        framing: StreamFraming,
        idle: Duration,
    ) -> Self {
        Self {
            upstream,
            parser: match framing {
                StreamFraming::Sse => Framer::Sse(sse::Parser::default()),
                StreamFraming::EventStream => Framer::EventStream(eventstream::Decoder::default()),
            },
            events: Vec::new(),
            ctx: Some(ctx),
            strip_usage: !client_wants_usage,
            usage: None,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            last_activity: Instant::now(),
            held: BytesMut::new(),
            yielding: None,
            first_sent: false,
            saw_done: false,
            saw_error: false,
            idle_yields: 0,
            translate,
            text_bytes: 0,
            error_status: 502,
            dlp: None,
            done: false,
        }
    }

    pub fn with_dlp(mut self, guard: Option<crate::dlp::stream::StreamGuard>) -> Self {
        self.dlp = guard;
        self
    }

    /// Re-frames the complete events in `self.events` into `out`.
    fn drain_events(&mut self, out: &mut BytesMut) {
        if self.translate.is_some() {
            self.translate_events(out);
            return;
        }
        for ev in self.events.drain(..) {
            match ev {
                Event::Comment(text) => {
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\n\n");
                }
                Event::Message { event, data } => {
                    let Some(data) = crate::dlp::stream::filter(&mut self.dlp, data, out) else {
                        continue;
                    };
                    if data == "[DONE]" {
                        self.saw_done = true;
                    } else if event.as_deref() == Some("error") || is_error_object(&data) {
                        self.saw_error = true;
                    }
                    if let Some(peek) = usage_chunk(&data) {
                        self.usage = peek.usage;
                        let usage_only = peek.choices.as_ref().is_none_or(Vec::is_empty);
                        if self.strip_usage && usage_only {
                            continue;
                        }
                    }
                    self.text_bytes += delta_text_len(&data);
                    sse::encode_into(out, event.as_deref(), &data);
                }
            }
        }
    }

    /// Translates the complete events of a non-OpenAI provider into OpenAI chunks in `out`,
    /// ending with `[DONE]` once the provider's own end event arrives, or with the provider's
    /// error as the last event.
    fn translate_events(&mut self, out: &mut BytesMut) {
        let Some(t) = self.translate.as_mut() else {
            return;
        };
        for ev in self.events.drain(..) {
            let Event::Message { event, data } = ev else {
                continue;
            };
            if self.saw_error || self.saw_done {
                break;
            }
            match t.on_event(event.as_deref(), &data) {
                Ok(chunks) => {
                    for c in chunks {
                        if let Some(c) = crate::dlp::stream::filter(&mut self.dlp, c, out) {
                            self.text_bytes += delta_text_len(&c);
                            sse::encode_into(out, None, &c);
                        }
                    }
                    if t.is_done() {
                        let _ = crate::dlp::stream::filter(&mut self.dlp, "[DONE]".into(), out);
                        sse::encode_into(out, None, "[DONE]");
                        self.saw_done = true;
                    }
                }
                Err(e) => {
                    sse::encode_into(out, None, &e.to_openai().to_string());
                    self.saw_error = true;
                    self.error_status = e.status;
                }
            }
        }
        self.usage = Some(t.usage());
    }

    fn finish(&mut self, status: u16, error: Option<&'static str>) {
        if let Some(mut ctx) = self.ctx.take() {
            ctx.streamed_text = self.text_bytes;
            // A stream whose every byte arrives at once ends before its first data frame
            // is handed over: that frame follows immediately, so its time is the first byte.
            if !std::mem::replace(&mut self.first_sent, true) {
                ctx.record_ttfb();
            }
            ctx.finish(status, self.usage, error);
        }
    }

    fn data(&mut self, out: BytesMut) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.idle_yields = 0;
        if let Some(ctx) = &mut self.ctx {
            ctx.streamed += out.len() as u64;
        }
        if !self.first_sent {
            self.first_sent = true;
            if let Some(ctx) = &mut self.ctx {
                ctx.record_ttfb();
            }
        }
        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
    }

    /// Ends the stream with an OpenAI-shaped error event after whatever `out` holds.
    fn fail(
        &mut self,
        mut out: BytesMut,
        err: Error,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.finish(err.status().as_u16(), Some(err.kind()));
        let body = err.body();
        sse::encode_into(&mut out, None, &String::from_utf8_lossy(&body));
        self.data(out)
    }

    fn provider(&self) -> String {
        self.ctx
            .as_ref()
            .map(Ctx::provider_name)
            .unwrap_or_default()
    }
}

/// Whether a chunk is a provider's error object (`{"error": {...}}`) rather than a completion
/// chunk; only chunks that mention `"error"` are parsed.
fn is_error_object(data: &str) -> bool {
    data.contains("\"error\"")
        && serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .is_some_and(|v| v.get("error").is_some_and(|e| !e.is_null()))
}

/// The length of the generated text in a chunk (`content` and tool-call `arguments` strings,
/// as escaped on the wire), found by search rather than parsing: it only matters when a
/// stream ends without usage and the output has to be estimated from it.
fn delta_text_len(data: &str) -> u64 {
    let mut total = 0;
    for key in ["\"content\":\"", "\"arguments\":\""] {
        let mut rest = data;
        while let Some(i) = rest.find(key) {
            rest = &rest[i + key.len()..];
            let bytes = rest.as_bytes();
            let mut end = 0;
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            total += end.min(bytes.len()) as u64;
            rest = rest.get(end.min(rest.len())..).unwrap_or("");
        }
    }
    total
}

/// A chunk that carries a usage object: parse it (rare: once per stream). Everything else is
/// forwarded without being parsed.
fn usage_chunk(data: &str) -> Option<UsagePeek> {
    let i = data.rfind("\"usage\"")?;
    let rest = data[i + 7..].trim_start().strip_prefix(':')?.trim_start();
    if !rest.starts_with('{') {
        return None;
    }
    serde_json::from_str::<UsagePeek>(data)
        .ok()
        .filter(|p| p.usage.is_some())
}

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        // Everything the upstream has already delivered goes out in one frame (one write to
        // the client, which is most of the cost of a chunk). The upstream connection hands its
        // body over one chunk at a time from another task, so before sending, the relay yields
        // to the scheduler a few times to let it pass on what it has already read; it never
        // waits for data that has not arrived (that costs a few microseconds per batch, and
        // cut the writes per short stream, upstream request included, from 7 to 3).
        if let Some(y) = this.yielding.as_mut() {
            if y.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.yielding = None;
        }
        let mut out = std::mem::take(&mut this.held);
        let held_before = out.len();
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.last_activity = Instant::now();
                    if let Ok(data) = frame.into_data() {
                        let framed = this.parser.push(&data, &mut this.events);
                        this.drain_events(&mut out);
                        if let Err(e) = framed {
                            if this.saw_error || this.saw_done {
                                // Already ended for the client; nothing more to say.
                                continue;
                            }
                            let provider = this.provider();
                            return this.fail(
                                out,
                                Error::UpstreamProtocol {
                                    provider,
                                    reason: e.to_string(),
                                },
                            );
                        }
                        if out.len() >= COALESCE_LIMIT {
                            return this.data(out);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let provider = this.provider();
                    return this.fail(
                        out,
                        Error::UpstreamProtocol {
                            provider,
                            reason: format!("stream broke off: {e}"),
                        },
                    );
                }
                Poll::Ready(None) => {
                    this.parser.finish(&mut this.events);
                    this.drain_events(&mut out);
                    if this.saw_error {
                        // The provider reported the failure in the stream; it was relayed.
                        this.done = true;
                        let status = this.error_status;
                        this.finish(status, Some("upstream_stream_error"));
                    } else if !this.saw_done {
                        // A stream that stops without [DONE] was cut short: say so, never
                        // end in a way that looks complete.
                        let provider = this.provider();
                        return this.fail(
                            out,
                            Error::UpstreamProtocol {
                                provider,
                                reason: "the stream ended before its end marker".into(),
                            },
                        );
                    } else {
                        this.done = true;
                        this.finish(200, None);
                    }
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return this.data(out);
                }
                Poll::Pending if !out.is_empty() => {
                    this.idle_yields = if out.len() > held_before {
                        0
                    } else {
                        this.idle_yields + 1
                    };
                    if this.idle_yields > MAX_IDLE_YIELDS {
                        return this.data(out);
                    }
                    let mut y: Pin<Box<dyn Future<Output = ()> + Send>> =
                        Box::pin(tokio::task::yield_now());
                    if y.as_mut().poll(cx).is_ready() {
                        return this.data(out);
                    }
                    this.held = out;
                    this.yielding = Some(y);
                    return Poll::Pending;
                }
                Poll::Pending => {
                    // The timer is armed lazily: only when it fires is it checked against the
                    // last activity, so a busy stream costs no timer work per chunk.
                    while this.idle_timer.as_mut().poll(cx).is_ready() {
                        let silent_until = this.last_activity + this.idle;
                        if Instant::now() >= silent_until {
                            let provider = this.provider();
                            let secs = this.idle.as_secs();
                            return this.fail(out, Error::UpstreamTimeout { provider, secs });
                        }
                        this.idle_timer.as_mut().reset(silent_until);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Still holding the context: the client went away before the stream ended.
        self.finish(499, Some("client_closed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_is_measured_without_parsing() {
        assert_eq!(
            delta_text_len(r#"{"choices":[{"delta":{"content":"He said \"hi\""}}]}"#),
            14
        );
        assert_eq!(
            delta_text_len(r#"{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}"#),
            9
        );
        assert_eq!(
            delta_text_len(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#),
            0
        );
        assert_eq!(delta_text_len(r#"{"delta":{"content":"unterminated"#), 12);
    }

    #[test]
    fn finds_usage_chunks_only() {
        assert!(usage_chunk(r#"{"choices":[{"delta":{}}],"usage":null}"#).is_none());
        assert!(usage_chunk(r#"{"choices":[{"delta":{"content":"\"usage\": {"}}]}"#).is_none());
        let p = usage_chunk(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#);
        assert_eq!(p.and_then(|p| p.usage).map(|u| u.prompt_tokens), Some(3));
    }
}
