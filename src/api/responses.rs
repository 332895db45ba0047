//! The OpenAI Responses API as clients speak it to the gateway (`POST /v1/responses`), served
//! statelessly: the request translated into the canonical chat request, and the canonical
//! response, stream chunks and errors translated back into a `response` object and the
//! Responses event sequence, so any backend can serve it.
//!
//! The gateway stores no prompts and no answers, so nothing that needs server-side state can be
//! honoured: `previous_response_id`, `conversation` and item references are refused with a 400
//! that says why, and every response says `store: false`. Hosted tools (web search, file
//! search, computer use, ...) and file ids are refused by name; reasoning items sent back in
//! history are dropped (only the model that wrote them can read them).

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::openai::{ChatRequest, Content, ContentPart, Message, StreamOptions};
use crate::error::Error;
use crate::sse;

/// A Responses API request. Only the fields the gateway maps are typed; the rest (`include`,
/// `truncation`, `service_tier`, ...) is accepted and not forwarded.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<Value>,
    #[serde(default)]
    pub conversation: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> Error {
    Error::InvalidRequest {
        message: message.into(),
        param: Some(param.into()),
        code: "invalid_request",
    }
}

/// The refusal for anything that needs conversation state kept by the server.
fn stateless(param: &str) -> Error {
    Error::InvalidRequest {
        message: format!(
            "'{param}' is not supported: this gateway keeps no conversation state (it stores no prompts or responses); send the whole conversation in 'input' instead"
        ),
        param: Some(param.into()),
        code: "unsupported_parameter",
    }
}

/// The canonical chat request for a Responses request.
pub fn to_chat(req: ResponsesRequest) -> Result<ChatRequest, Error> {
    if req
        .previous_response_id
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(stateless("previous_response_id"));
    }
    if req.conversation.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(stateless("conversation"));
    }
    let mut extra = Map::new();
    match req.max_output_tokens {
        Some(0) => {
            return Err(invalid(
                "max_output_tokens: must be at least 1",
                "max_output_tokens",
            ))
        }
        Some(n) => {
            extra.insert("max_tokens".into(), n.into());
        }
        None => {}
    }
    for (key, value) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = value {
            extra.insert(key.into(), v.into());
        }
    }
    if let Some(user) = req.user {
        extra.insert("user".into(), user.into());
    }
    if let Some(effort) = req
        .reasoning
        .as_ref()
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str)
    {
        extra.insert("reasoning_effort".into(), effort.into());
    }
    if let Some(format) = req.text.as_ref().and_then(|t| t.get("format")) {
        if let Some(rf) = response_format(format)? {
            extra.insert("response_format".into(), rf);
        }
    }
    let tools = req.tools.unwrap_or_default();
    if !tools.is_empty() {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(t, i))
            .collect::<Result<Vec<_>, _>>()?;
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(p) = req.parallel_tool_calls {
            extra.insert("parallel_tool_calls".into(), p.into());
        }
    }
    if let Some(choice) = &req.tool_choice {
        let choice = tool_choice(choice)?;
        if extra.contains_key("tools") || choice == "none" {
            extra.insert("tool_choice".into(), choice);
        }
    }

    let mut messages = Vec::new();
    if let Some(text) = req.instructions.filter(|t| !t.is_empty()) {
        messages.push(message("system", Some(Content::Text(text)), Map::new()));
    }
    match req.input {
        Some(Value::String(s)) => {
            messages.push(message("user", Some(Content::Text(s)), Map::new()))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, i, &mut messages)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(invalid(
                "input: expected a string or a list of input items",
                "input",
            ))
        }
    }
    if messages.iter().all(|m| m.role == "system") {
        return Err(invalid(
            "input: at least one input item is required",
            "input",
        ));
    }
    let stream = req.stream == Some(true);
    Ok(ChatRequest {
        model: req.model,
        messages,
        stream: stream.then_some(true),
        // The usage chunk at the end becomes the usage of `response.completed`.
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

fn str_field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, Error> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{at}.{key}: Field required"), format!("{at}.{key}")))
}

/// `text.format` as the canonical `response_format` (None for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, Error> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            schema.insert(
                "name".into(),
                str_field(format, "name", "text.format")?.into(),
            );
            for key in ["schema", "strict", "description"] {
                if let Some(v) = format.get(key) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(invalid(
            "text.format.type: expected 'text', 'json_object' or 'json_schema'",
            "text.format.type",
        )),
    }
}

