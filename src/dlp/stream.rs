//! Streamed completions: pseudonyms restored and (when the policy says so) entities caught even
//! when split across chunks, in the text (`delta.content`) and in tool-call arguments
//! (`delta.tool_calls[].function.arguments`) alike. Each choice keeps a small carry-over per
//! text and per tool call: text that could still be the start of a pseudonym (`<EMAIL_`) or of
//! an entity crossing the cut is held back, at most `CARRY` bytes while scanning (plus the
//! longest pseudonym), and released with the next chunk, with the choice's final chunk, or
//! before `[DONE]`. A chunk that is not a readable completion chunk ends the stream with an
//! error event instead of passing unchecked.

use std::collections::BTreeMap;

use bytes::BytesMut;
use prometheus::IntCounterVec;
use serde_json::{json, Value};

use super::guard::{response_text, Outcome};
use super::{ceil_char, floor_char};
use crate::sse;

/// Bytes held back per choice while scanning: longer than any fixed-format entity.
const CARRY: usize = 96;
/// Past this much held text (an unterminated PEM block, say) it is released, transformed.
const MAX_HELD: usize = 8 * 1024;

/// What one choice holds back: its text, and each tool call's arguments by tool-call index.
#[derive(Default, Clone)]
struct Held {
    content: String,
    tools: BTreeMap<u64, String>,
}

pub struct StreamGuard {
    outcome: Outcome,
    findings: IntCounterVec,
    /// Held text per choice index.
    pending: Vec<Held>,
    /// The last chunk seen, as a template for the flush chunk before `[DONE]`.
    template: Option<Value>,
    failed: bool,
}

impl StreamGuard {
    pub fn new(outcome: Outcome, findings: IntCounterVec) -> Self {
        Self {
            outcome,
            findings,
            pending: Vec::new(),
            template: None,
            failed: false,
        }
    }

    /// The part of `p` safe to send now (transformed, restored); the rest stays in `p`.
    fn release(&self, p: &mut String, all: bool) -> String {
        let mut cut = p.len();
        if !all && p.len() <= MAX_HELD {
            if self.outcome.policy.scan_responses {
                cut = cut.saturating_sub(CARRY);
            }
            if !self.outcome.pseudonyms.is_empty() {
                let from = ceil_char(p, p.len().saturating_sub(self.outcome.pseudonyms.max_len));
                if let Some(lt) = p[from..].rfind('<') {
                    if !p[from + lt..].contains('>') {
                        cut = cut.min(from + lt);
                    }
                }
            }
            cut = floor_char(p, cut);
            if self.outcome.policy.scan_responses && cut > 0 {
                // Never cut through an entity: move the cut to its start.
                let f = self
                    .outcome
                    .policy
                    .findings(p, self.outcome.policy.sensitivity);
                if let Some(x) = f.iter().find(|x| x.start < cut && x.end > cut) {
                    cut = x.start;
                }
            }
        }
        if cut == 0 {
            return String::new();
        }
        let head: String = p.drain(..cut).collect();
        response_text(&self.outcome, &head, Some(&self.findings)).unwrap_or(head)
    }

    /// The held state of choice `idx` (None past 1024 choices: such chunks pass unheld).
    fn held(&mut self, idx: usize) -> Option<&mut Held> {
        if idx > 1024 {
            return None;
        }
        if self.pending.len() <= idx {
            self.pending.resize(idx + 1, Held::default());
        }
        self.pending.get_mut(idx)
    }

    /// Appends `piece` to the held text of (choice, slot) and returns what may be sent now.
    fn push(&mut self, idx: usize, tool: Option<u64>, piece: Option<&str>, last: bool) -> String {
        let Some(h) = self.held(idx) else {
            return piece.unwrap_or_default().to_string();
        };
        let slot = match tool {
            None => &mut h.content,
            Some(t) => h.tools.entry(t).or_default(),
        };
        let mut p = std::mem::take(slot);
        if let Some(t) = piece {
            p.push_str(t);
        }
        let sent = self.release(&mut p, last);
        if let Some(h) = self.pending.get_mut(idx) {
            match tool {
                None => h.content = p,
                Some(t) => {
                    h.tools.insert(t, p);
                }
            }
        }
        sent
    }

