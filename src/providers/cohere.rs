//! Cohere's Chat v2 API (`https://api.cohere.com`): translation between OpenAI Chat
//! Completions / Embeddings and `POST /v2/chat` / `POST /v2/embed`, for requests, responses,
//! stream events and error bodies. No I/O lives here: `pipeline/forward.rs` sends the request,
//! with the key as `Authorization: Bearer <key>` (the default). The model goes in the body.
//!
//! Cohere v2 is close to OpenAI's shape (same message roles, tool and image part layout), so
//! most of the work is renaming sampling fields, mapping `tool_choice` and reading Cohere's
//! event-typed stream.
//!
//! Error messages made here name fields and indexes, never prompt text.

pub use super::translate::TranslateError;
use super::translate::{ChunkHead, TextDelta};
use serde_json::{json, Map, Value};

use crate::api::openai::{
    ChatRequest, Content, EmbeddingsRequest, Message, PromptTokensDetails, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://api.cohere.com";
pub const CHAT_PATH: &str = "/v2/chat";
pub const EMBED_PATH: &str = "/v2/embed";

// ---------------------------------------------------------------------------------------------
// Request

/// The Cohere `/v2/chat` body for an OpenAI chat request. Dropped for lack of an equivalent:
/// `user`/`safety_identifier`, `metadata`, `store`, `logit_bias`, `parallel_tool_calls`,
/// `service_tier`, `reasoning_effort`, `stream_options` (Cohere always reports usage), and
/// `logprobs`/`top_logprobs` (the decoder does not carry Cohere's logprobs back, so asking for
/// them would cost without showing anything).
pub fn encode_request(req: &ChatRequest, upstream_model: &str) -> Result<Value, TranslateError> {
    let x = &req.extra;
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    body.insert("messages".into(), encode_messages(&req.messages)?.into());
    if let Some(tools) = present(x, "tools") {
        let (tools, strict) = encode_tools(tools)?;
        // A tool_choice without tools means nothing; leave both out.
        if !tools.is_empty() {
            let (tools, choice) = apply_tool_choice(tools, present(x, "tool_choice"))?;
            body.insert("tools".into(), tools.into());
            if strict {
                body.insert("strict_tools".into(), true.into());
            }
            if let Some(choice) = choice {
                body.insert("tool_choice".into(), choice.into());
            }
        }
    }
    // Same meaning on both sides, so these pass through as numbers; Cohere judges the ranges.
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_k", "k"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ] {
        if let Some(v) = present(x, from) {
            if !v.is_number() {
                return Err(TranslateError::invalid(from, "must be a number"));
            }
            body.insert(to.into(), v.clone());
        }
    }
    if let Some(p) = present(x, "top_p") {
        let p = p
            .as_f64()
            .ok_or_else(|| TranslateError::invalid("top_p", "must be a number"))?;
        // Cohere takes 0.01..=0.99 only, while OpenAI clients routinely send the default 1;
        // the nearest allowed value keeps the client's intent instead of failing upstream.
        body.insert("p".into(), json!(p.clamp(0.01, 0.99)));
    }
    let max = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|k| present(x, k).map(|v| (k, v)));
    if let Some((key, v)) = max {
        body.insert("max_tokens".into(), positive(v, key)?);
    }
    if let Some(stop) = stop_sequences(x)? {
        body.insert("stop_sequences".into(), stop);
    }
    if let Some(seed) = present(x, "seed") {
        if !(seed.is_i64() || seed.is_u64()) {
            return Err(TranslateError::invalid("seed", "must be an integer"));
        }
        body.insert("seed".into(), seed.clone());
    }
    if let Some(n) = present(x, "n") {
        if n.as_u64() != Some(1) {
            return Err(TranslateError::unsupported(
                "n",
                "must be 1: Cohere returns one choice",
            ));
        }
    }
    if let Some(format) = present(x, "response_format") {
        if let Some(f) = response_format(format)? {
            body.insert("response_format".into(), f);
        }
    }
    body.insert("stream".into(), req.is_stream().into());
    Ok(body.into())
}

/// A field that is there and not `null` (clients send `"stop": null` and mean "absent").
fn present<'a>(x: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    x.get(key).filter(|v| !v.is_null())
}

fn positive(v: &Value, key: &str) -> Result<Value, TranslateError> {
    if v.as_u64().is_some_and(|n| n > 0) {
        Ok(v.clone())
    } else {
        Err(TranslateError::invalid(key, "must be a positive integer"))
    }
}

/// OpenAI's `stop` (a string or a list) as a list; empty strings stop nothing and are left out.
fn stop_sequences(x: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let bad = || TranslateError::invalid("stop", "must be a string or an array of strings");
    let list = match present(x, "stop") {
        None => return Ok(None),
        Some(Value::Array(items)) => items.as_slice(),
        Some(v @ Value::String(_)) => std::slice::from_ref(v),
        Some(_) => return Err(bad()),
    };
    let mut kept = Vec::with_capacity(list.len());
    for s in list {
        let s = s.as_str().ok_or_else(bad)?;
        if !s.is_empty() {
            kept.push(Value::from(s));
        }
    }
    Ok((!kept.is_empty()).then(|| kept.into()))
}

/// OpenAI `response_format` as Cohere's: a JSON schema rides along on `json_object`.
fn response_format(format: &Value) -> Result<Option<Value>, TranslateError> {
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => match format.pointer("/json_schema/schema") {
            Some(schema) if schema.is_object() => {
                Ok(Some(json!({"type": "json_object", "json_schema": schema})))
            }
            _ => Err(TranslateError::invalid(
                "response_format.json_schema.schema",
                "must be an object",
            )),
        },
        _ => Err(TranslateError::invalid(
            "response_format.type",
            "must be text, json_schema or json_object",
        )),
    }
}