fn tool(t: &Value, i: usize) -> Result<Value, Error> {
    let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "function" {
        return Err(invalid(
            format!("tools.{i}: the hosted tool '{kind}' is not available through this gateway; only function tools are"),
            format!("tools.{i}.type"),
        ));
    }
    let mut function = Map::new();
    function.insert(
        "name".into(),
        str_field(t, "name", &format!("tools.{i}"))?.into(),
    );
    if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
        function.insert("description".into(), d.clone());
    }
    function.insert(
        "parameters".into(),
        t.get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if let Some(s) = t.get("strict").filter(|s| s.is_boolean()) {
        function.insert("strict".into(), s.clone());
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &Value) -> Result<Value, Error> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = str_field(choice, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(invalid(
            "tool_choice: expected 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}",
            "tool_choice",
        )),
    }
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".into(),
        text: Some(text.into()),
        extra: Map::new(),
    }
}

fn part(kind: &str, value: Value) -> ContentPart {
    let mut extra = Map::new();
    extra.insert(kind.into(), value);
    ContentPart {
        kind: kind.into(),
        text: None,
        extra,
    }
}

/// One input item appended to the canonical messages.
fn input_item(item: &Value, i: usize, out: &mut Vec<Message>) -> Result<(), Error> {
    let at = format!("input.{i}");
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        // `{role, content}` without a type is the short form of a message.
        None | Some("message") => {
            let role = str_field(item, "role", &at)?;
            let content = item.get("content").unwrap_or(&Value::Null);
            match role {
                "user" | "system" | "developer" => {
                    // The canonical form has no developer role; every backend knows system.
                    let role = if role == "user" { "user" } else { "system" };
                    out.push(message(role, Some(user_content(content, &at)?), Map::new()));
                }
                "assistant" => {
                    let text = assistant_text(content, &at)?;
                    out.push(message("assistant", Some(Content::Text(text)), Map::new()));
                }
                other => {
                    return Err(invalid(
                        format!("{at}.role: unexpected role '{other}'"),
                        format!("{at}.role"),
                    ))
                }
            }
        }
        Some("function_call") => {
            let call = json!({
                "id": str_field(item, "call_id", &at)?,
                "type": "function",
                "function": {
                    "name": str_field(item, "name", &at)?,
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                },
            });
            // Calls made in one turn belong to one assistant message, after its text.
            match out.last_mut() {
                Some(last) if last.role == "assistant" => {
                    let calls = last
                        .extra
                        .entry("tool_calls")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(calls) = calls {
                        calls.push(call);
                    }
                    if matches!(&last.content, Some(Content::Text(t)) if t.is_empty()) {
                        last.content = None;
                    }
                }
                _ => {
                    let mut extra = Map::new();
                    extra.insert("tool_calls".into(), Value::Array(vec![call]));
                    out.push(message("assistant", None, extra));
                }
            }
        }
        Some("function_call_output") => {
            let id = str_field(item, "call_id", &at)?;
            let text = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut texts = Vec::with_capacity(parts.len());
                    for (k, p) in parts.iter().enumerate() {
                        match p.get("type").and_then(Value::as_str) {
                            Some("input_text" | "output_text") => {
                                texts.push(p.get("text").and_then(Value::as_str).unwrap_or(""));
                            }
                            other => {
                                return Err(invalid(
                                    format!("{at}.output.{k}: '{}' parts in a function call output are not supported; send text", other.unwrap_or("")),
                                    format!("{at}.output.{k}"),
                                ))
                            }
                        }
                    }
                    texts.join("\n")
                }
                _ => {
                    return Err(invalid(
                        format!("{at}.output: expected a string"),
                        format!("{at}.output"),
                    ))
                }
            };
            let mut extra = Map::new();
            extra.insert("tool_call_id".into(), id.into());
            out.push(message("tool", Some(Content::Text(text)), extra));
        }
        Some("reasoning") => {}
        Some("item_reference") => return Err(stateless(&format!("{at} (item_reference)"))),
        Some(other) => {
            return Err(invalid(
                format!("{at}: input items of type '{other}' are not supported here"),
                format!("{at}.type"),
            ))
        }
    }
    Ok(())
}

