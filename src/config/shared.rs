//! `[state.redis]`: the Redis (or Valkey) server that replicas share wallets, rate limits and
//! cooldowns through when `[state] backend = "redis"`, and its validation into
//! [`SharedSettings`]. What is stored there, and how, lives in `ledger/redis.rs`.
//!
//! The URL names a server, never a password: a password comes from `password_env` (or the
//! whole URL from `url_env`), like every other secret in this file.

use std::time::Duration;

use serde::Deserialize;

use super::Secret;

/// `[state.redis]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or `rediss://...` for TLS (rustls, Mozilla's roots).
    pub url: Option<String>,
    /// Environment variable holding the whole URL (when it carries credentials).
    pub url_env: Option<String>,
    /// Environment variable holding the password (used with `url`).
    pub password_env: Option<String>,
    /// Prepended to every key and channel, so several gateways can share one server.
    pub key_prefix: String,
    /// Multiplexed connections requests are spread over.
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    /// Longest wait for one command; past it the store counts as unreachable.
    pub command_timeout_ms: u64,
    /// What requests get while the store is unreachable.
    pub on_failure: OnFailure,
    /// How long a reservation is held in the store if its replica dies before settling it.
    pub lease_secs: u64,
    /// How often an unreachable store is probed (and pending spend written back once it is up).
    pub probe_interval_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_env: None,
            password_env: None,
            key_prefix: "gateway:".into(),
            pool_size: 4,
            connect_timeout_ms: 1000,
            command_timeout_ms: 250,
            on_failure: OnFailure::FailClosed,
            lease_secs: 900,
            probe_interval_ms: 500,
        }
    }
}

/// The operator's choice for when the shared store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse requests with 503 until the store is back: limits are never exceeded.
    FailClosed,
    /// Serve on this replica's own limits meanwhile; the spend is written back later.
    FailOpenLocal,
}

/// The validated `[state.redis]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// The URL with credentials filled in; never printed.
    pub url: Secret,
    pub prefix: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub on_failure: OnFailure,
    pub lease: Duration,
    pub probe_interval: Duration,
}

/// Validates `[state.redis]`; problems go to `errs` with their TOML path.
pub fn build(
    c: &RedisConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Option<SharedSettings> {
    let at = "state.redis";
    let url = match (&c.url, &c.url_env) {
        (Some(_), Some(_)) => {
            errs.push(format!("{at}: set url or url_env, not both"));
            return None;
        }
        (None, None) => {
            errs.push(format!(
                "{at}.url: required with state.backend = \"redis\" (or url_env)"
            ));
            return None;
        }
        (Some(u), None) => {
            if has_password(u) {
                errs.push(format!(
                    "{at}.url: must not contain a password; use password_env (or url_env)"
                ));
                return None;
            }
            match &c.password_env {
                None => u.clone(),
                Some(var) => match env(var) {
                    Some(pw) if !pw.is_empty() => with_password(u, &pw)?,
                    _ => {
                        errs.push(format!(
                            "{at}.password_env: environment variable {var:?} is not set"
                        ));
                        return None;
                    }
                },
            }
        }
        (None, Some(var)) => match env(var) {
            Some(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => {
                errs.push(format!(
                    "{at}.url_env: environment variable {var:?} is not set"
                ));
                return None;
            }
        },
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        errs.push(format!(
            "{at}.url: must start with redis:// (or rediss:// for TLS)"
        ));
    }
    if redis::Client::open(url.as_str()).is_err() {
        // The parser's message may quote the URL; only say where the problem is.
        errs.push(format!("{at}.url: not a valid Redis URL"));
    }
    if c.pool_size == 0 || c.pool_size > 64 {
        errs.push(format!("{at}.pool_size: must be between 1 and 64"));
    }
    for (name, v) in [
        ("connect_timeout_ms", c.connect_timeout_ms),
        ("command_timeout_ms", c.command_timeout_ms),
        ("probe_interval_ms", c.probe_interval_ms),
    ] {
        if v == 0 || v > 60_000 {
            errs.push(format!("{at}.{name}: must be between 1 and 60000"));
        }
    }
    if c.lease_secs < 10 {
        errs.push(format!("{at}.lease_secs: must be at least 10"));
    }
    if c.key_prefix.chars().any(|ch| ch.is_whitespace()) {
        errs.push(format!("{at}.key_prefix: must not contain whitespace"));
    }
    Some(SharedSettings {
        url: Secret::new(url),
        prefix: c.key_prefix.clone(),
        pool_size: c.pool_size.clamp(1, 64),
        connect_timeout: Duration::from_millis(c.connect_timeout_ms.max(1)),
        command_timeout: Duration::from_millis(c.command_timeout_ms.max(1)),
        on_failure: c.on_failure,
        lease: Duration::from_secs(c.lease_secs.max(10)),
        probe_interval: Duration::from_millis(c.probe_interval_ms.max(1)),
    })
}

/// Whether the authority of `url` carries a password (`redis://user:pw@host`, `redis://:pw@`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `redis://[user@]host...` with `:password` inserted (percent-encoded).
fn with_password(url: &str, pw: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let encoded: String = pw
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Some(match rest.split_once('@') {
        Some((user, host)) if !user.contains('/') => format!("{scheme}://{user}:{encoded}@{host}"),
        _ => format!("{scheme}://:{encoded}@{rest}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_named_not_written() {
        assert!(has_password("redis://:pw@h:6379"));
        assert!(has_password("rediss://u:pw@h/0"));
        assert!(!has_password("redis://u@h:6379/0"));
        assert!(!has_password("redis://h:6379/0"));
        assert_eq!(
            with_password("redis://h:6379/0", "a b").as_deref(),
            Some("redis://:a%20b@h:6379/0")
        );
        assert_eq!(
            with_password("rediss://app@h/1", "x").as_deref(),
            Some("rediss://app:x@h/1")
        );
        let mut errs = Vec::new();
        let c = RedisConfig {
            url: Some("redis://:hunter2@h".into()),
            ..RedisConfig::default()
        };
        assert!(build(&c, &|_| None, &mut errs).is_none());
        assert!(errs[0].contains("password_env"), "{errs:?}");
        assert!(!errs[0].contains("hunter2"));
    }
}