/// The tools in Cohere's form (the same as OpenAI's, minus `strict`), and whether every one
/// asked for strict schemas: Cohere's `strict_tools` applies to all tools or none, and forcing
/// it on tools that did not ask could reject their schemas.
fn encode_tools(tools: &Value) -> Result<(Vec<Value>, bool), TranslateError> {
    let items = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(items.len());
    let mut all_strict = true;
    for (i, tool) in items.iter().enumerate() {
        if tool["type"] != "function" {
            let what = "must be function: Cohere takes no other tool type";
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                what,
            ));
        }
        let f = &tool["function"];
        let name = f["name"].as_str().ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].function.name"), "is required")
        })?;
        let mut function = json!({ "name": name });
        if f["description"].is_string() {
            function["description"] = f["description"].clone();
        }
        if f["parameters"].is_object() {
            function["parameters"] = f["parameters"].clone();
        }
        all_strict &= f["strict"] == true;
        out.push(json!({"type": "function", "function": function}));
    }
    Ok((out, all_strict))
}

/// Cohere has `REQUIRED` and `NONE` and no named choice; a named function becomes `REQUIRED`
/// with only that tool offered, which forces the same call.
fn apply_tool_choice(
    tools: Vec<Value>,
    choice: Option<&Value>,
) -> Result<(Vec<Value>, Option<&'static str>), TranslateError> {
    let bad =
        || TranslateError::invalid("tool_choice", "must be none, auto, required or a function");
    match choice {
        None => Ok((tools, None)),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok((tools, None)),
            "required" => Ok((tools, Some("REQUIRED"))),
            "none" => Ok((tools, Some("NONE"))),
            _ => Err(bad()),
        },
        Some(obj) => {
            let name = obj
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            let kept: Vec<Value> = tools
                .into_iter()
                .filter(|t| t["function"]["name"] == name)
                .collect();
            if kept.is_empty() {
                let what = "names a function that is not in tools";
                return Err(TranslateError::invalid("tool_choice.function.name", what));
            }
            Ok((kept, Some("REQUIRED")))
        }
    }
}

fn encode_messages(messages: &[Message]) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let msg = match m.role.as_str() {
            // Cohere has no developer role; it means the same as system.
            "system" | "developer" => {
                let text = text_only(m, i)?;
                json!({"role": "system", "content": text})
            }
            "user" => json!({"role": "user", "content": user_content(m, i)?}),
            "assistant" => assistant_message(m, i)?,
            "tool" => tool_message(m, i)?,
            _ => {
                let what = "must be system, developer, user, assistant or tool";
                return Err(TranslateError::unsupported(
                    format!("messages[{i}].role"),
                    what,
                ));
            }
        };
        out.push(msg);
    }
    Ok(out)
}

/// The text of a message that takes text only, with a refusal part (an assistant's) skipped.
fn text_only(m: &Message, i: usize) -> Result<String, TranslateError> {
    let parts = match &m.content {
        None => return Ok(String::new()),
        Some(Content::Text(s)) => return Ok(s.clone()),
        Some(Content::Parts(parts)) => parts,
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part.kind.as_str() {
            "text" => texts.push(part.text.as_deref().unwrap_or_default()),
            "refusal" => {}
            _ => {
                let param = format!("messages[{i}].content[{j}].type");
                let what = "is a content part type Cohere does not take here";
                return Err(TranslateError::unsupported(param, what));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// A user message's content: a string stays a string; text and image parts keep OpenAI's
/// layout, which Cohere v2 shares.
fn user_content(m: &Message, i: usize) -> Result<Value, TranslateError> {
    let parts = match &m.content {
        None => return Ok(Value::from("")),
        Some(Content::Text(s)) => return Ok(Value::from(s.as_str())),
        Some(Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match part.kind.as_str() {
            "text" => {
                out.push(json!({"type": "text", "text": part.text.as_deref().unwrap_or_default()}))
            }
            "image_url" => {
                let image = part.extra.get("image_url");
                // OpenAI also accepts the URL as a bare string.
                let url = image
                    .and_then(|v| v.get("url").unwrap_or(v).as_str())
                    .ok_or_else(|| {
                        TranslateError::invalid(format!("{param}.image_url.url"), "is required")
                    })?;
                let mut image_url = json!({ "url": url });
                if let Some(detail) = image
                    .and_then(|v| v.get("detail"))
                    .filter(|d| d.is_string())
                {
                    image_url["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image_url}));
            }
            _ => {
                let what = "is a content part type Cohere does not take";
                return Err(TranslateError::unsupported(param + ".type", what));
            }
        }
    }
    Ok(out.into())
}

fn assistant_message(m: &Message, i: usize) -> Result<Value, TranslateError> {
    let mut msg = json!({"role": "assistant"});
    let text = text_only(m, i)?;
    // Cohere rejects an empty content string next to tool calls; absent is what it expects.
    if !text.is_empty() {
        msg["content"] = text.into();
    }
    let calls = match m.extra.get("tool_calls") {
        None | Some(Value::Null) => return Ok(msg),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            let param = format!("messages[{i}].tool_calls");
            return Err(TranslateError::invalid(param, "must be an array"));
        }
    };
    let mut out = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}]");
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (call["id"].as_str(), name) else {
            return Err(TranslateError::invalid(
                param,
                "needs an id and a function.name",
            ));
        };
        // Cohere wants the arguments as a JSON string, as OpenAI sends them; an object some
        // clients send instead is serialised.
        let arguments = match &call["function"]["arguments"] {
            Value::Null => "{}".to_string(),
            Value::String(s) if s.trim().is_empty() => "{}".to_string(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        out.push(json!({"id": id, "type": "function",
            "function": {"name": name, "arguments": arguments}}));
    }
    if !out.is_empty() {
        msg["tool_calls"] = out.into();
    }
    Ok(msg)
}

/// A tool result. Output that is a JSON object goes as a `document` (Cohere grounds answers and
/// citations on documents); anything else as text.
fn tool_message(m: &Message, i: usize) -> Result<Value, TranslateError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TranslateError::invalid(format!("messages[{i}].tool_call_id"), "is required")
        })?;
    let text = m.content.as_ref().map(Content::text).unwrap_or_default();
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(data @ Value::Object(_)) => json!([{"type": "document", "document": {"data": data}}]),
        _ => json!([{"type": "text", "text": text}]),
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// The `/v2/embed` body for an OpenAI embeddings request. OpenAI has no notion of Cohere's
/// `input_type`; `search_document` is the neutral choice for stored vectors, and a client that
/// knows better may send `input_type` itself. `encoding_format` is dropped: floats come back,
/// which OpenAI's SDKs accept whatever they asked for.
pub fn encode_embeddings(
    req: &EmbeddingsRequest,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let token_arrays =
        || TranslateError::unsupported("input", "must be text: Cohere does not take token arrays");
    let texts: Vec<&str> = match &req.input {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) if items.is_empty() => {
            return Err(TranslateError::invalid("input", "must not be empty"))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(token_arrays))
            .collect::<Result<_, _>>()?,
        _ => return Err(token_arrays()),
    };
    let input_type = match present(&req.extra, "input_type") {
        None => "search_document",
        Some(v) => v
            .as_str()
            .ok_or_else(|| TranslateError::invalid("input_type", "must be a string"))?,
    };
    let mut body = json!({
        "model": upstream_model, "texts": texts, "input_type": input_type,
        "embedding_types": ["float"],
    });
    if let Some(d) = present(&req.extra, "dimensions") {
        body["output_dimension"] = positive(d, "dimensions")?;
    }
    Ok(body)
}

/// The OpenAI embeddings list for a `/v2/embed` answer (`embeddings.float`, or the older
/// plain list of vectors).
fn decode_embeddings(v: &Value, public_model: &str) -> Result<Value, TranslateError> {
    let e = &v["embeddings"];
    let items = e["float"]
        .as_array()
        .or_else(|| e.as_array())
        .ok_or_else(|| {
            TranslateError::upstream("Cohere sent embeddings without float vectors".into())
        })?;
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e}))
        .collect();
    let tokens = v
        .pointer("/meta/billed_units/input_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(json!({
        "object": "list", "data": data, "model": public_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

// ---------------------------------------------------------------------------------------------
// Response

/// Cohere `usage` in OpenAI terms. `tokens` are what the model processed (what OpenAI counts);
/// `billed_units` leave out Cohere's own prompt scaffolding and are only a fallback.
fn usage_from(u: &Value) -> Usage {
    let count = |key: &str| {
        u["tokens"][key]
            .as_u64()
            .or_else(|| u["billed_units"][key].as_u64())
            .unwrap_or(0)
    };
    let (prompt, completion) = (count("input_tokens"), count("output_tokens"));
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: u["cached_tokens"].as_u64().unwrap_or(0),
        }),
        cache_creation_input_tokens: 0,
    }
}

