//! The Anthropic Messages API as clients speak it to the gateway (`POST /v1/messages`): the
//! request translated into the canonical (OpenAI-shaped) chat request, and the canonical
//! response, stream chunks and errors translated back into Anthropic's shapes, so a client on
//! the Anthropic SDK can use any backend. The `anthropic` provider adapter is the other
//! direction (canonical -> Anthropic upstream); the two share no state.
//!
//! What the canonical form cannot carry is refused with a 400 naming it, never dropped
//! silently: server tools (web search, code execution), file-id sources, images inside tool
//! results. Thinking blocks sent back in history are dropped: only the model that wrote them
//! can read them, and the canonical request has no field for them.

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::openai::{ChatRequest, Content, ContentPart, Message, StreamOptions};
use crate::error::Error;
use crate::sse;

/// A Messages API request. Only the fields the gateway maps are typed; the rest (for example
/// `service_tier`, `container`) is accepted and not forwarded.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub system: Option<Value>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    pub content: InContent,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InContent {
    Text(String),
    Blocks(Vec<Value>),
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> Error {
    Error::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
        code: "invalid_request",
    }
}

/// The canonical chat request for a Messages request. `require_max_tokens` is the Messages
/// endpoint's rule (`count_tokens` has no output limit).
pub fn to_chat(req: MessagesRequest, require_max_tokens: bool) -> Result<ChatRequest, Error> {
    let mut extra = Map::new();
    match req.max_tokens {
        Some(n) if n > 0 => {
            extra.insert("max_tokens".into(), n.into());
        }
        Some(_) => return Err(invalid("max_tokens: must be at least 1", "max_tokens")),
        None if require_max_tokens => {
            return Err(invalid("max_tokens: Field required", "max_tokens"))
        }
        None => {}
    }
    if let Some(stop) = req.stop_sequences.filter(|s| !s.is_empty()) {
        extra.insert("stop".into(), stop.into());
    }
    for (key, value) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = value {
            extra.insert(key.into(), v.into());
        }
    }
    if let Some(user) = req
        .metadata
        .as_ref()
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        extra.insert("user".into(), user.into());
    }
    let tools = req.tools.unwrap_or_default();
    if !tools.is_empty() {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(t, i))
            .collect::<Result<Vec<_>, _>>()?;
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = &req.tool_choice {
            let (choice, parallel) = tool_choice(choice)?;
            extra.insert("tool_choice".into(), choice);
            if parallel == Some(false) {
                extra.insert("parallel_tool_calls".into(), false.into());
            }
        }
    } else if req
        .tool_choice
        .as_ref()
        .and_then(|c| c.get("type"))
        .is_some_and(|t| t == "none")
    {
        extra.insert("tool_choice".into(), "none".into());
    }

    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(message("system", Some(Content::Text(text)), Map::new()));
        }
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role.as_str() {
            "user" => user_messages(m.content, i, &mut messages)?,
            "assistant" => messages.push(assistant_message(m.content, i)?),
            other => {
                return Err(invalid(
                    format!(
                    "messages.{i}.role: unexpected role '{other}'; expected 'user' or 'assistant'"
                ),
                    format!("messages.{i}.role"),
                ))
            }
        }
    }
    if messages.iter().all(|m| m.role == "system") {
        return Err(invalid(
            "messages: at least one message is required",
            "messages",
        ));
    }
    let stream = req.stream == Some(true);
    Ok(ChatRequest {
        model: req.model,
        messages,
        stream: stream.then_some(true),
        // The final usage chunk becomes the `message_delta` usage Anthropic clients read.
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        extra,
    })
}

fn message(role: &str, content: Option<Content>, extra: Map<String, Value>) -> Message {
    Message {
        role: role.into(),
        content,
        extra,
    }
}

fn system_text(system: &Value) -> Result<String, Error> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                match (b.get("type").and_then(Value::as_str), b.get("text")) {
                    (Some("text"), Some(Value::String(t))) => out.push(t.as_str()),
                    _ => {
                        return Err(invalid(
                            format!("system.{i}: only text blocks are supported in system"),
                            format!("system.{i}"),
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(invalid(
            "system: expected a string or a list of text blocks",
            "system",
        )),
    }
}

fn tool(t: &Value, i: usize) -> Result<Value, Error> {
    if let Some(kind) = t.get("type").and_then(Value::as_str) {
        if kind != "custom" {
            return Err(invalid(
                format!(
                    "tools.{i}: the server tool '{kind}' is not available through this gateway"
                ),
                format!("tools.{i}.type"),
            ));
        }
    }
    let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            format!("tools.{i}.name: Field required"),
            format!("tools.{i}.name"),
        )
    })?;
    let mut function = Map::new();
    function.insert("name".into(), name.into());
    if let Some(d) = t.get("description") {
        function.insert("description".into(), d.clone());
    }
    function.insert(
        "parameters".into(),
        t.get("input_schema")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"})),
    );
    Ok(json!({"type": "function", "function": function}))
}

