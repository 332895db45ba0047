//! Streamed completions: pseudonyms restored and (when the policy says so) entities caught even
//! when split across chunks. Each choice keeps a small carry-over: text that could still be
//! the start of a pseudonym (`<EMAIL_`) or of an entity crossing the cut is held back, at most
//! `CARRY` bytes while scanning (plus the longest pseudonym), and released with the next chunk,
//! with the choice's final chunk, or before `[DONE]`. A chunk that is not a readable completion
//! chunk ends the stream with an error event instead of passing unchecked.

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

pub struct StreamGuard {
    outcome: Outcome,
    findings: IntCounterVec,
    /// Held text per choice index.
    pending: Vec<String>,
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

    /// Text of `pending[i]` safe to send now (transformed, restored); the rest stays.
    fn release(&mut self, i: usize, all: bool) -> String {
        let Some(p) = self.pending.get_mut(i) else {
            return String::new();
        };
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
        let mut work: Vec<(usize, Option<String>, bool)> = Vec::new();
        for c in choices.iter() {
            let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            let content = c
                .pointer("/delta/content")
                .and_then(Value::as_str)
                .map(str::to_string);
            let last = c.get("finish_reason").is_some_and(|f| !f.is_null());
            work.push((idx, content, last));
        }
        for (k, (idx, content, last)) in work.into_iter().enumerate() {
            if idx > 1024 {
                continue;
            }
            if self.pending.len() <= idx {
                self.pending.resize(idx + 1, String::new());
            }
            let had = content.is_some();
            if let Some(t) = content {
                self.pending[idx].push_str(&t);
            }
            if !had && !last {
                continue;
            }
            let sent = self.release(idx, last);
            if let Some(c) = choices.get_mut(k) {
                if had || !sent.is_empty() {
                    if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
                        d.insert("content".into(), Value::String(sent));
                        changed = true;
                    } else if let Some(obj) = c.as_object_mut() {
                        obj.insert("delta".into(), json!({"content": sent}));
                        changed = true;
                    }
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
            let text = self.release(i, true);
            if text.is_empty() {
                continue;
            }
            let mut chunk = self
                .template
                .clone()
                .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
            chunk["choices"] =
                json!([{"index": i, "delta": {"content": text}, "finish_reason": null}]);
            if let Some(o) = chunk.as_object_mut() {
                o.remove("usage");
            }
            sse::encode_into(out, None, &chunk.to_string());
        }
    }
}

/// The relay's hook: passes `data` through when there is no guard.
pub fn filter(guard: &mut Option<StreamGuard>, data: String, out: &mut BytesMut) -> Option<String> {
    match guard {
        Some(g) => g.filter(data, out),
        None => Some(data),
    }
}
