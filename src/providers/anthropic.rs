//! The Anthropic Messages API (`POST /v1/messages`, `anthropic-version: 2023-06-01`):
//! translation between OpenAI Chat Completions and Anthropic for requests, responses, stream
//! events and error bodies. No I/O lives here: `pipeline/forward.rs` sends the request, with
//! the key as `x-api-key: <key>` (not `Authorization`) plus [`request_headers`].
//!
//! Error messages made here name fields and indexes, never prompt text.

use serde::Deserialize;

pub use super::translate::TranslateError;
use super::translate::{ChunkHead, TextDelta};
use serde_json::{json, Map, Value};

use crate::api::openai::{ChatRequest, Content, ContentPart, Message, PromptTokensDetails, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Appended to the base URL, which therefore does not end in `/v1`.
pub const MESSAGES_PATH: &str = "/v1/messages";
pub const API_VERSION: &str = "2023-06-01";
/// The header that carries the provider key: `x-api-key: <key>`, without a `Bearer` prefix.
pub const AUTH_HEADER: &str = "x-api-key";

/// Headers every request needs besides the key and `content-type: application/json`.
pub fn request_headers() -> [(&'static str, &'static str); 1] {
    [("anthropic-version", API_VERSION)]
}

// ---------------------------------------------------------------------------------------------
// Request

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The Anthropic request body for an OpenAI chat request. Anthropic rejects unknown fields, so
/// the body is built from what maps; the rest (`logprobs`, `seed`, penalties, `logit_bias`,
/// `metadata`, `store`, `reasoning_effort`, ...) is dropped.
pub fn encode_request(
    req: &ChatRequest,
    upstream_model: &str,
    default_max_tokens: u32,
) -> Result<Value, TranslateError> {
    let x = &req.extra;
    if present(x, "n").is_some_and(|n| n.as_u64() != Some(1)) {
        return Err(TranslateError::unsupported(
            "n",
            "must be 1: Anthropic returns one choice",
        ));
    }
    let (system, messages) = encode_messages(&req.messages)?;
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    body.insert("max_tokens".into(), max_tokens(x, default_max_tokens)?);
    if let Some(system) = system {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), messages);
    if req.is_stream() {
        body.insert("stream".into(), true.into());
    }
    for key in ["temperature", "top_p", "top_k"] {
        let Some(v) = present(x, key) else { continue };
        let n = v
            .as_f64()
            .ok_or_else(|| TranslateError::invalid(key, "must be a number"))?;
        // OpenAI's temperature goes to 2, Anthropic's to 1; the top means "most random" in both.
        let v = if key == "temperature" && !(0.0..=1.0).contains(&n) {
            json!(n.clamp(0.0, 1.0))
        } else {
            v.clone()
        };
        body.insert(key.into(), v);
    }
    if let Some(stop) = stop_sequences(x)? {
        body.insert("stop_sequences".into(), stop);
    }
    let user = ["user", "safety_identifier"]
        .iter()
        .find_map(|k| x.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()));
    if let Some(user) = user {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    let tools = present(x, "tools").map(encode_tools).transpose()?;
    // Anthropic rejects a tool_choice without tools.
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        let parallel = present(x, "parallel_tool_calls").and_then(Value::as_bool);
        if let Some(choice) = encode_tool_choice(present(x, "tool_choice"), parallel)? {
            body.insert("tool_choice".into(), choice);
        }
        body.insert("tools".into(), tools.into());
    }
    if let Some(format) = present(x, "response_format") {
        if let Some(output) = encode_response_format(format)? {
            body.insert("output_config".into(), output);
        }
    }
    Ok(body.into())
}

/// A field that is there and not `null` (clients send `"stop": null` and mean "absent").
fn present<'a>(x: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    x.get(key).filter(|v| !v.is_null())
}

fn max_tokens(x: &Map<String, Value>, default: u32) -> Result<Value, TranslateError> {
    let given = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|k| present(x, k).map(|v| (k, v)));
    match given {
        None => Ok(default.into()),
        Some((_, v)) if v.as_u64().is_some_and(|n| n > 0) => Ok(v.clone()),
        Some((k, _)) => Err(TranslateError::invalid(k, "must be a positive integer")),
    }
}

/// Anthropic rejects stop sequences that are empty or whitespace only (`"\n"` is a common
/// OpenAI stop); they are left out rather than failing the whole request.
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
        if !s.trim().is_empty() {
            kept.push(Value::from(s));
        }
    }
    Ok((!kept.is_empty()).then(|| kept.into()))
}

fn encode_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let items = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    let encode = |(i, tool): (usize, &Value)| {
        if tool["type"] != "function" {
            let what = "must be function: Anthropic takes no other tool type";
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                what,
            ));
        }
        let f = &tool["function"];
        let name = f["name"].as_str().ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].function.name"), "is required")
        })?;
        // `strict` is not sent: Anthropic accepts it only on models with structured outputs.
        let schema = match &f["parameters"] {
            p @ Value::Object(_) => p.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        let mut t = json!({"name": name, "input_schema": schema});
        if f["description"].is_string() {
            t["description"] = f["description"].clone();
        }
        Ok(t)
    };
    items.iter().enumerate().map(encode).collect()
}

