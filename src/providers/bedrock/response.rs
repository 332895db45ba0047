//! Bedrock answers as OpenAI answers: Converse responses as `chat.completion`s, InvokeModel
//! embedding answers as embedding lists, ConverseStream events as `chat.completion.chunk`s,
//! and error answers (HTTP errors named by `x-amzn-ErrorType`, exception frames in a stream)
//! as the OpenAI error envelope with the status the retry classifier expects.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::TranslateError;
use crate::api::openai::{PromptTokensDetails, Usage};
use crate::providers::translate::{ChunkHead, TextDelta};

/// Bedrock `usage` in OpenAI terms. Bedrock's `inputTokens` leaves out the tokens read from or
/// written to the prompt cache, which OpenAI counts in `prompt_tokens`.
fn usage_from(u: &Value) -> Usage {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let cached = n("cacheReadInputTokens");
    let prompt = n("inputTokens") + cached + n("cacheWriteInputTokens");
    let completion = n("outputTokens");
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: cached,
        }),
        cache_creation_input_tokens: n("cacheWriteInputTokens"),
    }
}

/// A finish reason OpenAI can show, or the error a broken generation is.
fn finish_reason(reason: Option<&str>, has_calls: bool) -> Result<&'static str, TranslateError> {
    match reason {
        Some("max_tokens" | "model_context_window_exceeded") => Ok("length"),
        Some("tool_use") => Ok("tool_calls"),
        Some("guardrail_intervened" | "content_filtered") => Ok("content_filter"),
        Some(r @ ("malformed_model_output" | "malformed_tool_use")) => Err(
            TranslateError::upstream(format!("Bedrock stopped the generation: {r}")),
        ),
        _ if has_calls => Ok("tool_calls"),
        // end_turn, stop_sequence, and reasons newer than this code: the model stopped, with
        // whatever it produced.
        _ => Ok("stop"),
    }
}

/// An id for a translated response: Bedrock's body carries none (its request id is a header).
fn new_id() -> String {
    format!(
        "chatcmpl-{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

/// The OpenAI `chat.completion` for a Converse response. Reasoning blocks are the model's
/// working, not its answer, and are left out.
fn decode_chat(v: &Value, public_model: &str, created: u64) -> Result<Value, TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array);
    for block in content.into_iter().flatten() {
        if let Some(t) = block["text"].as_str() {
            text.push_str(t);
        } else if let Some(u) = block.get("toolUse") {
            let arguments = match &u["input"] {
                Value::Null => "{}".to_string(),
                input => input.to_string(),
            };
            calls.push(json!({"id": u["toolUseId"], "type": "function",
                "function": {"name": u["name"], "arguments": arguments}}));
        }
    }
    let reason = finish_reason(v["stopReason"].as_str(), !calls.is_empty())?;
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    let mut msg = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        msg["tool_calls"] = calls.into();
    }
    Ok(json!({
        "id": new_id(), "object": "chat.completion", "created": created, "model": public_model,
        "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": reason}],
        "usage": usage_from(&v["usage"]),
    }))
}