/// The canonical `tool_choice`, and `parallel_tool_calls` when the client disabled them.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), Error> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d);
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.name: Field required", "tool_choice.name"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(invalid(
                "tool_choice: expected type 'auto', 'any', 'tool' or 'none'",
                "tool_choice",
            ))
        }
    };
    Ok((mapped, parallel))
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A user turn: its tool results become `tool` messages (which must directly follow the
/// assistant's tool calls), the rest one `user` message.
fn user_messages(content: InContent, i: usize, out: &mut Vec<Message>) -> Result<(), Error> {
    let blocks = match content {
        InContent::Text(t) => {
            out.push(message("user", Some(Content::Text(t)), Map::new()));
            return Ok(());
        }
        InContent::Blocks(b) => b,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        match block_type(b) {
            "tool_result" => out.push(tool_result(b, &at)?),
            _ => {
                if let Some(part) = user_part(b, &at)? {
                    parts.push(part);
                }
            }
        }
    }
    if !parts.is_empty() {
        out.push(message("user", Some(Content::Parts(parts)), Map::new()));
    }
    Ok(())
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".into(),
        text: Some(text.into()),
        extra: Map::new(),
    }
}

fn part(kind: &str, key: &str, value: Value) -> ContentPart {
    let mut extra = Map::new();
    extra.insert(key.into(), value);
    ContentPart {
        kind: kind.into(),
        text: None,
        extra,
    }
}

/// One content block of a user turn as a canonical part (None for blocks that carry nothing
/// a backend can use).
fn user_part(b: &Value, at: &str) -> Result<Option<ContentPart>, Error> {
    match block_type(b) {
        "text" => Ok(b.get("text").and_then(Value::as_str).map(text_part)),
        "image" => Ok(Some(part(
            "image_url",
            "image_url",
            json!({"url": source_url(b, at, "image")?}),
        ))),
        "document" => {
            let source = b.get("source").unwrap_or(&Value::Null);
            match source.get("type").and_then(Value::as_str) {
                Some("text") => Ok(source.get("data").and_then(Value::as_str).map(text_part)),
                _ => Ok(Some(part(
                    "file",
                    "file",
                    json!({"filename": b.get("title").and_then(Value::as_str).unwrap_or("document.pdf"),
                           "file_data": source_url(b, at, "document")?}),
                ))),
            }
        }
        other => Err(invalid(
            format!("{at}: content blocks of type '{other}' are not supported here"),
            at,
        )),
    }
}

/// The URL (or `data:` URL) of an image or document block's source.
fn source_url(b: &Value, at: &str, what: &str) -> Result<String, Error> {
    let source = b.get("source").unwrap_or(&Value::Null);
    let field = |k: &str| source.get(k).and_then(Value::as_str);
    match field("type") {
        Some("base64") => match (field("media_type"), field("data")) {
            (Some(mime), Some(data)) => Ok(format!("data:{mime};base64,{data}")),
            _ => Err(invalid(
                format!("{at}.source: a base64 {what} needs 'media_type' and 'data'"),
                format!("{at}.source"),
            )),
        },
        Some("url") => field("url").map(str::to_string).ok_or_else(|| {
            invalid(
                format!("{at}.source.url: Field required"),
                format!("{at}.source.url"),
            )
        }),
        _ => Err(invalid(
            format!("{at}.source: only base64 and url sources are supported for a {what}"),
            format!("{at}.source"),
        )),
    }
}

fn tool_result(b: &Value, at: &str) -> Result<Message, Error> {
    let id = b
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(
                format!("{at}.tool_use_id: Field required"),
                format!("{at}.tool_use_id"),
            )
        })?;
    let text = match b.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, inner) in blocks.iter().enumerate() {
                match (block_type(inner), inner.get("text").and_then(Value::as_str)) {
                    ("text", Some(t)) => texts.push(t),
                    (other, _) => {
                        return Err(invalid(
                            format!("{at}.content.{k}: '{other}' blocks in a tool result are not supported; send text"),
                            format!("{at}.content.{k}"),
                        ))
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(invalid(
                format!("{at}.content: expected a string or a list of blocks"),
                format!("{at}.content"),
            ))
        }
    };
    let mut extra = Map::new();
    extra.insert("tool_call_id".into(), id.into());
    Ok(message("tool", Some(Content::Text(text)), extra))
}

