//! The OpenAI Responses endpoint (`POST /v1/responses`), stateless: the request is translated
//! into the canonical chat request and takes the same path as `/v1/chat/completions` (auth,
//! budget, routing, fallbacks, any backend); the answer and the stream are translated back into
//! a `response` object and the Responses event sequence here. Errors keep the OpenAI shape the
//! Responses API uses too. The translation itself lives in `api/responses.rs`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::messages::{collect, translate_all_with, translated, Translate};
use super::{parse, run_chat, Ctx, Reply};
use crate::api::responses::{self, EventStream, ResponsesRequest};
use crate::body::{full, Body};
use crate::cache;
use crate::config::Runtime;
use crate::error::Error;
use crate::state::AppState;

impl Translate for EventStream {
    fn on_data(&mut self, data: &str, out: &mut bytes::BytesMut) {
        EventStream::on_data(self, data, out);
    }
    fn on_end(&mut self, out: &mut bytes::BytesMut) {
        EventStream::on_end(self, out);
    }
}

pub(super) async fn responses(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Reply, Error> {
    let (caller, headers, req) = parse::<ResponsesRequest>(&rt, req, ctx).await?;
    let model = req.model.clone();
    let chat = responses::to_chat(req)?;
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
                // request with one JSON body: both become the Responses event sequence.
                let sse_bytes = if is_sse {
                    Some(bytes)
                } else {
                    cache::replay_as_stream(&bytes, true)
                };
                let sse_bytes = sse_bytes.ok_or_else(|| Error::UpstreamProtocol {
                    provider: ctx.provider_name(),
                    reason: "the answer could not be turned into a stream".into(),
                })?;
                (
                    translate_all_with(&sse_bytes, EventStream::new()),
                    "text/event-stream",
                )
            } else {
                (
                    Bytes::from(responses::response_from_chat(&bytes, &model)?),
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

/// The relayed canonical stream as the Responses event sequence, chunk by chunk.
pub(super) fn event_stream(inner: Body) -> Body {
    translated(inner, EventStream::new())
}