/// A finish reason that OpenAI can show, or the error a failed generation is.
fn finish_reason(reason: Option<&str>, has_calls: bool) -> Result<&'static str, TranslateError> {
    match reason {
        Some("MAX_TOKENS") => Ok("length"),
        Some("ERROR") => Err(TranslateError::upstream(
            "Cohere stopped the generation with an error".into(),
        )),
        Some("TIMEOUT") => Err(TranslateError {
            status: 504,
            kind: "timeout_error",
            code: "timeout",
            message: "Cohere timed out generating the response".into(),
            param: None,
        }),
        Some("TOOL_CALL") => Ok("tool_calls"),
        _ if has_calls => Ok("tool_calls"),
        // COMPLETE, STOP_SEQUENCE, and reasons newer than this code: the model stopped, with
        // whatever it produced.
        _ => Ok("stop"),
    }
}

/// A Cohere tool call as OpenAI's (arguments as a JSON string, as OpenAI clients parse them).
fn tool_call(call: &Value) -> Value {
    let arguments = match &call["function"]["arguments"] {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_string(),
        v => v.to_string(),
    };
    json!({"id": call["id"], "type": "function",
        "function": {"name": call["function"]["name"], "arguments": arguments}})
}

/// The OpenAI `chat.completion` for a Cohere chat answer. `created` is the Unix time to report
/// (Cohere sends none); `public_model` is the name the client asked for. `tool_plan` (the
/// model's note on why it calls tools) has no OpenAI field and is left out.
fn decode_chat(v: &Value, public_model: &str, created: u64) -> Result<Value, TranslateError> {
    let message = &v["message"];
    let mut text = String::new();
    if let Some(s) = message["content"].as_str() {
        text.push_str(s);
    }
    // Thinking parts are the model's working, not its answer.
    for part in message["content"].as_array().into_iter().flatten() {
        if part["type"] == "text" {
            text.push_str(part["text"].as_str().unwrap_or_default());
        }
    }
    let tool_calls: Vec<Value> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(tool_call)
        .collect();
    let reason = finish_reason(v["finish_reason"].as_str(), !tool_calls.is_empty())?;
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    let mut msg = json!({"role": "assistant", "content": content, "refusal": null});
    if !tool_calls.is_empty() {
        msg["tool_calls"] = tool_calls.into();
    }
    let usage = usage_from(&v["usage"]);
    Ok(json!({
        "id": v["id"].as_str().unwrap_or_default(), "object": "chat.completion",
        "created": created, "model": public_model,
        "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": reason}],
        "usage": usage,
    }))
}