fn encode_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, TranslateError> {
    let bad =
        || TranslateError::invalid("tool_choice", "must be none, auto, required or a function");
    let mut out = match choice {
        None if parallel.is_none() => return Ok(None),
        None => json!({"type": "auto"}),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            // `none` takes no other field.
            "none" => return Ok(Some(json!({"type": "none"}))),
            _ => return Err(bad()),
        },
        Some(obj) => {
            let name = obj.pointer("/function/name").and_then(Value::as_str);
            json!({"type": "tool", "name": name.ok_or_else(bad)?})
        }
    };
    if let Some(p) = parallel {
        out["disable_parallel_tool_use"] = (!p).into();
    }
    Ok(Some(out))
}

fn encode_response_format(format: &Value) -> Result<Option<Value>, TranslateError> {
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_schema") => match format.pointer("/json_schema/schema") {
            Some(schema) if schema.is_object() => Ok(Some(
                json!({"format": {"type": "json_schema", "schema": schema}}),
            )),
            _ => Err(TranslateError::invalid(
                "response_format.json_schema.schema",
                "must be an object",
            )),
        },
        // There is no schema-less JSON mode, and dropping it would hand prose to a client that
        // parses JSON.
        Some("json_object") => Err(TranslateError::unsupported(
            "response_format",
            "json_object has no Anthropic equivalent; use json_schema",
        )),
        _ => Err(TranslateError::invalid(
            "response_format.type",
            "must be text, json_schema or json_object",
        )),
    }
}

/// Top-level `system` (if any) and the `messages` array: consecutive messages that end up in
/// one role are merged, because Anthropic's turns alternate.
fn encode_messages(messages: &[Message]) -> Result<(Option<Value>, Value), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(content_blocks(m, i, false)?);
                continue;
            }
            "user" => ("user", content_blocks(m, i, true)?),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            "tool" => ("user", vec![tool_result(m, i)?]),
            _ => {
                let what = "must be system, developer, user, assistant or tool";
                return Err(TranslateError::unsupported(
                    format!("messages[{i}].role"),
                    what,
                ));
            }
        };
        match turns.last_mut() {
            // Anthropic rejects empty turns (an assistant `content: ""`, say).
            _ if blocks.is_empty() => {}
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            // Tool results must open the user turn that answers a tool_use.
            blocks.sort_by_key(|b| b["type"] != "tool_result");
            json!({"role": role, "content": collapse(blocks)})
        })
        .collect();
    Ok(((!system.is_empty()).then(|| collapse(system)), messages))
}

/// A lone text block becomes a plain string, the form most requests use.
fn collapse(blocks: Vec<Value>) -> Value {
    match blocks.as_slice() {
        [b] if b["type"] == "text" => b["text"].clone(),
        _ => blocks.into(),
    }
}

/// Message content as blocks: text parts, and image parts where `images` allows them.
fn content_blocks(m: &Message, i: usize, images: bool) -> Result<Vec<Value>, TranslateError> {
    let parts = match &m.content {
        None => return Ok(Vec::new()),
        Some(Content::Text(s)) => return Ok(text_block(s).into_iter().collect()),
        Some(Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match part.kind.as_str() {
            "text" => out.extend(text_block(part.text.as_deref().unwrap_or_default())),
            "image_url" if images => out.push(image_block(part, &param)?),
            _ => {
                let what = "is a content part type Anthropic does not take here";
                return Err(TranslateError::unsupported(param + ".type", what));
            }
        }
    }
    Ok(out)
}

/// Anthropic rejects empty or whitespace-only text blocks; they carry nothing anyway.
fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({"type": "text", "text": text}))
}

fn image_block(part: &ContentPart, param: &str) -> Result<Value, TranslateError> {
    let param = format!("{param}.image_url.url");
    let url = part
        .extra
        .get("image_url")
        .and_then(|v| v.get("url").unwrap_or(v).as_str())
        .ok_or_else(|| TranslateError::invalid(&param, "is required"))?;
    let source = if let Some(rest) = url.strip_prefix("data:") {
        let (media, data) = data_url(rest)
            .ok_or_else(|| TranslateError::invalid(&param, "must be data:<type>;base64,<data>"))?;
        // A common misspelling of the registered name, which is all Anthropic knows.
        let media = if media == "image/jpg" {
            "image/jpeg".into()
        } else {
            media
        };
        if !IMAGE_TYPES.contains(&media.as_str()) {
            let what = "must be a JPEG, PNG, GIF or WebP image";
            return Err(TranslateError::unsupported(param, what));
        }
        json!({"type": "base64", "media_type": media, "data": data})
    } else if url.starts_with("https://") || url.starts_with("http://") {
        json!({"type": "url", "url": url})
    } else {
        let what = "must be an http(s) URL or a base64 data URL";
        return Err(TranslateError::invalid(param, what));
    };
    Ok(json!({"type": "image", "source": source}))
}