fn assistant_message(content: InContent, i: usize) -> Result<Message, Error> {
    let blocks = match content {
        InContent::Text(t) => return Ok(message("assistant", Some(Content::Text(t)), Map::new())),
        InContent::Blocks(b) => b,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        match block_type(b) {
            "text" => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            "tool_use" => {
                let field = |k: &str| {
                    b.get(k).and_then(Value::as_str).ok_or_else(|| {
                        invalid(format!("{at}.{k}: Field required"), format!("{at}.{k}"))
                    })
                };
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": field("id")?,
                    "type": "function",
                    "function": {"name": field("name")?, "arguments": input.to_string()},
                }));
            }
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(invalid(
                    format!("{at}: content blocks of type '{other}' are not supported here"),
                    at,
                ))
            }
        }
    }
    let mut extra = Map::new();
    if !calls.is_empty() {
        extra.insert("tool_calls".into(), Value::Array(calls));
    }
    let content = (!text.is_empty() || extra.is_empty()).then_some(Content::Text(text));
    Ok(message("assistant", content, extra))
}

fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// `msg_…` for a canonical response id.
fn message_id(id: Option<&str>) -> String {
    match id {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) if !id.is_empty() => {
            format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id))
        }
        _ => format!("msg_{:024x}", rand::random::<u128>() >> 32),
    }
}

/// Anthropic's usage object for a canonical one: its `input_tokens` excludes the tokens read
/// from and written to the prompt cache, which OpenAI counts in `prompt_tokens`.
fn usage(u: Option<&Value>) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let prompt = n(u.and_then(|u| u.get("prompt_tokens")));
    let cached = n(u
        .and_then(|u| u.get("prompt_tokens_details"))
        .and_then(|d| d.get("cached_tokens")));
    let written = n(u.and_then(|u| u.get("cache_creation_input_tokens")));
    json!({
        "input_tokens": prompt.saturating_sub(cached).saturating_sub(written),
        "output_tokens": n(u.and_then(|u| u.get("completion_tokens"))),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    })
}

/// A canonical `chat.completion` body as an Anthropic `message` (named after the model the
/// backend reports, as the chat endpoint does, or the requested one).
pub fn message_from_chat(body: &[u8], public_model: &str) -> Result<Vec<u8>, Error> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Error::UpstreamProtocol {
        provider: "-".into(),
        reason: format!("response is not JSON: {e}"),
    })?;
    let choice = v.get("choices").and_then(|c| c.get(0));
    let msg = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(text) = msg
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(refusal) = msg
        .and_then(|m| m.get("refusal"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": refusal}));
    }
    for call in msg
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        let args = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or(""),
            "input": tool_input(args),
        }));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let out = json!({
        "id": message_id(v.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": v.get("model").and_then(Value::as_str).unwrap_or(public_model),
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage(v.get("usage")),
    });
    serde_json::to_vec(&out).map_err(|e| Error::Internal(e.to_string()))
}

/// Tool arguments as a JSON object; arguments a model wrote that do not parse are kept as a
/// string under `_raw` rather than lost.
fn tool_input(args: &str) -> Value {
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => v,
        _ if args.trim().is_empty() => json!({}),
        _ => json!({"_raw": args}),
    }
}

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An OpenAI-shaped error body (`{"error":{"message",…}}`) in Anthropic's shape.
pub fn error_body(status: u16, openai_body: &[u8]) -> Vec<u8> {
    let message = serde_json::from_slice::<Value>(openai_body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("request failed with status {status}"));
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
        .to_string()
        .into_bytes()
}

/// What kind of content block is open in the Anthropic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(usize),
    /// A tool call: the canonical tool index and its block index.
    Tool(u64, usize),
}

