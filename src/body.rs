//! Body plumbing: the one response body type the server sends, and a size-capped reader for
//! request bodies (a body over the limit is refused as soon as it crosses it, not after).

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::error::Error;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the gateway sends: a buffered one or a relayed stream.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e: Infallible| match e {})
        .boxed_unsync()
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Body(String),
}

/// Reads a whole body of at most `limit` bytes. `declared` (a `content-length`) is checked
/// first so an honest oversize body is refused unread; a lying one is cut off once it crosses
/// the limit.
pub async fn read_limited<B>(
    body: B,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = body;
    let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads a client's request body, refusing it with 413 past `limit`.
pub async fn read_request<B>(body: B, declared: Option<u64>, limit: usize) -> Result<Bytes, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    read_limited(body, declared, limit)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => Error::BodyTooLarge { limit },
            ReadError::Body(e) => Error::invalid(format!("could not read request body: {e}"), None),
        })
}
