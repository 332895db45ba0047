//! `Secret`: a provider key held in memory. It never prints its value: Debug and Display show a
//! placeholder, and there is no Serialize, so it cannot reach logs, errors, metrics or audit.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that needs it: the upstream request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("sk-live-very-secret");
        assert!(!format!("{s:?} {s} {s:#?}").contains("very-secret"));
        assert_eq!(s.expose(), "sk-live-very-secret");
    }
}