    /// Held tool-call arguments of choice `idx` not in `seen`, released whole.
    fn drain_tools(&mut self, idx: usize, seen: &[u64]) -> Vec<(u64, String)> {
        let tools: Vec<u64> = match self.pending.get(idx) {
            Some(h) => h
                .tools
                .keys()
                .copied()
                .filter(|t| !seen.contains(t))
                .collect(),
            None => return Vec::new(),
        };
        tools
            .into_iter()
            .map(|t| (t, self.push(idx, Some(t), None, true)))
            .filter(|(_, s)| !s.is_empty())
            .collect()
    }

    /// Filters one SSE data payload. None: drop the event. Extra events (the held text before
    /// `[DONE]`) are written to `out` first.
    pub fn filter(&mut self, data: String, out: &mut BytesMut) -> Option<String> {
        if self.failed {
            return None;
        }
        if data == "[DONE]" {
            self.flush_into(out);
            return Some(data);
        }
        let mut v: Value = match serde_json::from_str(&data) {
            Ok(v) => v,
            Err(_) => {
                self.failed = true;
                return Some(
                    json!({"error": {"message": "a stream chunk could not be checked by the data protection policy", "type": "server_error", "param": null, "code": "dlp_unscannable_response"}})
                        .to_string(),
                );
            }
        };
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return Some(data);
        };
        let mut changed = false;
        for c in choices.iter_mut() {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            let last = c.get("finish_reason").is_some_and(|f| !f.is_null());
            let content = c
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .map(str::to_string);
            let had = content.is_some();
            if had || last {
                let sent = self.push(idx, None, content.as_deref(), last);
                if had || !sent.is_empty() {
                    set_delta(c, "content", Value::String(sent));
                    changed = true;
                }
            }
            // Tool-call arguments, each call held on its own.
            let mut seen: Vec<u64> = Vec::new();
            if let Some(Value::Array(calls)) = c.pointer_mut("/delta/tool_calls") {
                for (k, call) in calls.iter_mut().enumerate() {
                    let t = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(k as u64);
                    seen.push(t);
                    let args = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let Some(args) = args else { continue };
                    let sent = self.push(idx, Some(t), Some(&args), last);
                    if sent != args {
                        if let Some(a) = call.pointer_mut("/function/arguments") {
                            *a = Value::String(sent);
                            changed = true;
                        }
                    }
                }
            }
            if last {
                let rest = self.drain_tools(idx, &seen);
                if !rest.is_empty() {
                    append_tool_args(c, rest);
                    changed = true;
                }
            }
        }
        if self.template.is_none() {
            self.template = Some(v.clone());
        }
        if changed {
            Some(v.to_string())
        } else {
            Some(data)
        }
    }

    /// Sends whatever is still held, one chunk per choice.
    fn flush_into(&mut self, out: &mut BytesMut) {
        for i in 0..self.pending.len() {
            let text = self.push(i, None, None, true);
            let tools = self.drain_tools(i, &[]);
            if text.is_empty() && tools.is_empty() {
                continue;
            }
            let mut choice = json!({"index": i, "delta": {}, "finish_reason": null});
            if !text.is_empty() {
                set_delta(&mut choice, "content", Value::String(text));
            }
            if !tools.is_empty() {
                append_tool_args(&mut choice, tools);
            }
            let mut chunk = self
                .template
                .clone()
                .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
            chunk["choices"] = json!([choice]);
            if let Some(o) = chunk.as_object_mut() {
                o.remove("usage");
            }
            sse::encode_into(out, None, &chunk.to_string());
        }
    }
}

/// Sets `delta.<key>` of a choice, creating the delta when the chunk has none.
fn set_delta(choice: &mut Value, key: &str, v: Value) {
    if let Some(d) = choice.get_mut("delta").and_then(Value::as_object_mut) {
        d.insert(key.into(), v);
    } else if let Some(obj) = choice.as_object_mut() {
        obj.insert("delta".into(), json!({ key: v }));
    }
}

/// Adds `delta.tool_calls` entries carrying released arguments of earlier calls.
fn append_tool_args(choice: &mut Value, tools: Vec<(u64, String)>) {
    let entries = tools
        .into_iter()
        .map(|(t, a)| json!({"index": t, "function": {"arguments": a}}));
    match choice.pointer_mut("/delta/tool_calls") {
        Some(Value::Array(calls)) => calls.extend(entries),
        _ => set_delta(choice, "tool_calls", Value::Array(entries.collect())),
    }
}

/// The relay's hook: passes `data` through when there is no guard.
pub fn filter(guard: &mut Option<StreamGuard>, data: String, out: &mut BytesMut) -> Option<String> {
    match guard {
        Some(g) => g.filter(data, out),
        None => Some(data),
    }
}