/// Turns canonical chunk payloads into Anthropic's event sequence (`message_start`,
/// `content_block_start/delta/stop`, `message_delta`, `message_stop`, `error`), one chunk at a
/// time. Tool arguments go out as `input_json_delta`s as they arrive.
#[derive(Debug)]
pub struct EventStream {
    started: bool,
    ended: bool,
    open: Open,
    next_block: usize,
    /// Block index of each canonical tool call index seen so far.
    tools: Vec<(u64, usize)>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl Default for EventStream {
    fn default() -> Self {
        Self::new()
    }
}

impl EventStream {
    pub fn new() -> Self {
        Self {
            started: false,
            ended: false,
            open: Open::None,
            next_block: 0,
            tools: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// One canonical `data:` payload in, Anthropic events appended to `out`.
    pub fn on_data(&mut self, data: &str, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if data == "[DONE]" {
            self.end(out);
            return;
        }
        if self.started && self.fast_text(data, out) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(err) = v.get("error") {
            self.error(err, out);
            return;
        }
        if !self.started {
            self.start(&v, out);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                if !text.is_empty() {
                    self.text(text, out);
                }
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.tool_call(call, out);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }

    /// Most of a stream is chunks adding text to one choice: those skip the generic parse and
    /// are written out directly. False: anything else, for the generic path.
    fn fast_text(&mut self, data: &str, out: &mut BytesMut) -> bool {
        #[derive(Deserialize)]
        struct Chunk<'a> {
            #[serde(borrow)]
            choices: Vec<Choice<'a>>,
            #[serde(default)]
            usage: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            error: Option<serde::de::IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct Choice<'a> {
            #[serde(borrow)]
            delta: Delta<'a>,
            #[serde(default)]
            finish_reason: Option<serde::de::IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct Delta<'a> {
            #[serde(borrow)]
            content: std::borrow::Cow<'a, str>,
            #[serde(default)]
            tool_calls: Option<serde::de::IgnoredAny>,
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            return false;
        };
        let [choice] = chunk.choices.as_slice() else {
            return false;
        };
        if chunk.usage.is_some()
            || chunk.error.is_some()
            || choice.finish_reason.is_some()
            || choice.delta.tool_calls.is_some()
        {
            return false;
        }
        let text = &choice.delta.content;
        if text.is_empty() {
            return true;
        }
        let index = match self.open {
            Open::Text(i) => i,
            _ => {
                let i = self.open_block(json!({"type": "text", "text": ""}), out);
                self.open = Open::Text(i);
                i
            }
        };
        let mut data = Vec::with_capacity(text.len() + 80);
        data.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
        data.extend_from_slice(index.to_string().as_bytes());
        data.extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
        // Serializing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut data, text.as_ref());
        data.extend_from_slice(b"}}");
        out.extend_from_slice(b"event: content_block_delta\ndata: ");
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\n\n");
        true
    }

    /// The upstream stream ended: close the message if the end marker never came (the relay
    /// has already sent its own error event in that case).
    pub fn on_end(&mut self, out: &mut BytesMut) {
        if !self.ended && self.started {
            self.end(out);
        }
    }

    fn emit(out: &mut BytesMut, name: &str, data: &Value) {
        sse::encode_into(out, Some(name), &data.to_string());
    }

    fn start(&mut self, chunk: &Value, out: &mut BytesMut) {
        self.started = true;
        let model = chunk.get("model").and_then(Value::as_str).unwrap_or("");
        Self::emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(chunk.get("id").and_then(Value::as_str)),
                "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
        Self::emit(out, "ping", &json!({"type": "ping"}));
    }

    fn close(&mut self, out: &mut BytesMut) {
        let index = match self.open {
            Open::None => return,
            Open::Text(i) | Open::Tool(_, i) => i,
        };
        Self::emit(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
        self.open = Open::None;
    }

    fn open_block(&mut self, block: Value, out: &mut BytesMut) -> usize {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        Self::emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let index = match self.open {
            Open::Text(i) => i,
            _ => {
                let i = self.open_block(json!({"type": "text", "text": ""}), out);
                self.open = Open::Text(i);
                i
            }
        };
        Self::emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn tool_call(&mut self, call: &Value, out: &mut BytesMut) {
        let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function");
        let known = self.tools.iter().find(|(t, _)| *t == tool).map(|(_, b)| *b);
        let index = match known {
            Some(b) => b,
            None => {
                let b = self.open_block(
                    json!({"type": "tool_use",
                           "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
                           "name": f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or(""),
                           "input": {}}),
                    out,
                );
                self.tools.push((tool, b));
                self.open = Open::Tool(tool, b);
                b
            }
        };
        if let Some(args) = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            Self::emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": args}}),
            );
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.start(&Value::Null, out);
        }
        self.close(out);
        self.ended = true;
        let mut u = usage(self.usage.as_ref());
        if let Some(obj) = u.as_object_mut() {
            obj.remove("cache_creation_input_tokens");
        }
        Self::emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                    "usage": u}),
        );
        Self::emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn error(&mut self, err: &Value, out: &mut BytesMut) {
        self.ended = true;
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the upstream stream failed");
        let kind = match err.get("code").and_then(Value::as_str) {
            Some("rate_limit_exceeded") => "rate_limit_error",
            Some("overloaded") => "overloaded_error",
            _ => "api_error",
        };
        Self::emit(
            out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Value {
        let req: MessagesRequest = serde_json::from_value(v).unwrap();
        serde_json::to_value(to_chat(req, true).unwrap()).unwrap()
    }

    fn err(v: Value) -> String {
        let req: MessagesRequest = serde_json::from_value(v).unwrap();
        to_chat(req, true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn text_request_maps_to_chat() {
        let out = chat(json!({
            "model": "m", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
            "metadata": {"user_id": "u1"}
        }));
        assert_eq!(
            out,
            json!({"model": "m", "max_tokens": 100, "stop": ["END"], "temperature": 0.5,
                   "top_p": 0.9, "user": "u1",
                   "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn stream_asks_for_usage() {
        let out = chat(json!({"model": "m", "max_tokens": 5, "stream": true,
                              "messages": [{"role": "user", "content": "Hi"}]}));
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn tools_images_and_results_map() {
        let out = chat(json!({
            "model": "m", "max_tokens": 100,
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "And tomorrow?"}]}
            ]
        }));
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(
            out["tools"][0],
            json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
        );
        let m = &out["messages"];
        assert_eq!(
            m[0]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBOR"
        );
        assert_eq!(
            m[0]["content"][2]["image_url"]["url"],
            "https://example.com/a.png"
        );
        assert_eq!(m[1]["content"], "Checking.");
        assert_eq!(
            m[1]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(
            m[2],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"})
        );
        assert_eq!(m[3]["role"], "user");
        assert_eq!(m[3]["content"][0]["text"], "And tomorrow?");
    }

    #[test]
    fn what_cannot_be_carried_is_refused() {
        assert!(
            err(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
                .contains("max_tokens")
        );
        assert!(err(json!({"model": "m", "max_tokens": 5,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "x"}]}))
        .contains("web_search_20250305"));
        assert!(err(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]})
        )
        .contains("messages.0.content.0.source"));
        assert!(err(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})
        )
        .contains("role"));
    }

