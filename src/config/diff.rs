//! What a config change does, as lines an operator reads: entities (providers, models,
//! projects, policies, ...) added, removed or changed, field by field, matched by name rather
//! than position. Works on the effective config tree (`config::effective`), so sections added
//! later are covered without changes here. Values under `headers` are never shown (they may
//! carry credentials); virtual keys are shown by their short id.

use serde_json::Value;

/// The changes from `old` to `new`, one line each, in section order.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    match (old, new) {
        (None, None) => {}
        (Some(o), Some(n)) if o == n => {}
        (None, Some(n)) => out.push(format!("+ {path}{}", added(path, n))),
        (Some(_), None) => out.push(format!("- {path}")),
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if path.ends_with("keys") => {
            for k in b.iter().filter(|k| !a.contains(k)) {
                out.push(format!("+ {path}: key {}", key_id(k)));
            }
            for k in a.iter().filter(|k| !b.contains(k)) {
                out.push(format!("- {path}: key {}", key_id(k)));
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.iter().chain(b).all(Value::is_object) =>
        {
            let named = |v: &[Value]| -> Vec<(String, Value)> {
                v.iter()
                    .enumerate()
                    .map(|(i, e)| (entity_name(e, i), e.clone()))
                    .collect()
            };
            let (a, b) = (named(a), named(b));
            let find = |v: &[(String, Value)], n: &str| {
                v.iter().find(|(k, _)| k == n).map(|(_, e)| e.clone())
            };
            let mut names: Vec<String> = a.iter().chain(&b).map(|(n, _)| n.clone()).collect();
            names.dedup();
            let mut seen = Vec::new();
            for n in names {
                if seen.contains(&n) {
                    continue;
                }
                seen.push(n.clone());
                let p = format!("{path}[{n}]");
                walk(&p, find(&a, &n).as_ref(), find(&b, &n).as_ref(), out);
            }
        }
        (Some(o), Some(n)) => out.push(format!("~ {path}: {} -> {}", show(path, o), show(path, n))),
    }
}

fn added(path: &str, v: &Value) -> String {
    if v.is_object() {
        String::new()
    } else {
        format!(" = {}", show(path, v))
    }
}

/// How an array entry is matched across versions: its name, key, or provider/model.
fn entity_name(e: &Value, i: usize) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str);
    if let Some(n) = s("name") {
        return n.to_string();
    }
    if let Some(k) = s("key") {
        return format!("key {}", key_id(&Value::String(k.to_string())));
    }
    if let (Some(p), Some(m)) = (s("provider"), s("model")) {
        return format!("{p}/{m}");
    }
    i.to_string()
}

/// The short id of a `sha256:<hex>` key hash, as logs and audit records show it.
fn key_id(k: &Value) -> String {
    let s = k.as_str().unwrap_or_default();
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    hex.get(..8).unwrap_or(&hex).to_string()
}

fn show(path: &str, v: &Value) -> String {
    if path.contains("headers") {
        return "(hidden)".into();
    }
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entities_match_by_name_and_keys_show_as_ids() {
        let old = json!({
            "models": [{"name": "a", "strategy": "priority"}, {"name": "b"}],
            "projects": [{"name": "p", "keys": ["sha256:aaaaaaaa11", "sha256:bbbbbbbb22"],
                          "limits": {"rpm": 10}}],
            "providers": [{"name": "x", "headers": {"h": "secret-value"}}],
        });
        let new = json!({
            "models": [{"name": "b"}, {"name": "a", "strategy": "weighted"}, {"name": "c"}],
            "projects": [{"name": "p", "keys": ["sha256:aaaaaaaa11", "sha256:cccccccc33"],
                          "limits": {"rpm": 20}}],
            "providers": [{"name": "x", "headers": {"h": "other-secret"}}],
        });
        let d = diff(&old, &new);
        assert_eq!(
            d,
            [
                "~ models[a].strategy: \"priority\" -> \"weighted\"",
                "+ models[c]",
                "+ projects[p].keys: key cccccccc",
                "- projects[p].keys: key bbbbbbbb",
                "~ projects[p].limits.rpm: 10 -> 20",
                "~ providers[x].headers.h: (hidden) -> (hidden)",
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }
}