/// A successful non-streaming body as its OpenAI form: a chat answer becomes a chat completion,
/// an embed answer an embeddings list. The pipeline does not say which it asked for, so the
/// top-level keys decide.
pub fn decode_response(
    body: &[u8],
    public_model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        // The position only: serde's own message may quote completion text.
        let (line, column) = (e.line(), e.column());
        TranslateError::upstream(format!(
            "Cohere sent a response that is not JSON (line {line} column {column})"
        ))
    })?;
    if v.get("embeddings").is_some() {
        decode_embeddings(&v, public_model)
    } else if v.get("message").is_some_and(Value::is_object) || v.get("finish_reason").is_some() {
        decode_chat(&v, public_model, created)
    } else {
        Err(TranslateError::upstream(
            "Cohere sent a response that is neither a chat answer nor embeddings".into(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Translates one Cohere SSE stream into OpenAI `chat.completion.chunk`s, event by event: text
/// and tool-call argument fragments go out as they arrive. `message-end` ends the stream (with
/// the finish chunk and, if asked for, the usage chunk); a `data: [DONE]` Cohere may send after
/// it is ignored, because the relay sends OpenAI's own once [`StreamState::is_done`].
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    started: bool,
    /// Tool calls started so far; the last one is the one deltas extend.
    tools: usize,
    /// Content blocks (by Cohere index) that are thinking, whose deltas are not shown.
    thinking: Vec<u64>,
    done: bool,
}

impl StreamState {
    /// `include_usage`: end with the usage-only chunk (`choices: []`), as OpenAI does for
    /// `stream_options.include_usage`. [`StreamState::usage`] has the counts either way.
    pub fn new(public_model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: String::new(),
            model: public_model.to_string(),
            created,
            include_usage,
            usage: Usage::default(),
            started: false,
            tools: 0,
            thinking: Vec::new(),
            done: false,
        }
    }

    /// Usage so far in OpenAI terms; final once the stream is done.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether `message-end` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One Cohere SSE event in, the OpenAI chunks to send out. A generation that ends in
    /// `ERROR` or `TIMEOUT` becomes an `Err`.
    pub fn on_event(
        &mut self,
        event: Option<&str>,
        data: &str,
    ) -> Result<Vec<String>, TranslateError> {
        if data.trim() == "[DONE]" || self.done {
            return Ok(Vec::new());
        }
        // Most of a stream is text deltas: those skip the generic parse.
        if self.started && event == Some("content-delta") {
            #[derive(serde::Deserialize)]
            struct Event<'a> {
                #[serde(default)]
                index: u64,
                #[serde(borrow)]
                delta: Delta<'a>,
            }
            #[derive(serde::Deserialize)]
            struct Delta<'a> {
                #[serde(borrow)]
                message: Message<'a>,
            }
            #[derive(serde::Deserialize)]
            struct Message<'a> {
                #[serde(borrow)]
                content: TextDelta<'a>,
            }
            if let Ok(e) = serde_json::from_str::<Event>(data) {
                let mut out = Vec::new();
                if !self.thinking.contains(&e.index) {
                    self.text(e.delta.message.content.text.as_deref(), &mut out);
                }
                return Ok(out);
            }
        }
        let v: Value = serde_json::from_str(data).map_err(|_| {
            TranslateError::upstream("Cohere sent a stream event that is not JSON".into())
        })?;
        let kind = v["type"].as_str().or(event).unwrap_or_default();
        let delta = &v["delta"]["message"];
        let mut out = Vec::new();
        match kind {
            "message-start" => {
                if let Some(id) = v["id"].as_str() {
                    id.clone_into(&mut self.id);
                }
                self.start(&mut out);
            }
            "content-start" => {
                self.start(&mut out);
                let content = &delta["content"];
                if content["type"] == "thinking" {
                    self.thinking.push(v["index"].as_u64().unwrap_or(0));
                } else {
                    self.text(content["text"].as_str(), &mut out);
                }
            }
            "content-delta" => {
                self.start(&mut out);
                let index = v["index"].as_u64().unwrap_or(0);
                if !self.thinking.contains(&index) {
                    self.text(delta["content"]["text"].as_str(), &mut out);
                }
            }
            "tool-call-start" => {
                self.start(&mut out);
                let call = &delta["tool_calls"];
                let args = call["function"]["arguments"].as_str().unwrap_or_default();
                let call = json!({"index": self.tools, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": args}});
                self.tools += 1;
                out.push(self.chunk(json!({ "tool_calls": [call] }), None));
            }
            "tool-call-delta" => {
                let args = delta["tool_calls"]["function"]["arguments"].as_str();
                if let (Some(args), Some(index)) =
                    (args.filter(|a| !a.is_empty()), self.tools.checked_sub(1))
                {
                    let call = json!({"index": index, "function": {"arguments": args}});
                    out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                }
            }
            "message-end" => {
                self.start(&mut out);
                let end = &v["delta"];
                self.usage = usage_from(&end["usage"]);
                let reason = finish_reason(end["finish_reason"].as_str(), self.tools > 0)?;
                out.push(self.chunk(json!({}), Some(reason)));
                if self.include_usage {
                    out.push(self.head().usage(&self.usage));
                }
                self.done = true;
            }
            // tool-plan-delta (the model's note on its plan, no OpenAI field), content-end,
            // tool-call-end, citations, debug and event types newer than this code: nothing
            // the client can use.
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

    fn text(&self, text: Option<&str>, out: &mut Vec<String>) {
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push(self.head().text(0, t));
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

/// The status and OpenAI error body for a Cohere error answer (`{"id","message"}`). The status
/// decides the type and code; the provider's message is kept (it says what to fix), but a body
/// that is not Cohere's JSON (a proxy's HTML page) is not echoed.
pub fn decode_error(status: u16, body: &[u8]) -> (u16, Value) {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string));
    let lower = message.as_deref().unwrap_or_default().to_ascii_lowercase();
    let (status, kind, code, param) = match status {
        400 | 422
            if lower.contains("too many tokens")
                || (lower.contains("token") && lower.contains("exceed")) =>
        {
            (
                400,
                "invalid_request_error",
                "context_length_exceeded",
                Some("messages"),
            )
        }
        400 | 422 => (status, "invalid_request_error", "invalid_request", None),
        401 => (401, "authentication_error", "invalid_api_key", None),
        // Cohere's "invalid or blocked token" status is not one OpenAI clients know; to them
        // it is a bad key.
        498 => (401, "authentication_error", "invalid_api_key", None),
        403 => (403, "permission_error", "permission_denied", None),
        404 if lower.contains("model") => {
            (404, "not_found_error", "model_not_found", Some("model"))
        }
        404 => (404, "not_found_error", "not_found", None),
        429 => (429, "rate_limit_error", "rate_limit_exceeded", None),
        499 => (499, "api_error", "request_cancelled", None),
        500 => (500, "api_error", "server_error", None),
        501 => (501, "invalid_request_error", "unsupported_parameter", None),
        // Temporary and retryable: the model is overloaded.
        503 => (503, "overloaded_error", "overloaded", None),
        504 => (504, "timeout_error", "timeout", None),
        s if s >= 400 => (s, "upstream_error", "upstream_error", None),
        _ => (502, "upstream_error", "upstream_error", None),
    };
    let e = TranslateError {
        status,
        kind,
        code,
        message: message.unwrap_or_else(|| format!("Cohere answered with HTTP {status}")),
        param: param.map(str::to_string),
    };
    (e.status, e.to_openai())
}

// ---------------------------------------------------------------------------------------------
// The adapter

/// The Cohere v2 wire format as a gateway adapter.
pub struct Cohere;

impl super::Adapter for Cohere {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        _provider: &crate::config::Provider,
    ) -> Result<super::UpstreamRequest, crate::error::Error> {
        let body = encode_request(req, upstream_model).map_err(TranslateError::into_error)?;
        Ok(super::UpstreamRequest {
            path: CHAT_PATH.to_string(),
            body: bytes::Bytes::from(body.to_string()),
            stream: req.is_stream(),
        })
    }

    fn embeddings(
        &self,
        req: &mut EmbeddingsRequest,
        upstream_model: &str,
        _provider: &crate::config::Provider,
    ) -> Result<super::UpstreamRequest, crate::error::Error> {
        let body = encode_embeddings(req, upstream_model).map_err(TranslateError::into_error)?;
        Ok(super::UpstreamRequest {
            path: EMBED_PATH.to_string(),
            body: bytes::Bytes::from(body.to_string()),
            stream: false,
        })
    }

    fn decode_body(
        &self,
        body: bytes::Bytes,
        public_model: &str,
    ) -> Result<bytes::Bytes, crate::error::Error> {
        super::translate::body_or_502(
            decode_response(&body, public_model, super::translate::unix_now()),
            "cohere",
        )
    }

    fn decode_error(
        &self,
        status: http::StatusCode,
        body: bytes::Bytes,
    ) -> (http::StatusCode, bytes::Bytes) {
        super::translate::error_answer(status, decode_error(status.as_u16(), &body))
    }

    fn stream(
        &self,
        public_model: &str,
        include_usage: bool,
    ) -> Option<Box<dyn super::StreamTranslate>> {
        Some(Box::new(StreamState::new(
            public_model,
            super::translate::unix_now(),
            include_usage,
        )))
    }
}

super::stream_translate!(StreamState);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{Event, Parser};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/cohere/", $name))
        };
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn encode(openai: &str) -> Value {
        let req: ChatRequest = serde_json::from_str(openai).unwrap();
        encode_request(&req, "command-a-03-2025").unwrap()
    }

    fn encode_err(openai: Value) -> TranslateError {
        let req: ChatRequest = serde_json::from_value(openai).unwrap();
        encode_request(&req, "m").unwrap_err()
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn chat_request() {
        let got = encode(fixture!("openai/chat.request.json"));
        let want = json(fixture!("chat.request.json"));
        for key in [
            "model",
            "messages",
            "temperature",
            "stop_sequences",
            "stream",
        ] {
            assert_eq!(got[key], want[key], "{key}");
        }
        // The fixtures' values differ here: the client's go through, top_p 1 clamped into
        // Cohere's range.
        assert_eq!((&got["p"], &got["max_tokens"]), (&json!(0.99), &json!(64)));
        // `n: 1` and `user` have no field; no top_k was sent, so no `k`.
        let mut k = keys(&got);
        k.sort_unstable();
        assert_eq!(
            k,
            [
                "max_tokens",
                "messages",
                "model",
                "p",
                "stop_sequences",
                "stream",
                "temperature"
            ]
        );
    }

    #[test]
    fn stream_request() {
        let got = encode(fixture!("openai/chat.stream.request.json"));
        let want = json(fixture!("chat.stream.request.json"));
        assert_eq!(got, want);
    }

    #[test]
    fn tools_request() {
        let openai = json(fixture!("openai/tools.request.json"));
        let got = encode(fixture!("openai/tools.request.json"));
        let want = json(fixture!("tools.request.json"));
        for key in ["model", "messages", "strict_tools"] {
            assert_eq!(got[key], want[key], "{key}");
        }
        let (tool, want_tool) = (&got["tools"][0], &want["tools"][0]);
        assert_eq!(tool["type"], want_tool["type"]);
        for key in ["name", "description"] {
            assert_eq!(tool["function"][key], want_tool["function"][key], "{key}");
        }
        // The schema goes through untouched (the fixture omits additionalProperties).
        assert_eq!(
            tool["function"]["parameters"],
            openai["tools"][0]["function"]["parameters"]
        );
        for key in ["type", "properties", "required"] {
            assert_eq!(
                tool["function"]["parameters"][key],
                want_tool["function"]["parameters"][key]
            );
        }
        assert!(tool["function"].get("strict").is_none());
        // "auto" is Cohere's default: no tool_choice.
        assert!(got.get("tool_choice").is_none());
        assert_eq!(got["tools"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn tool_choice_variants() {
        let mut req = json(fixture!("openai/tools.request.json"));
        let second = json!({"type": "function", "function": {"name": "other"}});
        req["tools"].as_array_mut().unwrap().push(second);
        req["tool_choice"] = json!("required");
        let got = encode(&req.to_string());
        assert_eq!(got["tool_choice"], "REQUIRED");
        // Not every tool is strict, so strict_tools stays off.
        assert!(got.get("strict_tools").is_none());
        req["tool_choice"] = json!("none");
        assert_eq!(encode(&req.to_string())["tool_choice"], "NONE");
        req["tool_choice"] = json!({"type": "function", "function": {"name": "other"}});
        let got = encode(&req.to_string());
        assert_eq!(got["tool_choice"], "REQUIRED");
        assert_eq!(
            got["tools"],
            json!([{"type": "function", "function": {"name": "other"}}])
        );
        req["tool_choice"] = json!({"type": "function", "function": {"name": "missing"}});
        let req2: ChatRequest = serde_json::from_value(req.clone()).unwrap();
        let e = encode_request(&req2, "m").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice.function.name"));
        // A choice without tools says nothing.
        req["tools"] = json!([]);
        req["tool_choice"] = json!("required");
        let got = encode(&req.to_string());
        assert!(got.get("tool_choice").is_none() && got.get("tools").is_none());
    }

    #[test]
    fn tool_followup_request() {
        let openai = json(fixture!("openai/tools.followup.request.json"));
        let got = encode(fixture!("openai/tools.followup.request.json"));
        let want = json(fixture!("tools.followup.request.json"));
        let (msgs, want_msgs) = (got["messages"].as_array().unwrap(), &want["messages"]);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], want_msgs[0]);
        // The ids are the client's own (the fixtures' differ); all else matches Cohere's.
        let id = &openai["messages"][1]["tool_calls"][0]["id"];
        let call = &msgs[1]["tool_calls"][0];
        assert_eq!(&call["id"], id);
        let want_call = &want_msgs[1]["tool_calls"][0];
        for key in ["type", "function"] {
            assert_eq!(call[key], want_call[key], "{key}");
        }
        // OpenAI has no tool_plan, and a null content is left out.
        assert_eq!(keys(&msgs[1]), ["role", "tool_calls"]);
        assert_eq!(&msgs[2]["tool_call_id"], id);
        assert_eq!(msgs[2]["role"], "tool");
        assert_eq!(msgs[2]["content"], want_msgs[2]["content"]);
        assert_eq!(
            got["tools"][0]["function"]["name"],
            want["tools"][0]["function"]["name"]
        );
    }

    #[test]
    fn tool_results_that_are_not_objects_go_as_text() {
        let got = encode(
            &json!({"model": "m", "messages": [
                {"role": "assistant", "content": [{"type": "text", "text": "let me see"}],
                 "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "plain"},
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "[1]"}]},
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]}]})
            .to_string(),
        );
        let msgs = &got["messages"];
        assert_eq!(msgs[0]["content"], "let me see");
        assert_eq!(msgs[0]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(
            msgs[1]["content"],
            json!([{"type": "text", "text": "plain"}])
        );
        assert_eq!(msgs[2]["content"], json!([{"type": "text", "text": "[1]"}]));
        assert_eq!(msgs[3], json!({"role": "system", "content": "be brief"}));
    }

    #[test]
    fn image_request() {
        let openai = json(fixture!("openai/image.request.json"));
        let got = encode(fixture!("openai/image.request.json"));
        let want = json(fixture!("image.request.json"));
        let parts = got["messages"][0]["content"].as_array().unwrap();
        let want_parts = want["messages"][0]["content"].as_array().unwrap();
        assert_eq!(got["messages"][0]["role"], "user");
        assert_eq!(parts.len(), 3);
        // Same layout as OpenAI's; the client's text and order are kept.
        assert_eq!(parts[0]["type"], want_parts[0]["type"]);
        assert_eq!(parts[1], openai["messages"][0]["content"][1]);
        assert_eq!(
            parts[2]["image_url"]["url"],
            want_parts[1]["image_url"]["url"]
        );
        assert_eq!(parts[2], openai["messages"][0]["content"][2]);
        assert_eq!(got["max_tokens"], 300);
        let e = encode_err(json!({"model": "m", "messages": [{"role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
        assert_eq!(e.code, "unsupported_parameter");
    }

    #[test]
    fn json_schema_request() {
        let openai = json(fixture!("openai/json_mode.request.json"));
        let got = encode(fixture!("openai/json_mode.request.json"));
        assert_eq!(
            got["response_format"],
            json!({"type": "json_object",
                "json_schema": openai["response_format"]["json_schema"]["schema"]})
        );
        assert_eq!(got["messages"][0]["role"], "system");
        let got = encode(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "json_object"}})
            .to_string(),
        );
        assert_eq!(got["response_format"], json!({"type": "json_object"}));
        let got = encode(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "text"}})
            .to_string(),
        );
        assert!(got.get("response_format").is_none());
    }

    #[test]
    fn sampling_fields_and_dropped_fields() {
        let got = encode(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "temperature": 0.7, "seed": 3, "logprobs": true, "top_p": 0.5, "top_k": 9,
                "presence_penalty": 0.5, "frequency_penalty": 0.25, "logit_bias": {"1": 2},
                "max_tokens": 10, "stop": "END", "store": true, "metadata": {"a": "b"},
                "user": "u", "parallel_tool_calls": false, "stream": true,
                "stream_options": {"include_usage": true}})
            .to_string(),
        );
        assert_eq!(
            got,
            json!({"model": "command-a-03-2025",
                "messages": [{"role": "user", "content": "hi"}],
                "temperature": 0.7, "seed": 3, "p": 0.5, "k": 9, "presence_penalty": 0.5,
                "frequency_penalty": 0.25, "max_tokens": 10, "stop_sequences": ["END"],
                "stream": true})
        );
        // max_completion_tokens wins over the legacy name.
        let got = encode(
            &json!({"model": "m", "messages": [], "max_tokens": 5, "max_completion_tokens": 7})
                .to_string(),
        );
        assert_eq!(got["max_tokens"], 7);
    }

    #[test]
    fn request_errors_name_the_param_not_the_prompt() {
        let secret = "my secret prompt";
        let e = encode_err(json!({"model": "m", "max_tokens": 0,
            "messages": [{"role": "user", "content": secret}]}));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        let e = encode_err(json!({"model": "m", "n": 2,
            "messages": [{"role": "user", "content": secret}]}));
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("unsupported_parameter", Some("n"))
        );
        let e = encode_err(json!({"model": "m", "messages": [
            {"role": "tool", "content": secret}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        assert!(!e.message.contains("secret"));
        let e =
            encode_err(json!({"model": "m", "messages": [{"role": "wizard", "content": secret}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = encode_err(json!({"model": "m", "messages": [],
            "tools": [{"type": "web_search"}]}));
        assert_eq!(e.to_openai()["error"]["code"], "unsupported_parameter");
    }

    #[test]
    fn embeddings_request() {
        let req: EmbeddingsRequest =
            serde_json::from_str(fixture!("openai/embeddings.request.json")).unwrap();
        let got = encode_embeddings(&req, "embed-v4.0").unwrap();
        assert_eq!(
            got,
            json!({"model": "embed-v4.0", "texts": ["The quick brown fox", "jumped over the lazy dog"],
                "input_type": "search_document", "embedding_types": ["float"],
                "output_dimension": 4})
        );
        let one: EmbeddingsRequest = serde_json::from_value(
            json!({"model": "m", "input": "hi", "input_type": "search_query"}),
        )
        .unwrap();
        let got = encode_embeddings(&one, "e").unwrap();
        assert_eq!(got["texts"], json!(["hi"]));
        assert_eq!(got["input_type"], "search_query");
        for input in [json!([1, 2, 3]), json!([[1, 2]]), json!([]), json!(5)] {
            let req: EmbeddingsRequest =
                serde_json::from_value(json!({"model": "m", "input": input})).unwrap();
            let e = encode_embeddings(&req, "e").unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("input")));
        }
    }

    #[test]
    fn decodes_embeddings() {
        let body = json!({"id": "x", "response_type": "embeddings_by_type", "texts": ["a", "b"],
            "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 6}}});
        let got = decode_response(body.to_string().as_bytes(), "emb", 0).unwrap();
        assert_eq!(got["object"], "list");
        assert_eq!(got["model"], "emb");
        assert_eq!(got["usage"], json!({"prompt_tokens": 6, "total_tokens": 6}));
        assert_eq!(
            got["data"],
            json!([{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}])
        );
        let bad = json!({"embeddings": {"int8": [[1]]}});
        assert_eq!(
            decode_response(bad.to_string().as_bytes(), "e", 0)
                .unwrap_err()
                .status,
            502
        );
    }

    #[test]
    fn decodes_text_response() {
        let got = decode_response(fixture!("chat.response.json").as_bytes(), "gpt-x", 7).unwrap();
        assert_eq!(got["id"], "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(got["object"], "chat.completion");
        assert_eq!(
            (got["created"].as_u64(), got["model"].as_str()),
            (Some(7), Some("gpt-x"))
        );
        let choice = &got["choices"][0];
        assert_eq!(choice["message"]["content"], "Red, yellow, and blue.");
        assert_eq!(choice["message"]["role"], "assistant");
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(choice["finish_reason"], "stop");
        // `tokens`, not `billed_units`.
        assert_eq!(
            got["usage"],
            json!({"prompt_tokens": 498, "completion_tokens": 9, "total_tokens": 507,
                "prompt_tokens_details": {"cached_tokens": 0}})
        );
    }

    #[test]
    fn decodes_tool_response() {
        let got = decode_response(fixture!("tools.response.json").as_bytes(), "gpt-x", 7).unwrap();
        let want = json(fixture!("tools.response.json"));
        let choice = &got["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert!(choice["message"]["content"].is_null());
        assert_eq!(
            choice["message"]["tool_calls"],
            want["message"]["tool_calls"]
        );
        assert_eq!(got["usage"]["total_tokens"], 1093);
    }

    #[test]
    fn finish_reasons_and_odd_bodies() {
        for (cohere, calls, openai) in [
            ("COMPLETE", false, "stop"),
            ("STOP_SEQUENCE", false, "stop"),
            ("MAX_TOKENS", true, "length"),
            ("TOOL_CALL", false, "tool_calls"),
            ("COMPLETE", true, "tool_calls"),
            ("SOMETHING_NEW", false, "stop"),
        ] {
            assert_eq!(
                finish_reason(Some(cohere), calls).unwrap(),
                openai,
                "{cohere}"
            );
        }
        assert_eq!(finish_reason(Some("ERROR"), false).unwrap_err().status, 502);
        assert_eq!(
            finish_reason(Some("TIMEOUT"), false).unwrap_err().status,
            504
        );
        let body = json!({"id": "x", "finish_reason": "ERROR",
            "message": {"role": "assistant", "content": []}});
        assert_eq!(
            decode_response(body.to_string().as_bytes(), "p", 0)
                .unwrap_err()
                .status,
            502
        );
        // Thinking is left out; billed units stand in when tokens are missing; cached counted.
        let body = json!({"id": "x", "finish_reason": "COMPLETE", "message": {"role": "assistant",
            "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "a"},
                {"type": "text", "text": "b"}]},
            "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2}, "cached_tokens": 1}});
        let got = decode_response(body.to_string().as_bytes(), "p", 0).unwrap();
        assert_eq!(got["choices"][0]["message"]["content"], "ab");
        assert_eq!(got["usage"]["total_tokens"], 5);
        assert_eq!(got["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        assert_eq!(decode_response(b"<html>", "p", 0).unwrap_err().status, 502);
        assert_eq!(
            decode_response(b"{\"x\":1}", "p", 0).unwrap_err().status,
            502
        );
    }

    /// Feeds an SSE transcript through the parser and the translator; each call's output is
    /// kept separately so tests can see what went out when.
    fn run(sse: &str, include_usage: bool) -> (Vec<Vec<Value>>, StreamState) {
        let mut events = Vec::new();
        let mut parser = Parser::default();
        parser.push(sse.as_bytes(), &mut events);
        parser.finish(&mut events);
        let mut state = StreamState::new("gpt-x", 9, include_usage);
        let mut out = Vec::new();
        for ev in events {
            let Event::Message { event, data } = ev else {
                continue;
            };
            let chunks = state.on_event(event.as_deref(), &data).unwrap();
            out.push(chunks.iter().map(|c| json(c)).collect());
        }
        (out, state)
    }

    #[test]
    fn text_stream() {
        let sse = fixture!("chat.stream.sse");
        let (calls, state) = run(sse, true);
        // message-start, content-start, 2 deltas, content-end, message-end, [DONE].
        assert_eq!(calls.len(), 7);
        assert!(state.is_done());
        assert!(
            calls[6].is_empty(),
            "[DONE] after message-end sends nothing"
        );
        let chunks: Vec<&Value> = calls.iter().flatten().collect();
        assert!(chunks
            .iter()
            .all(|c| c["id"] == "29f14a5a-11de-4cae-9800-25e4747408ea"
                && c["model"] == "gpt-x"
                && c["created"] == 9
                && c["object"] == "chat.completion.chunk"));
        assert_eq!(calls[0][0]["choices"][0]["delta"]["role"], "assistant");
        // Each text delta went out in the call that received it.
        assert!(calls[1].is_empty());
        assert_eq!(calls[2][0]["choices"][0]["delta"]["content"], "Red");
        assert_eq!(
            calls[3][0]["choices"][0]["delta"]["content"],
            ", yellow, and blue."
        );
        assert!(calls[4].is_empty());
        assert_eq!(calls[5].len(), 2);
        assert_eq!(calls[5][0]["choices"][0]["finish_reason"], "stop");
        let last = &calls[5][1];
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            (
                &last["usage"]["prompt_tokens"],
                &last["usage"]["completion_tokens"]
            ),
            (&json!(494), &json!(9))
        );
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null()));
        assert_eq!(state.usage().total_tokens, 503);

        let (calls, state) = run(sse, false);
        assert!(state.is_done());
        assert!(calls
            .iter()
            .flatten()
            .all(|c| c.get("usage").is_none() && c["choices"].get(0).is_some()));
    }

    #[test]
    fn tool_stream() {
        let (calls, state) = run(fixture!("tools.stream.sse"), false);
        assert!(state.is_done());
        assert_eq!(calls.len(), 8);
        assert!(calls[1].is_empty(), "the tool plan has no OpenAI field");
        let start = &calls[2][0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            start,
            &json!({"index": 0, "id": "get_weather_k9x2m4q7r1t3", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}})
        );
        assert_eq!(
            calls[3][0]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "function": {"arguments": "{\"location\":\"Paris, France\","}})
        );
        let args: String = calls
            .iter()
            .flatten()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(
            json(&args),
            json!({"location": "Paris, France", "unit": "celsius"})
        );
        assert_eq!(calls[6][0]["choices"][0]["finish_reason"], "tool_calls");
        assert!(calls[7].is_empty());
        assert_eq!(state.usage().prompt_tokens, 1032);
    }

    #[test]
    fn stream_errors_and_thinking() {
        let mut state = StreamState::new("p", 0, false);
        let out = state
            .on_event(
                Some("content-start"),
                &json!({"type": "content-start", "index": 0,
                "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}})
                .to_string(),
            )
            .unwrap();
        assert_eq!(out.len(), 1, "the role chunk only");
        let out = state
            .on_event(
                None,
                &json!({"type": "content-delta", "index": 0,
                "delta": {"message": {"content": {"thinking": "hmm"}}}})
                .to_string(),
            )
            .unwrap();
        assert!(out.is_empty());
        let e = state
            .on_event(
                None,
                &json!({"type": "message-end",
                "delta": {"finish_reason": "ERROR"}})
                .to_string(),
            )
            .unwrap_err();
        assert_eq!(e.status, 502);
        assert!(!state.is_done());
        assert_eq!(state.on_event(None, "nope").unwrap_err().status, 502);
    }

    #[test]
    fn error_bodies() {
        let body = fixture!("error.429.json");
        let (s, got) = decode_error(429, body.as_bytes());
        assert_eq!(
            (s, &got["error"]["code"]),
            (429, &json!("rate_limit_exceeded"))
        );
        assert_eq!(got["error"]["type"], "rate_limit_error");
        assert_eq!(got["error"]["message"], json(body)["message"]);
        let body = fixture!("error.400.json");
        let (s, got) = decode_error(400, body.as_bytes());
        assert_eq!((s, &got["error"]["code"]), (400, &json!("invalid_request")));
        assert_eq!(got["error"]["type"], "invalid_request_error");
        assert_eq!(got["error"]["message"], json(body)["message"]);
        for (status, message, want_status, code) in [
            (
                400,
                "too many tokens: size limit exceeded",
                400,
                "context_length_exceeded",
            ),
            (401, "invalid api token", 401, "invalid_api_key"),
            (498, "blocked token", 401, "invalid_api_key"),
            (403, "forbidden", 403, "permission_denied"),
            (404, "model 'x' not found", 404, "model_not_found"),
            (422, "unprocessable", 422, "invalid_request"),
            (500, "internal", 500, "server_error"),
            (503, "busy", 503, "overloaded"),
            (504, "slow", 504, "timeout"),
        ] {
            let body = json!({"id": "x", "message": message}).to_string();
            let (s, got) = decode_error(status, body.as_bytes());
            assert_eq!(
                (s, got["error"]["code"].as_str()),
                (want_status, Some(code)),
                "{status}"
            );
        }
        // No JSON body (a proxy's HTML page): the status decides, and the body is not echoed.
        let (s, got) = decode_error(502, b"<html>bad gateway</html>");
        assert_eq!(s, 502);
        assert!(!got["error"]["message"].as_str().unwrap().contains("html"));
    }

    #[test]
    fn adapter_wiring() {
        use super::super::Adapter;
        assert_eq!(Cohere.auth_header(), http::header::AUTHORIZATION);
        assert!(Cohere.required_headers().is_empty());
        assert_eq!(DEFAULT_BASE_URL, "https://api.cohere.com");
        assert_eq!((CHAT_PATH, EMBED_PATH), ("/v2/chat", "/v2/embed"));
    }
}