    #[test]
    fn response_maps_to_message() {
        let body = json!({"id": "chatcmpl-abc", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": "Let me check.", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
                      "prompt_tokens_details": {"cached_tokens": 10}}});
        let out: Value =
            serde_json::from_slice(&message_from_chat(body.to_string().as_bytes(), "pub").unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"id": "msg_abc", "type": "message", "role": "assistant", "model": "pub",
                "content": [{"type": "text", "text": "Let me check."},
                            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 9, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 10}})
        );
    }

    #[test]
    fn errors_take_anthropic_shape() {
        let out: Value = serde_json::from_slice(&error_body(
            429,
            br#"{"error":{"message":"slow down","type":"rate_limit","param":null,"code":null}}"#,
        ))
        .unwrap();
        assert_eq!(
            out,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
        assert_eq!(error_type(529), "overloaded_error");
    }

    fn events(chunks: &[&str]) -> Vec<(String, Value)> {
        let mut s = EventStream::new();
        let mut out = BytesMut::new();
        for c in chunks {
            s.on_data(c, &mut out);
        }
        s.on_end(&mut out);
        sse::json_events(&out)
    }

    #[test]
    fn stream_follows_anthropic_sequence() {
        let ev = events(&[
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"chatcmpl-1","model":"pub","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            "[DONE]",
        ]);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["id"], "msg_1");
        assert_eq!(
            ev[3].1["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(
            ev[6].1["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
        );
        assert_eq!(ev[7].1["index"], 1);
        assert_eq!(
            ev[7].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"a\":"})
        );
        assert_eq!(ev[10].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[10].1["usage"]["output_tokens"], 3);
        assert_eq!(ev[10].1["usage"]["input_tokens"], 7);
    }

    #[test]
    fn stream_error_becomes_error_event() {
        let ev = events(&[
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"{"error":{"message":"upstream went away","type":"upstream_error","code":"upstream_bad_response"}}"#,
        ]);
        let last = ev.last().unwrap();
        assert_eq!(last.0, "error");
        assert_eq!(last.1["error"]["message"], "upstream went away");
        assert!(ev.iter().all(|(n, _)| n != "message_stop"));
    }
}
