//! A provider's key pool: keys read from environment variables and files, each with its auth
//! header value built once (and marked sensitive), handed out round-robin. Key files are read
//! again when they change on disk, so a rotated key or a refreshed Entra ID token is picked up
//! without a restart (environment variables cannot change under a running process).
//! Problems name the variable or file, never a key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;

use super::Secret;

/// One snapshot of a pool: the keys and their header values, index for index.
#[derive(Debug, Default)]
pub struct KeyPool {
    pub keys: Vec<Secret>,
    auth: Vec<HeaderValue>,
}

/// How a pool's keys are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `Bearer <key>` (in `Authorization`).
    Bearer,
    /// The key alone (in a header of the provider's own, like `x-api-key`).
    Bare,
}

#[derive(Debug)]
pub struct KeyRing {
    style: Style,
    /// Keys from environment variables, read once.
    from_env: Vec<Secret>,
    files: Vec<String>,
    current: ArcSwap<KeyPool>,
    next: AtomicUsize,
}

impl KeyRing {
    /// Reads the pool. `at` is the TOML path of the owner's key fields, `owner` names it.
    pub fn load(
        vars: &[String],
        files: Vec<String>,
        style: Style,
        env: &dyn Fn(&str) -> Option<String>,
        at: &str,
        owner: &str,
        errs: &mut Vec<String>,
    ) -> Self {
        let mut from_env = Vec::new();
        for var in vars {
            match env(var) {
                Some(v) if !v.trim().is_empty() => from_env.push(Secret::new(v.trim())),
                _ => errs.push(format!(
                    "{at}.api_key_env: environment variable {var:?} is not set ({owner})"
                )),
            }
        }
        let ring = Self {
            style,
            from_env,
            files,
            current: ArcSwap::from_pointee(KeyPool::default()),
            next: AtomicUsize::new(0),
        };
        match ring.read() {
            Ok(pool) => ring.current.store(Arc::new(pool)),
            Err(problems) => {
                errs.extend(problems.into_iter().map(|p| format!("{at}.{p} ({owner})")))
            }
        }
        ring
    }

    /// A pool with no keys (keyless upstreams, and the mock).
    pub fn empty() -> Self {
        Self {
            style: Style::Bearer,
            from_env: Vec::new(),
            files: Vec::new(),
            current: ArcSwap::from_pointee(KeyPool::default()),
            next: AtomicUsize::new(0),
        }
    }

    /// The environment keys and the files' current contents as a pool; each problem as
    /// "field: what is wrong".
    fn read(&self) -> Result<KeyPool, Vec<String>> {
        let mut problems = Vec::new();
        let mut keys = self.from_env.clone();
        for file in &self.files {
            match std::fs::read_to_string(file) {
                Ok(v) if !v.trim().is_empty() => keys.push(Secret::new(v.trim())),
                Ok(_) => problems.push(format!("api_key_file: {file:?} is empty")),
                Err(e) => {
                    problems.push(format!("api_key_file: cannot read {file:?}: {}", e.kind()))
                }
            }
        }
        let mut auth = Vec::with_capacity(keys.len());
        for key in &keys {
            let value = match self.style {
                Style::Bearer => format!("Bearer {}", key.expose()),
                Style::Bare => key.expose().to_string(),
            };
            match HeaderValue::try_from(value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    auth.push(v);
                }
                Err(_) => problems
                    .push("api_key_*: a key has characters not allowed in an HTTP header".into()),
            }
        }
        if problems.is_empty() {
            Ok(KeyPool { keys, auth })
        } else {
            Err(problems)
        }
    }

    /// Whether any key comes from a file (and so may change).
    pub fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// Reads the key files again and swaps the pool in if a key changed. `Ok(true)`: changed.
    /// On a problem (a file gone or empty mid-rotation) the old pool stays.
    pub fn refresh(&self) -> Result<bool, String> {
        let pool = self.read().map_err(|p| p.join("; "))?;
        let changed = {
            let old = self.current.load();
            old.keys.len() != pool.keys.len()
                || old
                    .keys
                    .iter()
                    .zip(&pool.keys)
                    .any(|(a, b)| a.expose() != b.expose())
        };
        if changed {
            self.current.store(Arc::new(pool));
        }
        Ok(changed)
    }

    /// The current pool (for counting keys and scrubbing them out of error bodies).
    pub fn pool(&self) -> Arc<KeyPool> {
        self.current.load_full()
    }

    pub fn len(&self) -> usize {
        self.current.load().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next key (round-robin) that `usable` accepts, as its index and header value; when
    /// none is usable, the next one anyway. None: a keyless upstream.
    pub fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<(usize, HeaderValue)> {
        let pool = self.current.load();
        let n = pool.auth.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| usable(i))
            .unwrap_or(start % n);
        pool.auth.get(i).map(|h| (i, h.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_key_file_is_picked_up_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tok-1\n").unwrap();
        let mut errs = Vec::new();
        let ring = KeyRing::load(
            &["V".into()],
            vec![file.display().to_string()],
            Style::Bearer,
            &|_| Some("env-key".into()),
            "providers[0]",
            "provider \"p\"",
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let header = |i| {
            let (_, h) = ring.pick(|k| k == i).unwrap();
            h.to_str().unwrap().to_string()
        };
        assert_eq!(header(1), "Bearer tok-1");
        assert_eq!(ring.refresh(), Ok(false));
        std::fs::write(&file, "tok-2").unwrap();
        assert_eq!(ring.refresh(), Ok(true));
        assert_eq!(header(1), "Bearer tok-2");
        assert_eq!(header(0), "Bearer env-key");
        std::fs::write(&file, "  ").unwrap();
        let e = ring.refresh().unwrap_err();
        assert!(e.contains("is empty") && !e.contains("tok-2"), "{e}");
        assert_eq!(header(1), "Bearer tok-2", "the old pool stays");
    }

    #[test]
    fn problems_name_the_field_never_the_key() {
        let mut errs = Vec::new();
        let ring = KeyRing::load(
            &["MISSING".into()],
            vec!["/nonexistent/key".into()],
            Style::Bare,
            &|_| None,
            "providers[1]",
            "provider \"q\"",
            &mut errs,
        );
        assert!(ring.is_empty());
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("providers[1].api_key_env: environment variable \"MISSING\""));
        assert!(errs[1].starts_with("providers[1].api_key_file: cannot read"));
    }
}
