//! Stage 1, auth: the virtual key from `Authorization: Bearer <key>` or `x-api-key` resolves
//! to a project. The key itself goes no further than this function: it is hashed, looked up,
//! and never forwarded, logged or echoed.

use http::HeaderMap;

use crate::config::validate::Caller;
use crate::config::Runtime;
use crate::error::Error;

pub fn authenticate(rt: &Runtime, headers: &HeaderMap) -> Result<Caller, Error> {
    let key = presented_key(headers).ok_or(Error::MissingKey)?;
    rt.authenticate(key).ok_or(Error::InvalidKey)
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, key) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|k| !k.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}