/// `<media type>[;param]*;base64,<data>` (after `data:`) -> (lower-case media type, data).
fn data_url(rest: &str) -> Option<(String, &str)> {
    let (meta, data) = rest.split_once(',')?;
    let mut fields = meta.split(';');
    let media = fields.next()?.trim().to_ascii_lowercase();
    fields
        .any(|f| f.trim().eq_ignore_ascii_case("base64"))
        .then_some((media, data))
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut out = content_blocks(m, i, false)?;
    let calls = match m.extra.get("tool_calls") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            let param = format!("messages[{i}].tool_calls");
            return Err(TranslateError::invalid(param, "must be an array"));
        }
    };
    for (j, call) in calls.iter().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}]");
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (call["id"].as_str(), name) else {
            return Err(TranslateError::invalid(
                param,
                "needs an id and a function.name",
            ));
        };
        let input = tool_input(&call["function"]["arguments"], &param)?;
        out.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(out)
}

/// OpenAI sends arguments as a JSON string; Anthropic wants the object itself.
fn tool_input(args: &Value, param: &str) -> Result<Value, TranslateError> {
    let param = format!("{param}.function.arguments");
    let parsed = match args {
        Value::Null => return Ok(json!({})),
        Value::String(s) if s.trim().is_empty() => return Ok(json!({})),
        Value::String(s) => serde_json::from_str(s)
            .map_err(|_| TranslateError::invalid(&param, "is not valid JSON"))?,
        v => v.clone(),
    };
    match parsed {
        Value::Object(_) => Ok(parsed),
        _ => Err(TranslateError::invalid(param, "must be a JSON object")),
    }
}

fn tool_result(m: &Message, i: usize) -> Result<Value, TranslateError> {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str);
    let param = format!("messages[{i}].tool_call_id");
    let id = id.ok_or_else(|| TranslateError::invalid(param, "is required"))?;
    let mut out = json!({"type": "tool_result", "tool_use_id": id});
    // An empty result goes without content: Anthropic rejects empty text.
    let content = match &m.content {
        Some(Content::Text(s)) if !s.is_empty() => Some(Value::from(s.as_str())),
        Some(Content::Parts(_)) => Some(content_blocks(m, i, true)?)
            .filter(|b| !b.is_empty())
            .map(Value::from),
        _ => None,
    };
    if let Some(content) = content {
        out["content"] = content;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// `thinking`, `redacted_thinking`, server-tool blocks: nothing OpenAI can show.
    #[serde(other)]
    Other,
}

/// Anthropic usage; every field optional because `message_delta` carries only some of them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Later counts replace earlier ones: `message_delta` reports running totals.
    fn update(&mut self, newer: WireUsage) {
        let keep = |new: Option<u64>, old: Option<u64>| new.or(old);
        self.input_tokens = keep(newer.input_tokens, self.input_tokens);
        self.output_tokens = keep(newer.output_tokens, self.output_tokens);
        self.cache_creation_input_tokens = keep(
            newer.cache_creation_input_tokens,
            self.cache_creation_input_tokens,
        );
        self.cache_read_input_tokens =
            keep(newer.cache_read_input_tokens, self.cache_read_input_tokens);
    }

    /// OpenAI's prompt count includes cached input; Anthropic reports cache reads and writes
    /// apart from `input_tokens`.
    fn to_openai(self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt =
            self.input_tokens.unwrap_or(0) + cached + self.cache_creation_input_tokens.unwrap_or(0);
        let completion = self.output_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: cached,
            }),
            cache_creation_input_tokens: self.cache_creation_input_tokens.unwrap_or(0),
        }
    }
}

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and reasons newer than this code.
        _ => "stop",
    }
}