/// The OpenAI embeddings list for an InvokeModel answer: Titan's `{embedding,
/// inputTextTokenCount}`, or Cohere's `{embeddings}` (a list of vectors, or `{float: [...]}`
/// from the newer models). Cohere on Bedrock reports no token count.
fn decode_embeddings(v: &Value, public_model: &str) -> Result<Value, TranslateError> {
    let (vectors, tokens): (Vec<&Value>, u64) = if let Some(e) = v.get("embedding") {
        (vec![e], v["inputTextTokenCount"].as_u64().unwrap_or(0))
    } else {
        let e = &v["embeddings"];
        let list = e["float"]
            .as_array()
            .or_else(|| e.as_array())
            .ok_or_else(|| {
                TranslateError::upstream("Bedrock sent embeddings without float vectors".into())
            })?;
        (list.iter().collect(), 0)
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e}))
        .collect();
    Ok(json!({
        "object": "list", "data": data, "model": public_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// A successful non-streaming body as its OpenAI form. The pipeline does not say which
/// endpoint it called, so the top-level keys decide.
pub fn decode_response(
    body: &[u8],
    public_model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        // The position only: serde's own message may quote completion text.
        let (line, column) = (e.line(), e.column());
        TranslateError::upstream(format!(
            "Bedrock sent a response that is not JSON (line {line} column {column})"
        ))
    })?;
    if v.get("output").is_some() || v.get("stopReason").is_some() {
        decode_chat(&v, public_model, created)
    } else if v.get("embedding").is_some() || v.get("embeddings").is_some() {
        decode_embeddings(&v, public_model)
    } else {
        Err(TranslateError::upstream(
            "Bedrock sent a response that is neither a Converse answer nor embeddings".into(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Translates one ConverseStream into OpenAI `chat.completion.chunk`s, event by event: text
/// and tool-call argument fragments go out as they arrive. `messageStop` gives the finish
/// chunk; `metadata` (always last, it carries the usage) the usage chunk when asked for, and
/// ends the stream.
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    started: bool,
    /// Converse content block index -> OpenAI tool call index.
    tools: HashMap<u64, usize>,
    stopped: bool,
    done: bool,
}

impl StreamState {
    pub fn new(public_model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: new_id(),
            model: public_model.to_string(),
            created,
            include_usage,
            usage: Usage::default(),
            started: false,
            tools: HashMap::new(),
            stopped: false,
            done: false,
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether `metadata` (the last event) arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One decoded event-stream message in (named as `eventstream` names them), the OpenAI
    /// chunks to send out. Exception and error messages become an `Err`.
    pub fn on_event(
        &mut self,
        event: Option<&str>,
        data: &str,
    ) -> Result<Vec<String>, TranslateError> {
        if self.done {
            return Ok(Vec::new());
        }
        let event = event.unwrap_or_default();
        // Most of a stream is text deltas: those skip the generic parse.
        if self.started && event == "contentBlockDelta" {
            #[derive(serde::Deserialize)]
            struct Event<'a> {
                #[serde(borrow)]
                delta: TextDelta<'a>,
            }
            if let Ok(Event {
                delta: TextDelta {
                    text: Some(text), ..
                },
            }) = serde_json::from_str::<Event>(data)
            {
                return Ok(if text.is_empty() {
                    Vec::new()
                } else {
                    vec![self.head().text(0, &text)]
                });
            }
        }
        let v: Value = serde_json::from_str(data).map_err(|_| {
            TranslateError::upstream("Bedrock sent a stream event that is not JSON".into())
        })?;
        if let Some(kind) = event.strip_prefix("exception:") {
            return Err(stream_exception(kind, &v));
        }
        if let Some(code) = event.strip_prefix("error:") {
            let message = v["message"].as_str().unwrap_or_default();
            return Err(TranslateError::upstream(format!(
                "Bedrock reported a stream error {code}: {message}"
            )));
        }
        let mut out = Vec::new();
        match event {
            "messageStart" => self.start(&mut out),
            "contentBlockStart" => {
                self.start(&mut out);
                if let Some(tool) = v.pointer("/start/toolUse") {
                    let index = self.tools.len();
                    self.tools
                        .insert(v["contentBlockIndex"].as_u64().unwrap_or(0), index);
                    let call = json!({"index": index, "id": tool["toolUseId"], "type": "function",
                        "function": {"name": tool["name"], "arguments": ""}});
                    out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                }
            }
            "contentBlockDelta" => {
                self.start(&mut out);
                let delta = &v["delta"];
                if let Some(t) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(self.head().text(0, t));
                } else if let Some(args) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
                    let block = v["contentBlockIndex"].as_u64().unwrap_or(0);
                    if let (Some(index), false) = (self.tools.get(&block), args.is_empty()) {
                        let call = json!({"index": index, "function": {"arguments": args}});
                        out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                    }
                }
                // reasoningContent deltas are the model's working, not its answer.
            }
            "messageStop" => {
                self.start(&mut out);
                let reason = finish_reason(v["stopReason"].as_str(), !self.tools.is_empty())?;
                self.stopped = true;
                out.push(self.chunk(json!({}), Some(reason)));
            }
            "metadata" => {
                self.usage = usage_from(&v["usage"]);
                if !self.stopped {
                    // Never leave the client without a finish reason.
                    self.start(&mut out);
                    let reason = if self.tools.is_empty() {
                        "stop"
                    } else {
                        "tool_calls"
                    };
                    out.push(self.chunk(json!({}), Some(reason)));
                }
                if self.include_usage {
                    out.push(self.head().usage(&self.usage));
                }
                self.done = true;
            }
            // contentBlockStop and event types newer than this code: nothing to show.
            _ => {}
        }
        Ok(out)
    }

    /// OpenAI's role chunk, once, before anything else.
    fn start(&mut self, out: &mut Vec<String>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn head(&self) -> ChunkHead<'_> {
        ChunkHead {
            id: &self.id,
            model: &self.model,
            created: self.created,
            include_usage: self.include_usage,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        self.head().choice(0, &delta, finish)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// (Bedrock exception name, status to give, OpenAI type, OpenAI code), by name; stream
/// exception types are the same names in camelCase.
const ERRORS: &[(&str, u16, &str, &str)] = &[
    (
        "ValidationException",
        400,
        "invalid_request_error",
        "invalid_request",
    ),
    (
        "AccessDeniedException",
        403,
        "permission_error",
        "permission_denied",
    ),
    // AWS's answers to a bad or expired key or signature: the provider credentials are at
    // fault, which is a 401 to OpenAI clients (and to the retry classifier).
    (
        "UnrecognizedClientException",
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        "InvalidSignatureException",
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        "ExpiredTokenException",
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        "IncompleteSignatureException",
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        "MissingAuthenticationTokenException",
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        "ResourceNotFoundException",
        404,
        "not_found_error",
        "model_not_found",
    ),
    (
        "ThrottlingException",
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    // The account's quota, not a momentary rate: OpenAI's name for that.
    (
        "ServiceQuotaExceededException",
        429,
        "rate_limit_error",
        "insufficient_quota",
    ),
    // Sent as 429, but the model is loading, not the key over its limit: a 503 lets the
    // classifier move on without resting the key.
    (
        "ModelNotReadyException",
        503,
        "overloaded_error",
        "model_not_ready",
    ),
    (
        "ServiceUnavailableException",
        503,
        "overloaded_error",
        "overloaded",
    ),
    ("InternalServerException", 500, "api_error", "server_error"),
    ("ModelTimeoutException", 504, "timeout_error", "timeout"),
    ("ModelErrorException", 502, "upstream_error", "model_error"),
    (
        "ModelStreamErrorException",
        502,
        "upstream_error",
        "model_error",
    ),
];

/// The error of an exception name (either case of its first letter), with `message`.
fn named_error(name: &str, message: Option<String>) -> Option<TranslateError> {
    let &(name, status, kind, code) = ERRORS.iter().find(|r| r.0.eq_ignore_ascii_case(name))?;
    let message = message.unwrap_or_else(|| format!("Bedrock answered with {name}"));
    let lower = message.to_ascii_lowercase();
    let too_long = lower.contains("too long")
        || lower.contains("too many input tokens")
        || lower.contains("context window")
        || (lower.contains("token") && lower.contains("exceed"));
    let (code, param) = match status {
        400 if too_long => ("context_length_exceeded", Some("messages")),
        404 if lower.contains("model") => (code, Some("model")),
        404 => ("not_found", None),
        _ => (code, None),
    };
    Some(TranslateError {
        status,
        kind,
        code,
        message,
        param: param.map(str::to_string),
    })
}

/// The message of a Bedrock error body (`message`, or `Message` from some AWS front ends).
fn message_of(body: Option<&Value>) -> Option<String> {
    let b = body?;
    b["message"]
        .as_str()
        .or_else(|| b["Message"].as_str())
        .map(str::to_string)
}

/// The status and OpenAI error body for a Bedrock error answer. The exception is named by the
/// `x-amzn-ErrorType` header (`Name:namespace`), or the body's `__type` (`namespace#Name`);
/// without either, the status decides. The provider's message is kept (it says what to fix),
/// but a body that is not JSON (a proxy's HTML page) is not echoed.
pub fn decode_error(status: u16, error_type: Option<&str>, body: &[u8]) -> (u16, Value) {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let message = message_of(parsed.as_ref());
    let from_body = parsed
        .as_ref()
        .and_then(|b| b["__type"].as_str())
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
    let name = error_type
        .map(|t| t.split(':').next().unwrap_or(t).trim().to_string())
        .or(from_body);
    let e = name
        .and_then(|n| named_error(&n, message.clone()))
        .unwrap_or_else(|| by_status(status, message));
    (e.status, e.to_openai())
}

fn by_status(status: u16, message: Option<String>) -> TranslateError {
    let row = match status {
        400 => ERRORS.first(),
        403 => ERRORS.get(1),
        404 => ERRORS.iter().find(|r| r.1 == 404),
        429 => ERRORS.iter().find(|r| r.0 == "ThrottlingException"),
        500 => ERRORS.iter().find(|r| r.1 == 500),
        503 => ERRORS.iter().find(|r| r.0 == "ServiceUnavailableException"),
        408 | 504 => ERRORS.iter().find(|r| r.1 == 504),
        _ => None,
    };
    if let Some(e) = row.and_then(|r| named_error(r.0, message.clone())) {
        return e;
    }
    let status = if status >= 400 { status } else { 502 };
    TranslateError {
        status,
        kind: "upstream_error",
        code: "upstream_error",
        message: message.unwrap_or_else(|| format!("Bedrock answered with HTTP {status}")),
        param: None,
    }
}

/// An exception message in a stream (`throttlingException`, ...) as the error that ends it.
fn stream_exception(kind: &str, payload: &Value) -> TranslateError {
    let message = message_of(Some(payload));
    named_error(kind, message.clone()).unwrap_or_else(|| {
        TranslateError::upstream(message.unwrap_or_else(|| format!("Bedrock sent {kind}")))
    })
}
