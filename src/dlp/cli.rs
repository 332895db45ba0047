//! `gateway scan`: runs a policy over plain text or JSONL (objects with a `text` field) and
//! prints findings and the redacted text, so operators can try a policy before deploying it
//! and measure it on their own data. No server, no provider keys. The caller turns "would
//! block" into a non-zero exit code.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::injection::{self, InjectionAction};
use super::policy::{compile_all, Action, Policy, Pseudonyms};
use super::Sensitivity;

/// The policy to scan with: `name` from the config at `config`, the config's only policy, or
/// the built-in default when there is no config.
pub fn load_policy(config: Option<&Path>, name: Option<&str>) -> Result<Arc<Policy>, String> {
    let Some(path) = config else {
        return match name {
            None | Some("default") => Policy::builtin_default().map(Arc::new),
            Some(n) => Err(format!(
                "policy {n:?} needs --config (without it only the built-in \"default\" exists)"
            )),
        };
    };
    let cfg = crate::config::load(path).map_err(|e| e.join("; "))?;
    let mut errs = Vec::new();
    let all = compile_all(&cfg.policies, &|v| std::env::var(v).ok(), &mut errs);
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    match name {
        Some(n) => all.get(n).cloned().ok_or_else(|| {
            format!(
                "no policy {n:?} in {} (it has: {})",
                path.display(),
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }),
        None if all.len() == 1 => all
            .values()
            .next()
            .cloned()
            .ok_or_else(|| "no policy".to_string()),
        None if all.is_empty() => Err(format!("{} has no [policies.NAME]", path.display())),
        None => Err(format!(
            "{} has several policies: choose one with --policy",
            path.display()
        )),
    }
}

/// The result of scanning one text.
pub struct Report {
    pub findings: Vec<Value>,
    pub injection: f32,
    pub flagged: bool,
    pub redacted: String,
    pub blocks: bool,
}

pub fn scan_text(p: &Policy, sensitivity: Option<Sensitivity>, text: &str) -> Report {
    let sens = sensitivity.unwrap_or(p.sensitivity);
    let f = p.findings(text, sens);
    let mut pseudo = Pseudonyms::default();
    let redacted = p
        .transform(text, &f, Some(&mut pseudo))
        .unwrap_or_else(|| text.to_string());
    let threshold = sensitivity.map_or(p.injection_threshold, injection::default_threshold);
    let score = if p.injection == InjectionAction::Off {
        0.0
    } else {
        injection::score(text)
    };
    let flagged = p.injection != InjectionAction::Off && score >= threshold;
    let mut blocks = flagged && p.injection == InjectionAction::Block;
    let findings = f
        .iter()
        .map(|x| {
            let action = p.action(x.kind);
            blocks |= action == Action::Block;
            json!({
                "type": p.kind_name(x.kind),
                "start": x.start,
                "end": x.end,
                "confidence": (f64::from(x.confidence) * 100.0).round() / 100.0,
                "action": action.as_str(),
            })
        })
        .collect();
    Report {
        findings,
        injection: score,
        flagged,
        redacted,
        blocks,
    }
}

/// Scans `input` and writes the report; Ok(true) when anything would be blocked.
pub fn run(
    p: &Policy,
    sensitivity: Option<Sensitivity>,
    jsonl: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<bool, String> {
    let mut any_block = false;
    let io = |e: std::io::Error| e.to_string();
    if !jsonl {
        let mut text = String::new();
        input.read_to_string(&mut text).map_err(io)?;
        let r = scan_text(p, sensitivity, &text);
        writeln!(out, "policy: {} (version {})", p.name, p.version).map_err(io)?;
        writeln!(out, "findings: {}", r.findings.len()).map_err(io)?;
        for f in &r.findings {
            writeln!(
                out,
                "  {:<22} {:>6}..{:<6} confidence {:.2}  {}",
                f["type"].as_str().unwrap_or("-"),
                f["start"],
                f["end"],
                f["confidence"].as_f64().unwrap_or(0.0),
                f["action"].as_str().unwrap_or("-")
            )
            .map_err(io)?;
        }
        writeln!(
            out,
            "injection: score {:.2}, flagged {}",
            r.injection, r.flagged
        )
        .map_err(io)?;
        writeln!(out, "--- redacted ---\n{}", r.redacted).map_err(io)?;
        return Ok(r.blocks);
    }
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let mut obj: Map<String, Value> = match serde_json::from_str(&line) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("line {}: not a JSON object", n + 1)),
        };
        let Some(Value::String(text)) = obj.remove("text") else {
            return Err(format!("line {}: no string field \"text\"", n + 1));
        };
        let r = scan_text(p, sensitivity, &text);
        any_block |= r.blocks;
        obj.insert("findings".into(), Value::Array(r.findings));
        obj.insert(
            "injection".into(),
            json!({"score": (f64::from(r.injection) * 100.0).round() / 100.0, "flagged": r.flagged}),
        );
        obj.insert("redacted".into(), Value::String(r.redacted));
        writeln!(out, "{}", Value::Object(obj)).map_err(io)?;
    }
    Ok(any_block)
}