/// A user (or system) message's content as canonical content.
fn user_content(content: &Value, at: &str) -> Result<Content, Error> {
    let parts = match content {
        Value::String(s) => return Ok(Content::Text(s.clone())),
        Value::Array(parts) => parts,
        _ => {
            return Err(invalid(
                format!("{at}.content: expected a string or a list of content parts"),
                format!("{at}.content"),
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match p.get("type").and_then(Value::as_str).unwrap_or("") {
            "input_text" | "output_text" | "text" => {
                out.push(text_part(
                    p.get("text").and_then(Value::as_str).unwrap_or(""),
                ));
            }
            "input_image" => {
                let url = p
                    .get("image_url")
                    .and_then(Value::as_str)
                    .ok_or_else(|| file_id_refused(p, &at, "image_url"))?;
                let mut image = Map::new();
                image.insert("url".into(), url.into());
                if let Some(d) = p.get("detail").and_then(Value::as_str) {
                    image.insert("detail".into(), d.into());
                }
                out.push(part("image_url", Value::Object(image)));
            }
            "input_file" => {
                let data = p
                    .get("file_data")
                    .and_then(Value::as_str)
                    .ok_or_else(|| file_id_refused(p, &at, "file_data"))?;
                let name = p
                    .get("filename")
                    .and_then(Value::as_str)
                    .unwrap_or("document.pdf");
                out.push(part("file", json!({"filename": name, "file_data": data})));
            }
            other => {
                return Err(invalid(
                    format!("{at}: content parts of type '{other}' are not supported here"),
                    format!("{at}.type"),
                ))
            }
        }
    }
    Ok(Content::Parts(out))
}

fn file_id_refused(p: &Value, at: &str, field: &str) -> Error {
    if p.get("file_id").is_some_and(|f| !f.is_null()) {
        invalid(
            format!("{at}.file_id: uploaded files are not available through this gateway; send '{field}' inline"),
            format!("{at}.file_id"),
        )
    } else {
        invalid(
            format!("{at}.{field}: Field required"),
            format!("{at}.{field}"),
        )
    }
}

/// The text of an assistant message sent back in history.
fn assistant_text(content: &Value, at: &str) -> Result<String, Error> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
            })
            .collect::<Vec<_>>()
            .join("")),
        _ => Err(invalid(
            format!("{at}.content: expected a string or a list of content parts"),
            format!("{at}.content"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical -> Responses

/// `resp_…` for a canonical response id.
fn response_id(id: Option<&str>) -> String {
    match id {
        Some(id) if id.starts_with("resp_") => id.to_string(),
        Some(id) if !id.is_empty() => {
            format!("resp_{}", id.strip_prefix("chatcmpl-").unwrap_or(id))
        }
        _ => format!("resp_{:032x}", rand::random::<u128>()),
    }
}

fn item_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The Responses usage object for a canonical one.
fn usage(u: Option<&Value>) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let get = |k: &str| u.and_then(|u| u.get(k));
    let input = n(get("prompt_tokens"));
    let output = n(get("completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": n(get("prompt_tokens_details").and_then(|d| d.get("cached_tokens"))),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": n(get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))),
        },
        "total_tokens": n(get("total_tokens")).max(input + output),
    })
}

/// Status and `incomplete_details` for a canonical finish reason.
fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A `response` object; the request-echo fields a stateless gateway does not keep are given
/// their defaults.
fn response_object(
    id: &str,
    created_at: u64,
    model: &str,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content: Vec<Value> = text
        .map(|t| json!({"type": "output_text", "text": t, "annotations": [], "logprobs": []}))
        .into_iter()
        .collect();
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// A canonical `chat.completion` body as a `response` object.
pub fn response_from_chat(body: &[u8], public_model: &str) -> Result<Vec<u8>, Error> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Error::UpstreamProtocol {
        provider: "-".into(),
        reason: format!("response is not JSON: {e}"),
    })?;
    let choice = v.get("choices").and_then(|c| c.get(0));
    let msg = choice.and_then(|c| c.get("message"));
    let text_of = |k: &str| {
        msg.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    };
    let mut output = Vec::new();
    if let Some(text) = text_of("content") {
        output.push(message_item(&item_id("msg"), "completed", Some(text)));
    }
    if let Some(refusal) = text_of("refusal") {
        output.push(
            json!({"type": "message", "id": item_id("msg"), "status": "completed",
            "role": "assistant", "content": [{"type": "refusal", "refusal": refusal}]}),
        );
    }
    for call in msg
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        output.push(call_item(
            &item_id("fc"),
            &s(call.get("id")),
            &s(f.and_then(|f| f.get("name"))),
            f.and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("{}"),
            "completed",
        ));
    }
    let (status, incomplete) = status(
        choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str),
    );
    let out = response_object(
        &response_id(v.get("id").and_then(Value::as_str)),
        v.get("created").and_then(Value::as_u64).unwrap_or_else(now),
        v.get("model")
            .and_then(Value::as_str)
            .unwrap_or(public_model),
        status,
        incomplete,
        output,
        usage(v.get("usage")),
    );
    serde_json::to_vec(&out).map_err(|e| Error::Internal(e.to_string()))
}

