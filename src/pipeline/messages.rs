//! The Anthropic Messages endpoint (`POST /v1/messages`, `POST /v1/messages/count_tokens`):
//! the request is translated into the canonical chat request and takes the same path as
//! `/v1/chat/completions` (auth, routing, fallbacks, any backend); the answer, the stream and
//! errors are translated back into Anthropic's shapes here. The translation itself lives in
//! `api/anthropic.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use serde_json::json;

use super::{parse, plan, route, run_chat, Ctx, Reply};
use crate::api::anthropic::{self, EventStream, MessagesRequest};
use crate::body::{full, Body, BoxError};
use crate::cache;
use crate::config::Runtime;
use crate::error::Error;
use crate::sse::{self, Event};
use crate::state::AppState;

/// The most of a buffered answer this endpoint re-reads to translate (the chat path has
/// already capped it).
const MAX_BODY: usize = 64 * 1024 * 1024;

pub(super) async fn messages(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Reply, Error> {
    let (caller, headers, req) = parse::<MessagesRequest>(&rt, req, ctx).await?;
    let model = req.model.clone();
    let chat = anthropic::to_chat(req, true)?;
    let stream = chat.is_stream();
    match run_chat(state, rt, caller, headers, chat, ctx).await? {
        Reply::Full(resp, usage) => {
            let (mut parts, body) = resp.into_parts();
            let bytes = collect(body).await?;
            let is_sse = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let (body, content_type) = if stream {
                // A cached answer replayed as a stream, or a provider that answered a stream
                // request with one JSON body: both become Anthropic's event sequence.
                let sse_bytes = if is_sse {
                    Some(bytes)
                } else {
                    cache::replay_as_stream(&bytes, true)
                };
                let sse_bytes = sse_bytes.ok_or_else(|| Error::UpstreamProtocol {
                    provider: ctx.provider_name(),
                    reason: "the answer could not be turned into a stream".into(),
                })?;
                (translate_all(&sse_bytes), "text/event-stream")
            } else {
                (
                    Bytes::from(anthropic::message_from_chat(&bytes, &model)?),
                    "application/json",
                )
            };
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            parts.headers.remove(header::CONTENT_LENGTH);
            Ok(Reply::Full(Response::from_parts(parts, full(body)), usage))
        }
        stream => Ok(stream),
    }
}

/// `count_tokens`: the gateway's own estimate of the prompt (about four characters per token,
/// images at a fixed cost, tool definitions included), for any backend. The model must be one
/// the caller may use.
pub(super) async fn count_tokens(
    state: &AppState,
    rt: &Runtime,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, Error> {
    let (caller, headers, req) = parse::<MessagesRequest>(rt, req, ctx).await?;
    let chat = anthropic::to_chat(req, false)?;
    let needs = route::Needs::of_chat(&chat);
    plan(
        state,
        rt,
        &caller,
        &chat.model,
        &headers,
        &route::Needs::default(),
    )?;
    let tools = chat
        .extra
        .get("tools")
        .map_or(0, |t| t.to_string().len() as u64)
        .div_ceil(4);
    let body = json!({"input_tokens": needs.prompt_tokens + tools}).to_string();
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// An OpenAI-shaped error response in Anthropic's error shape (status and headers kept).
pub(super) async fn error_response(resp: Response<Body>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let bytes = collect(body).await.unwrap_or_default();
    let body = anthropic::error_body(parts.status.as_u16(), &bytes);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(body))
}

pub(super) async fn collect(body: Body) -> Result<Bytes, Error> {
    crate::body::read_limited(body, None, MAX_BODY)
        .await
        .map_err(|e| {
            Error::Internal(match e {
                crate::body::ReadError::TooLarge => "answer too large to translate".into(),
                crate::body::ReadError::Body(e) => e,
            })
        })
}

/// A client API's event sequence, built from canonical chunk payloads one at a time
/// (Anthropic's here, the Responses API's in `responses.rs`).
pub(super) trait Translate: Send + Unpin + 'static {
    fn on_data(&mut self, data: &str, out: &mut BytesMut);
    fn on_end(&mut self, out: &mut BytesMut);
}

impl Translate for EventStream {
    fn on_data(&mut self, data: &str, out: &mut BytesMut) {
        EventStream::on_data(self, data, out);
    }
    fn on_end(&mut self, out: &mut BytesMut) {
        EventStream::on_end(self, out);
    }
}

/// A whole canonical SSE body as Anthropic events.
fn translate_all(sse_bytes: &[u8]) -> Bytes {
    translate_all_with(sse_bytes, EventStream::new())
}

/// A whole canonical SSE body as a client API's events.
pub(super) fn translate_all_with<S: Translate>(sse_bytes: &[u8], mut state: S) -> Bytes {
    let mut events = Vec::new();
    let mut parser = sse::Parser::default();
    parser.push(sse_bytes, &mut events);
    parser.finish(&mut events);
    let mut out = BytesMut::new();
    for ev in events {
        if let Event::Message { data, .. } = ev {
            state.on_data(&data, &mut out);
        }
    }
    state.on_end(&mut out);
    out.freeze()
}

/// The relayed canonical stream as Anthropic's event sequence, chunk by chunk.
pub(super) fn event_stream(inner: Body) -> Body {
    translated(inner, EventStream::new())
}

/// The relayed canonical stream as a client API's event sequence, chunk by chunk.
pub(super) fn translated<S: Translate>(inner: Body, state: S) -> Body {
    Body::new(Events {
        inner,
        parser: sse::Parser::default(),
        events: Vec::new(),
        state,
        done: false,
    })
}

struct Events<S> {
    inner: Body,
    parser: sse::Parser,
    events: Vec<Event>,
    state: S,
    done: bool,
}

impl<S: Translate> Events<S> {
    fn drain(&mut self, out: &mut BytesMut) {
        for ev in self.events.drain(..) {
            if let Event::Message { data, .. } = ev {
                self.state.on_data(&data, out);
            }
        }
    }
}

impl<S: Translate> http_body::Body for Events<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let mut out = BytesMut::new();
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.parser.push(&data, &mut this.events);
                        this.drain(&mut out);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.parser.finish(&mut this.events);
                    this.drain(&mut out);
                    this.state.on_end(&mut out);
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }
}