/// The OpenAI `chat.completion` for an Anthropic message. `created` is the Unix time to report
/// (Anthropic sends none); `public_model` is the name the client asked for.
pub fn decode_response(
    body: &[u8],
    public_model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    let msg: WireMessage = serde_json::from_slice(body).map_err(|e| {
        // The position only: serde's own message may quote completion text.
        let (line, column) = (e.line(), e.column());
        TranslateError::upstream(format!(
            "Anthropic sent a response that is not a message (line {line} column {column})"
        ))
    })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &msg.content {
        match block {
            Block::Text { text: t } => text.push_str(t),
            Block::ToolUse { id, name, input } => {
                let arguments = if input.is_null() {
                    "{}".into()
                } else {
                    input.to_string()
                };
                tool_calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": arguments}}));
            }
            Block::Other => {}
        }
    }
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = tool_calls.into();
    }
    Ok(json!({
        "id": msg.id, "object": "chat.completion", "created": created, "model": public_model,
        "choices": [{
            "index": 0, "message": message, "logprobs": null,
            "finish_reason": finish_reason(msg.stop_reason.as_deref()),
        }],
        "usage": msg.usage.to_openai(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Stream

/// Translates one Anthropic stream into OpenAI `chat.completion.chunk`s, event by event, so
/// nothing is held back: every text and argument fragment goes out in the call that received
/// it. Chunks are `data:` payloads. After `message_stop` (see [`StreamState::is_done`]) the
/// caller sends `data: [DONE]` itself; a stream that ends without it was cut off.
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: WireUsage,
    /// Anthropic block index and "arguments sent" per tool_use block, in order of appearance:
    /// the position is the OpenAI tool-call index.
    tools: Vec<(u64, bool)>,
    finish_sent: bool,
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
            usage: WireUsage::default(),
            tools: Vec::new(),
            finish_sent: false,
            done: false,
        }
    }

    /// Usage so far in OpenAI terms; final once the stream is done.
    pub fn usage(&self) -> Usage {
        self.usage.to_openai()
    }

    /// Whether `message_stop` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One Anthropic SSE event in, the OpenAI chunks to send out. An `error` event becomes an
    /// `Err` mapped like [`decode_error`]; the caller sends its `to_openai()` as the last event.
    pub fn on_event(
        &mut self,
        event: Option<&str>,
        data: &str,
    ) -> Result<Vec<String>, TranslateError> {
        // Most of a stream is text deltas: those skip the generic parse.
        if event == Some("content_block_delta") {
            #[derive(Deserialize)]
            struct Event<'a> {
                #[serde(borrow)]
                delta: TextDelta<'a>,
            }
            if let Ok(Event {
                delta:
                    TextDelta {
                        kind: Some("text_delta"),
                        text,
                    },
            }) = serde_json::from_str::<Event>(data)
            {
                let text = text.unwrap_or_default();
                return Ok(if text.is_empty() {
                    Vec::new()
                } else {
                    vec![self.head().text(0, &text)]
                });
            }
        }
        let v: Value = serde_json::from_str(data).map_err(|_| {
            TranslateError::upstream("Anthropic sent a stream event that is not JSON".into())
        })?;
        let kind = event.or_else(|| v["type"].as_str()).unwrap_or_default();
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                if let Some(id) = v["message"]["id"].as_str() {
                    id.clone_into(&mut self.id);
                }
                self.update_usage(&v["message"]["usage"]);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let block = &v["content_block"];
                match block["type"].as_str() {
                    Some("text") => self.text(&block["text"], &mut out),
                    Some("tool_use") => {
                        let call = json!({"index": self.tools.len(), "id": block["id"],
                            "type": "function", "function": {"name": block["name"], "arguments": ""}});
                        self.tools
                            .push((v["index"].as_u64().unwrap_or(u64::MAX), false));
                        out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => match v["delta"]["type"].as_str() {
                Some("text_delta") => self.text(&v["delta"]["text"], &mut out),
                Some("input_json_delta") => {
                    let fragment = v["delta"]["partial_json"].as_str().unwrap_or_default();
                    // The first fragment is often empty: nothing to send.
                    if !fragment.is_empty() {
                        self.arguments(&v, fragment, &mut out);
                    }
                }
                // Thinking, signature and citation deltas have no OpenAI form.
                _ => {}
            },
            // A tool without arguments still owes the client a parseable arguments string.
            "content_block_stop" if self.tool_at(&v).is_some_and(|t| !self.tools[t].1) => {
                self.arguments(&v, "{}", &mut out);
            }
            "message_delta" => {
                self.update_usage(&v["usage"]);
                self.finish(v["delta"]["stop_reason"].as_str(), &mut out);
            }
            "message_stop" => {
                self.finish(None, &mut out);
                if self.include_usage {
                    out.push(self.head().usage(&self.usage()));
                }
                self.done = true;
            }
            "error" => return Err(provider_error(Some(&v), None)),
            // ping, and event types newer than this code.
            _ => {}
        }
        Ok(out)
    }

    fn update_usage(&mut self, usage: &Value) {
        if let Ok(u) = WireUsage::deserialize(usage) {
            self.usage.update(u);
        }
    }

    fn text(&self, text: &Value, out: &mut Vec<String>) {
        if let Some(t) = text.as_str().filter(|t| !t.is_empty()) {
            out.push(self.head().text(0, t));
        }
    }

    /// The OpenAI tool-call index of the tool_use block an event refers to.
    fn tool_at(&self, event: &Value) -> Option<usize> {
        let block = event["index"].as_u64()?;
        self.tools.iter().position(|t| t.0 == block)
    }

    fn arguments(&mut self, event: &Value, fragment: &str, out: &mut Vec<String>) {
        if let Some(index) = self.tool_at(event) {
            self.tools[index].1 = true;
            let call = json!({"index": index, "function": {"arguments": fragment}});
            out.push(self.chunk(json!({ "tool_calls": [call] }), None));
        }
    }

    fn finish(&mut self, stop_reason: Option<&str>, out: &mut Vec<String>) {
        if !self.finish_sent {
            self.finish_sent = true;
            out.push(self.chunk(json!({}), Some(finish_reason(stop_reason))));
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

/// Anthropic error type -> (its HTTP status, the status for the client, OpenAI code).
const ERRORS: &[(&str, u16, u16, &str)] = &[
    ("invalid_request_error", 400, 400, "invalid_request"),
    ("authentication_error", 401, 401, "invalid_api_key"),
    ("billing_error", 402, 402, "insufficient_quota"),
    ("permission_error", 403, 403, "permission_denied"),
    ("not_found_error", 404, 404, "not_found"),
    ("request_too_large", 413, 413, "request_too_large"),
    ("rate_limit_error", 429, 429, "rate_limit_exceeded"),
    ("api_error", 500, 500, "server_error"),
    ("timeout_error", 504, 504, "timeout"),
    // Temporary and retryable, which is what 503 says to every HTTP client; 529 is Anthropic's.
    ("overloaded_error", 529, 503, "overloaded"),
];

/// The status and OpenAI error body for an Anthropic error answer (`status` >= 400). The
/// provider's message is kept (it says what to fix); a body that is not Anthropic's JSON (a
/// proxy's HTML page) is not echoed.
pub fn decode_error(status: u16, body: &[u8]) -> (u16, Value) {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let e = provider_error(parsed.as_ref(), Some(status));
    (e.status, e.to_openai())
}

/// `{"type":"error","error":{"type","message"}}`, from a body or an in-stream `error` event.
fn provider_error(body: Option<&Value>, http_status: Option<u16>) -> TranslateError {
    let err = body.map(|b| &b["error"]);
    let kind = err.and_then(|e| e["type"].as_str());
    let message = err.and_then(|e| e["message"].as_str()).map(str::to_string);
    // The type decides; the status only when the type is missing or newer than this table.
    let row = kind
        .and_then(|k| ERRORS.iter().find(|r| r.0 == k))
        .or_else(|| http_status.and_then(|s| ERRORS.iter().find(|r| r.1 == s)));
    let Some(&(kind, _, status, code)) = row else {
        let status = match http_status {
            Some(s) if s >= 400 => s,
            _ => 502,
        };
        return TranslateError {
            status,
            kind: "upstream_error",
            code: "upstream_error",
            message: message.unwrap_or_else(|| format!("Anthropic answered with HTTP {status}")),
            param: None,
        };
    };
    let message = message.unwrap_or_else(|| format!("Anthropic answered with {kind}"));
    let lower = message.to_ascii_lowercase();
    let (code, param) = if kind == "invalid_request_error"
        && (lower.contains("prompt is too long") || lower.contains("exceed context limit"))
    {
        ("context_length_exceeded", Some("messages"))
    } else if kind == "not_found_error" && lower.starts_with("model:") {
        ("model_not_found", Some("model"))
    } else {
        (code, None)
    };
    TranslateError {
        status,
        kind,
        code,
        message,
        param: param.map(str::to_string),
    }
}

// ---------------------------------------------------------------------------------------------
// The adapter

/// The Anthropic wire format as a gateway adapter.
pub struct Anthropic;

impl super::Adapter for Anthropic {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        provider: &crate::config::Provider,
    ) -> Result<super::UpstreamRequest, crate::error::Error> {
        let default_max =
            super::models::default_max_tokens(provider.default_max_tokens, upstream_model);
        let body = encode_request(req, upstream_model, default_max).map_err(|e| {
            crate::error::Error::InvalidRequest {
                message: e.message,
                param: e.param,
                code: e.code,
            }
        })?;
        Ok(super::UpstreamRequest {
            path: MESSAGES_PATH.into(),
            body: bytes::Bytes::from(body.to_string()),
            stream: req.is_stream(),
        })
    }

    fn embeddings(
        &self,
        _req: &mut crate::api::openai::EmbeddingsRequest,
        _upstream_model: &str,
        provider: &crate::config::Provider,
    ) -> Result<super::UpstreamRequest, crate::error::Error> {
        Err(crate::error::Error::invalid(
            format!(
                "provider '{}' (Anthropic) has no embeddings endpoint",
                provider.name
            ),
            Some("model"),
        ))
    }

    fn auth_header(&self) -> http::HeaderName {
        http::HeaderName::from_static(AUTH_HEADER)
    }

    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", API_VERSION)]
    }

    fn decode_body(
        &self,
        body: bytes::Bytes,
        public_model: &str,
    ) -> Result<bytes::Bytes, crate::error::Error> {
        super::translate::body_or_502(
            decode_response(&body, public_model, super::translate::unix_now()),
            "anthropic",
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
            include_str!(concat!("../../tests/fixtures/anthropic/", $name))
        };
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn encode(openai: &str, default_max: u32) -> Value {
        let req: ChatRequest = serde_json::from_str(openai).unwrap();
        encode_request(&req, "claude-sonnet-4-5", default_max).unwrap()
    }

    fn encode_err(openai: Value) -> TranslateError {
        let req: ChatRequest = serde_json::from_value(openai).unwrap();
        encode_request(&req, "claude-sonnet-4-5", 1024).unwrap_err()
    }

    #[test]
    fn chat_request() {
        let got = encode(fixture!("openai/chat.request.json"), 1024);
        let want = json(fixture!("messages.request.json"));
        for key in ["model", "system", "messages", "temperature", "metadata"] {
            assert_eq!(got[key], want[key], "{key}");
        }
        assert_eq!(got["max_tokens"], 64);
        assert_eq!(got["top_p"], 1);
        // "\n\n" is whitespace only, which Anthropic rejects.
        assert!(got.get("stop_sequences").is_none());
        assert!(got.get("n").is_none() && got.get("user").is_none());
    }

    #[test]
    fn stream_request_matches_exactly() {
        let got = encode(fixture!("openai/chat.stream.request.json"), 1024);
        assert_eq!(got, json(fixture!("messages.stream.request.json")));
    }

    #[test]
    fn tools_request() {
        let openai = json(fixture!("openai/tools.request.json"));
        let got = encode(fixture!("openai/tools.request.json"), 1024);
        let want = json(fixture!("tools.request.json"));
        for key in ["model", "max_tokens", "messages", "tool_choice"] {
            assert_eq!(got[key], want[key], "{key}");
        }
        let (tool, want_tool) = (&got["tools"][0], &want["tools"][0]);
        assert_eq!(tool["name"], want_tool["name"]);
        assert_eq!(tool["description"], want_tool["description"]);
        // The schema goes through untouched (the fixture omits additionalProperties).
        assert_eq!(
            tool["input_schema"],
            openai["tools"][0]["function"]["parameters"]
        );
        for key in ["properties", "required", "type"] {
            assert_eq!(tool["input_schema"][key], want_tool["input_schema"][key]);
        }
        assert_eq!(got["tools"].as_array().map(Vec::len), Some(1));
        assert!(tool.get("strict").is_none());
    }

    #[test]
    fn tool_choice_variants() {
        let mut req = json(fixture!("openai/tools.request.json"));
        req["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
        req.as_object_mut().unwrap().remove("parallel_tool_calls");
        let got = encode(&req.to_string(), 1024);
        assert_eq!(
            got["tool_choice"],
            json(fixture!("tools.forced.request.json"))["tool_choice"]
        );

        req["tool_choice"] = json!("required");
        req["parallel_tool_calls"] = json!(false);
        let got = encode(&req.to_string(), 1024);
        assert_eq!(
            got["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );

        req["tool_choice"] = json!("none");
        let got = encode(&req.to_string(), 1024);
        assert_eq!(got["tool_choice"], json!({"type": "none"}));

        req.as_object_mut().unwrap().remove("tool_choice");
        let got = encode(&req.to_string(), 1024);
        assert_eq!(
            got["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_followup_request() {
        let openai = json(fixture!("openai/tools.followup.request.json"));
        let got = encode(fixture!("openai/tools.followup.request.json"), 1024);
        let want = json(fixture!("tools.followup.request.json"));
        let (msgs, want_msgs) = (got["messages"].as_array().unwrap(), &want["messages"]);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], want_msgs[0]);
        // OpenAI's assistant turn has no text, so the only block is the tool_use (with the
        // client's own call id).
        let call_id = openai["messages"][1]["tool_calls"][0]["id"].clone();
        let mut want_use = want_msgs[1]["content"][1].clone();
        want_use["id"] = call_id.clone();
        assert_eq!(msgs[1], json!({"role": "assistant", "content": [want_use]}));
        let mut want_result = want_msgs[2].clone();
        want_result["content"][0]["tool_use_id"] = call_id;
        assert_eq!(msgs[2], want_result);
        assert_eq!(got["tools"][0]["name"], want["tools"][0]["name"]);
    }

    #[test]
    fn tool_messages_merge_and_lead_the_user_turn() {
        let got = encode(
            &json!({"model": "m", "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "c2", "type": "function", "function": {"name": "f", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "user", "content": "and?"},
                {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
                {"role": "system", "content": "late system"},
                {"role": "user", "content": "b"}
            ]})
            .to_string(),
            1024,
        );
        let msgs = got["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[1]["content"].as_array().unwrap().len(),
            2,
            "empty text dropped"
        );
        assert_eq!(msgs[1]["content"][1]["input"], json!({}));
        let user: Vec<&str> = msgs[2]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(user, ["tool_result", "tool_result", "text", "text"]);
        assert_eq!(
            msgs[2]["content"][1]["content"],
            json!([{"type": "text", "text": "two"}])
        );
        assert_eq!(got["system"], "late system");
    }

    #[test]
    fn image_request() {
        let got = encode(fixture!("openai/image.request.json"), 1024);
        let want = json(fixture!("image.request.json"));
        assert_eq!(got["max_tokens"], want["max_tokens"]);
        assert_eq!(got["messages"].as_array().unwrap().len(), 1);
        assert_eq!(got["messages"][0]["role"], "user");
        // Same blocks; the client's order is kept (the fixture puts images first).
        let mut blocks = got["messages"][0]["content"].as_array().unwrap().clone();
        let mut want_blocks = want["messages"][0]["content"].as_array().unwrap().clone();
        let key = |b: &Value| b.to_string();
        blocks.sort_by_key(key);
        want_blocks.sort_by_key(key);
        assert_eq!(blocks, want_blocks);
        assert_eq!(got["messages"][0]["content"][0]["type"], "text");
    }

    #[test]
    fn json_schema_request() {
        let got = encode(fixture!("openai/json_mode.request.json"), 512);
        let want = json(fixture!("json_output.request.json"));
        assert_eq!(got["output_config"], want["output_config"]);
        assert_eq!(got["max_tokens"], want["max_tokens"]);
        assert_eq!(got["system"], "Extract the city and country.");
    }

    #[test]
    fn unsupported_fields_dropped_and_clamped() {
        let got = encode(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "temperature": 1.7, "seed": 3, "logprobs": true, "top_logprobs": 2,
                "presence_penalty": 0.5, "frequency_penalty": 0.5, "logit_bias": {"1": 2},
                "max_tokens": 10, "stop": "END", "store": true, "metadata": {"a": "b"}})
            .to_string(),
            1024,
        );
        assert_eq!(
            got,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "temperature": 1.0,
                "stop_sequences": ["END"], "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn request_errors_name_the_param_not_the_prompt() {
        let secret = "my secret prompt";
        let e = encode_err(json!({"model": "m", "n": 2,
            "messages": [{"role": "user", "content": secret}]}));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
        let e = encode_err(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": format!("{{{secret}")}}]}]}));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        assert!(e.message.contains("not valid JSON") && !e.message.contains("secret"));
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]}),
        );
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        let e = encode_err(
            json!({"model": "m", "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(e.param.as_deref(), Some("response_format"));
        assert_eq!(e.to_openai()["error"]["code"], "unsupported_parameter");
    }

    #[test]
    fn decodes_text_response() {
        let got =
            decode_response(fixture!("messages.response.json").as_bytes(), "gpt-x", 7).unwrap();
        assert_eq!(got["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
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
        assert_eq!(
            got["usage"],
            json!({"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 31,
                "prompt_tokens_details": {"cached_tokens": 0}})
        );
    }

    #[test]
    fn decodes_tool_response() {
        let got = decode_response(fixture!("tools.response.json").as_bytes(), "gpt-x", 7).unwrap();
        let choice = &got["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["content"],
            "I'll look up the current weather in Paris."
        );
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9X");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args = json(call["function"]["arguments"].as_str().unwrap());
        assert_eq!(
            args,
            json!({"location": "Paris, France", "unit": "celsius"})
        );
        assert_eq!(got["usage"]["total_tokens"], 451);
    }

    #[test]
    fn cache_usage_and_thinking() {
        let body = json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20}});
        let got = decode_response(body.to_string().as_bytes(), "p", 0).unwrap();
        assert_eq!(got["choices"][0]["message"]["content"], "ab");
        assert_eq!(got["choices"][0]["finish_reason"], "length");
        assert_eq!(
            got["usage"],
            json!({"prompt_tokens": 125, "completion_tokens": 2, "total_tokens": 127,
                "prompt_tokens_details": {"cached_tokens": 100},
                "cache_creation_input_tokens": 20})
        );
        let e = decode_response(b"<html>", "p", 0).unwrap_err();
        assert_eq!(e.status, 502);
    }

    #[test]
    fn finish_reasons() {
        for (anthropic, openai) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(Some(anthropic)), openai);
        }
    }

    /// Feeds an SSE transcript through the parser and the translator; each call's output is
    /// kept separately so tests can see what went out when.
    fn run(sse: &str, include_usage: bool) -> (Vec<Vec<Value>>, Option<TranslateError>, bool) {
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
            match state.on_event(event.as_deref(), &data) {
                Ok(chunks) => out.push(chunks.iter().map(|c| json(c)).collect()),
                Err(e) => return (out, Some(e), state.is_done()),
            }
        }
        (out, None, state.is_done())
    }

    fn deltas(calls: &[Vec<Value>]) -> Vec<&Value> {
        calls
            .iter()
            .flatten()
            .filter_map(|c| c["choices"].get(0))
            .collect()
    }

    #[test]
    fn text_stream() {
        let (calls, err, done) = run(fixture!("messages.stream.sse"), true);
        assert!(err.is_none() && done);
        let chunks: Vec<&Value> = calls.iter().flatten().collect();
        assert!(chunks
            .iter()
            .all(|c| c["id"] == "msg_01T3pZ8yW4kR9qHcVbN2mXaL" && c["model"] == "gpt-x"));
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let choices = deltas(&calls);
        let text: String = choices
            .iter()
            .filter_map(|c| c["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Red, yellow, and blue.");
        // Each text delta went out in the call that received it.
        assert_eq!(calls[3][0]["choices"][0]["delta"]["content"], "Red");
        let finish: Vec<&Value> = choices
            .iter()
            .map(|c| &c["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")]);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 15);
        assert_eq!(last["usage"]["completion_tokens"], 10);
        assert_eq!(last["usage"]["total_tokens"], 25);
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null()));

        let (calls, _, _) = run(fixture!("messages.stream.sse"), false);
        let chunks: Vec<&Value> = calls.iter().flatten().collect();
        assert!(chunks
            .iter()
            .all(|c| c.get("usage").is_none() && c["choices"].get(0).is_some()));
    }

    #[test]
    fn tool_stream() {
        let (calls, err, done) = run(fixture!("tools.stream.sse"), true);
        assert!(err.is_none() && done);
        let choices = deltas(&calls);
        let text: String = choices
            .iter()
            .filter_map(|c| c["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "I'll look up the current weather in Paris.");
        let calls_out: Vec<&Value> = choices
            .iter()
            .filter_map(|c| c["delta"]["tool_calls"].get(0))
            .collect();
        let first = calls_out[0];
        assert_eq!(
            first["index"], 0,
            "OpenAI index, not the Anthropic block index"
        );
        assert_eq!(first["id"], "toolu_01A09q90qw90lq917835lq9X");
        assert_eq!(first["type"], "function");
        assert_eq!(first["function"]["name"], "get_weather");
        assert_eq!(first["function"]["arguments"], "");
        let fragments: Vec<&str> = calls_out[1..]
            .iter()
            .map(|c| {
                assert_eq!(c["index"], 0);
                assert!(c.get("id").is_none() && c["function"].get("name").is_none());
                c["function"]["arguments"].as_str().unwrap()
            })
            .collect();
        assert!(fragments.len() > 1, "arguments stream in pieces");
        let args = fragments.concat();
        let want = json(fixture!("tools.response.json"));
        assert_eq!(json(&args), want["content"][1]["input"]);
        let finish: Vec<&Value> = choices
            .iter()
            .map(|c| &c["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("tool_calls")]);
        let last = calls.iter().flatten().last().unwrap();
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 380, "completion_tokens": 71, "total_tokens": 451,
                "prompt_tokens_details": {"cached_tokens": 0}})
        );
    }

    #[test]
    fn second_tool_gets_index_one_and_empty_input_becomes_braces() {
        let mut state = StreamState::new("p", 0, false);
        let mut send = |data: Value| state.on_event(None, &data.to_string()).unwrap();
        send(
            json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}),
        );
        send(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": ""}}));
        let start = send(json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "a", "input": {}}}));
        assert_eq!(
            json(&start[0])["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );
        let stop = send(json!({"type": "content_block_stop", "index": 1}));
        assert_eq!(
            json(&stop[0])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        let start = send(json!({"type": "content_block_start", "index": 2,
            "content_block": {"type": "tool_use", "id": "t2", "name": "b", "input": {}}}));
        assert_eq!(
            json(&start[0])["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        let frag = send(json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}));
        let call = &json(&frag[0])["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            (&call["index"], &call["function"]["arguments"]),
            (&json!(1), &json!("{\"x\":"))
        );
        assert!(send(json!({"type": "ping"})).is_empty());
    }

    #[test]
    fn stream_error_event() {
        let (calls, err, done) = run(fixture!("stream.error.sse"), true);
        let text: String = deltas(&calls)
            .iter()
            .filter_map(|c| c["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Red");
        assert!(!done);
        let e = err.unwrap();
        assert_eq!(
            (e.status, e.code, e.kind),
            (503, "overloaded", "overloaded_error")
        );
        assert_eq!(e.to_openai()["error"]["message"], "Overloaded");
    }

    #[test]
    fn error_bodies() {
        for (status, body, want_status, code) in [
            (
                400,
                fixture!("error.400.prompt_too_long.json"),
                400,
                "context_length_exceeded",
            ),
            (
                403,
                fixture!("error.403.permission.json"),
                403,
                "permission_denied",
            ),
            (
                429,
                fixture!("error.429.rate_limit.json"),
                429,
                "rate_limit_exceeded",
            ),
            (
                529,
                fixture!("error.529.overloaded.json"),
                503,
                "overloaded",
            ),
        ] {
            let (got_status, got) = decode_error(status, body.as_bytes());
            assert_eq!(got_status, want_status, "{status}");
            assert_eq!(got["error"]["code"], code, "{status}");
            assert_eq!(got["error"]["message"], json(body)["error"]["message"]);
        }
        let (_, got) = decode_error(400, fixture!("error.400.prompt_too_long.json").as_bytes());
        assert_eq!(got["error"]["param"], "messages");
        assert_eq!(got["error"]["type"], "invalid_request_error");
        // No JSON body (a proxy's HTML page): the status decides, and the body is not echoed.
        let (s, got) = decode_error(529, b"<html>busy</html>");
        assert_eq!((s, &got["error"]["code"]), (503, &json!("overloaded")));
        let (s, got) = decode_error(502, b"<html>bad gateway</html>");
        assert_eq!(s, 502);
        assert!(!got["error"]["message"].as_str().unwrap().contains("html"));
    }

    #[test]
    fn headers_and_path() {
        assert_eq!(request_headers(), [("anthropic-version", "2023-06-01")]);
        assert_eq!(MESSAGES_PATH, "/v1/messages");
        assert_eq!(AUTH_HEADER, "x-api-key");
    }
}