/// An output item being streamed.
#[derive(Debug)]
enum Item {
    Text {
        id: String,
        text: String,
    },
    Call {
        id: String,
        /// The canonical tool call index.
        index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Turns canonical chunk payloads into the Responses event sequence (`response.created`,
/// `response.in_progress`, `response.output_item.added`, `response.content_part.added`,
/// `response.output_text.delta`, `response.function_call_arguments.delta`, the matching
/// `.done` events, then `response.completed` or `response.incomplete` with usage; `error` and
/// `response.failed` when the upstream fails), one chunk at a time.
#[derive(Debug)]
pub struct EventStream {
    started: bool,
    ended: bool,
    seq: u64,
    id: String,
    model: String,
    created_at: u64,
    /// Items done, as they appear in `output`.
    done: Vec<Value>,
    open: Option<Item>,
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
            seq: 0,
            id: String::new(),
            model: String::new(),
            created_at: 0,
            done: Vec::new(),
            open: None,
            finish: None,
            usage: None,
        }
    }

    /// One canonical `data:` payload in, Responses events appended to `out`.
    pub fn on_data(&mut self, data: &str, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if data == "[DONE]" {
            self.end(out);
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
            if let Some(text) = delta
                .get("content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.text(text, out);
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

    /// The upstream stream ended: close the response if the end marker never came (the relay
    /// has already sent its own error payload in that case).
    pub fn on_end(&mut self, out: &mut BytesMut) {
        if !self.ended && self.started {
            self.end(out);
        }
    }

    fn emit(&mut self, out: &mut BytesMut, name: &str, mut data: Value) {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), name.into());
            o.insert("sequence_number".into(), self.seq.into());
        }
        self.seq += 1;
        sse::encode_into(out, Some(name), &data.to_string());
    }

    fn snapshot(&self, status: &str, incomplete: Value, usage: Value) -> Value {
        response_object(
            &self.id,
            self.created_at,
            &self.model,
            status,
            incomplete,
            self.done.clone(),
            usage,
        )
    }

    fn start(&mut self, chunk: &Value, out: &mut BytesMut) {
        self.started = true;
        self.id = response_id(chunk.get("id").and_then(Value::as_str));
        self.model = chunk
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.created_at = chunk
            .get("created")
            .and_then(Value::as_u64)
            .unwrap_or_else(now);
        let response = self.snapshot("in_progress", Value::Null, Value::Null);
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if !matches!(self.open, Some(Item::Text { .. })) {
            self.close(out);
            let id = item_id("msg");
            let index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": message_item(&id, "in_progress", None)}),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            );
            self.open = Some(Item::Text {
                id,
                text: String::new(),
            });
        }
        let index = self.output_index();
        if let Some(Item::Text { id, text: all }) = &mut self.open {
            all.push_str(text);
            let id = id.clone();
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "delta": text, "logprobs": []}),
            );
        }
    }

    fn tool_call(&mut self, call: &Value, out: &mut BytesMut) {
        let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function");
        let same = matches!(&self.open, Some(Item::Call { index, .. }) if *index == tool);
        if !same {
            self.close(out);
            let id = item_id("fc");
            let call_id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| item_id("call"), str::to_string);
            let name = f
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index,
                       "item": call_item(&id, &call_id, &name, "", "in_progress")}),
            );
            self.open = Some(Item::Call {
                id,
                index: tool,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let args = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty());
        let index = self.output_index();
        if let (Some(args), Some(Item::Call { id, arguments, .. })) = (args, &mut self.open) {
            arguments.push_str(args);
            let id = id.clone();
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": args}),
            );
        }
    }

    /// Finishes the open output item with its `.done` events.
    fn close(&mut self, out: &mut BytesMut) {
        let index = self.output_index();
        let item = match self.open.take() {
            None => return,
            Some(Item::Text { id, text }) => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
                );
                message_item(&id, "completed", Some(&text))
            }
            Some(Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.done.push(item);
    }

    fn end(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.start(&Value::Null, out);
        }
        self.close(out);
        self.ended = true;
        let (status, incomplete) = status(self.finish.as_deref());
        let response = self.snapshot(status, incomplete, usage(self.usage.as_ref()));
        let name = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, name, json!({"response": response}));
    }

    fn error(&mut self, err: &Value, out: &mut BytesMut) {
        if !self.started {
            self.start(&Value::Null, out);
        }
        self.ended = true;
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the upstream stream failed")
            .to_string();
        let code = err
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("server_error")
            .to_string();
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut response = self.snapshot("failed", Value::Null, Value::Null);
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({"response": response}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Value {
        let req: ResponsesRequest = serde_json::from_value(v).unwrap();
        serde_json::to_value(to_chat(req).unwrap()).unwrap()
    }

    fn err(v: Value) -> String {
        let req: ResponsesRequest = serde_json::from_value(v).unwrap();
        to_chat(req)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn string_input_maps_to_chat() {
        let out = chat(json!({
            "model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 50,
            "temperature": 0.2, "top_p": 0.9, "store": true, "truncation": "auto",
            "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
                                "schema": {"type": "object"}}}
        }));
        assert_eq!(
            out,
            json!({"model": "m", "max_tokens": 50, "temperature": 0.2, "top_p": 0.9,
                   "response_format": {"type": "json_schema", "json_schema":
                        {"name": "answer", "schema": {"type": "object"}, "strict": true}},
                   "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn stream_asks_for_usage() {
        let out = chat(json!({"model": "m", "input": "Hi", "stream": true}));
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn items_tools_and_images_map() {
        let out = chat(json!({
            "model": "m",
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object"}, "strict": false}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false,
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "low"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
            ]
        }));
        assert_eq!(
            out["tools"][0],
            json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object"}, "strict": false}})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(out["parallel_tool_calls"], false);
        let m = &out["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "Use tools."}));
        assert_eq!(
            m[1]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}})
        );
        assert_eq!(m[2]["content"], "Checking.");
        assert_eq!(m[2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
        );
        assert_eq!(m.as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn a_call_without_text_starts_its_own_assistant_message() {
        let out = chat(json!({"model": "m", "input": [
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a"},
            {"type": "function_call_output", "call_id": "c2", "output": "b"}]}));
        let m = &out["messages"];
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(m[1]["tool_calls"].as_array().map(Vec::len), Some(2));
        assert_eq!(m[2]["tool_call_id"], "c1");
        assert_eq!(m[3]["tool_call_id"], "c2");
    }

    #[test]
    fn what_needs_state_or_hosted_tools_is_refused() {
        let e = err(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}));
        assert!(e.contains("no conversation state"), "{e}");
        assert!(
            err(json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}))
                .contains("no conversation state")
        );
        assert!(
            err(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}))
                .contains("web_search")
        );
        assert!(
            err(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "file_id": "file_1"}]}]}))
            .contains("file_id")
        );
        assert!(err(json!({"model": "m"})).contains("input"));
    }

    #[test]
    fn response_maps_from_chat() {
        let body = json!({"id": "chatcmpl-abc", "object": "chat.completion", "created": 7, "model": "up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": "Let me check.", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39,
                      "prompt_tokens_details": {"cached_tokens": 10}}});
        let out: Value = serde_json::from_slice(
            &response_from_chat(body.to_string().as_bytes(), "pub").unwrap(),
        )
        .unwrap();
        assert_eq!(out["id"], "resp_abc");
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["store"], false);
        assert_eq!(out["created_at"], 7);
        assert_eq!(out["model"], "up");
        assert_eq!(out["output"][0]["type"], "message");
        assert_eq!(out["output"][0]["content"][0]["text"], "Let me check.");
        assert_eq!(out["output"][1]["type"], "function_call");
        assert_eq!(out["output"][1]["call_id"], "call_1");
        assert_eq!(out["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
                   "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 39})
        );
        let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "Hal"}}]});
        let out: Value =
            serde_json::from_slice(&response_from_chat(cut.to_string().as_bytes(), "pub").unwrap())
                .unwrap();
        assert_eq!(out["status"], "incomplete");
        assert_eq!(out["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(out["model"], "pub");
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
    fn stream_follows_the_responses_sequence() {
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
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in ev.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
        }
        assert_eq!(ev[0].1["response"]["id"], "resp_1");
        assert_eq!(ev[4].1["delta"], "Hel");
        assert_eq!(ev[6].1["text"], "Hello");
        assert_eq!(ev[9].1["output_index"], 1);
        assert_eq!(ev[9].1["item"]["call_id"], "call_1");
        assert_eq!(ev[12].1["arguments"], "{\"a\":1}");
        let done = &ev[14].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["name"], "f");
        assert_eq!(done["usage"]["input_tokens"], 7);
        assert_eq!(done["usage"]["output_tokens"], 3);
    }

    #[test]
    fn stream_error_becomes_error_and_failed() {
        let ev = events(&[
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"{"error":{"message":"upstream went away","type":"upstream_error","code":"upstream_bad_response"}}"#,
        ]);
        let n = ev.len();
        assert_eq!(ev[n - 2].0, "error");
        assert_eq!(ev[n - 2].1["message"], "upstream went away");
        assert_eq!(ev[n - 1].0, "response.failed");
        assert_eq!(ev[n - 1].1["response"]["status"], "failed");
        assert!(ev.iter().all(|(n, _)| n != "response.completed"));
    }
}
