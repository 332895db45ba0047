//! OpenAI requests as Bedrock bodies: chat completions as Converse / ConverseStream requests
//! (the body is the same for both; the path says which), embeddings as InvokeModel bodies of
//! the Titan and Cohere embedding models. Error messages name fields and indexes, never prompt
//! text.

use serde_json::{json, Map, Value};

use super::TranslateError;
use crate::api::openai::{ChatRequest, Content, ContentPart, EmbeddingsRequest, Message};

/// The Converse body for an OpenAI chat request. Dropped for lack of an equivalent (or
/// because they change nothing the client sees): `user`/`safety_identifier`, `metadata`,
/// `store`, `seed`, `logit_bias`, `logprobs`, `parallel_tool_calls`, `service_tier`,
/// `stream_options` (Bedrock always reports usage), penalties, `reasoning_effort`. Fields
/// that would change the answer and cannot be honoured (`n` > 1, JSON output formats,
/// image URLs) are refused instead.
pub fn encode_chat(req: &ChatRequest) -> Result<Value, TranslateError> {
    let x = &req.extra;
    let (system, messages) = encode_messages(&req.messages)?;
    let mut body = Map::new();
    body.insert("messages".into(), messages.into());
    if !system.is_empty() {
        body.insert("system".into(), system.into());
    }
    if let Some(config) = tool_config(x, &req.messages)? {
        body.insert("toolConfig".into(), config);
    }
    let mut inference = Map::new();
    let max = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|k| present(x, k).map(|v| (k, v)));
    if let Some((key, v)) = max {
        if v.as_u64().is_none_or(|n| n == 0) {
            return Err(TranslateError::invalid(key, "must be a positive integer"));
        }
        inference.insert("maxTokens".into(), v.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = present(x, from) {
            if !v.is_number() {
                return Err(TranslateError::invalid(from, "must be a number"));
            }
            inference.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = stop_sequences(x)? {
        inference.insert("stopSequences".into(), stop);
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), inference.into());
    }
    // Not an OpenAI field, but clients of OpenAI-compatible servers send it; the models that
    // take it (Anthropic's, Mistral's, ...) read it from the model-native extras.
    if let Some(k) = present(x, "top_k") {
        if k.as_u64().is_none_or(|n| n == 0) {
            return Err(TranslateError::invalid(
                "top_k",
                "must be a positive integer",
            ));
        }
        body.insert("additionalModelRequestFields".into(), json!({ "top_k": k }));
    }
    if let Some(n) = present(x, "n") {
        if n.as_u64() != Some(1) {
            return Err(TranslateError::unsupported(
                "n",
                "must be 1: Bedrock returns one choice",
            ));
        }
    }
    if let Some(format) = present(x, "response_format") {
        match format["type"].as_str() {
            Some("text") => {}
            Some("json_object" | "json_schema") => {
                return Err(TranslateError::unsupported(
                    "response_format.type",
                    "is not supported by the bedrock provider: Converse has no JSON mode",
                ))
            }
            _ => {
                return Err(TranslateError::invalid(
                    "response_format.type",
                    "must be text, json_schema or json_object",
                ))
            }
        }
    }
    Ok(body.into())
}

/// A field that is there and not `null` (clients send `"stop": null` and mean "absent").
pub(super) fn present<'a>(x: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    x.get(key).filter(|v| !v.is_null())
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

/// `toolConfig` for OpenAI `tools` and `tool_choice`. `none` has no Converse member, so it
/// leaves the tools out, unless the conversation already holds tool calls or results:
/// Converse refuses those without a `toolConfig`, so the tools stay, offered as `auto`.
fn tool_config(
    x: &Map<String, Value>,
    messages: &[Message],
) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = present(x, "tools") else {
        return Ok(None);
    };
    let items = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    if items.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(items.len());
    for (i, tool) in items.iter().enumerate() {
        if tool["type"] != "function" {
            let what = "must be function: Bedrock takes no other tool type";
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                what,
            ));
        }
        let f = &tool["function"];
        let name = f["name"].as_str().ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].function.name"), "is required")
        })?;
        let schema = match &f["parameters"] {
            p @ Value::Object(_) => p.clone(),
            // Converse requires a schema; a function without parameters takes an empty object.
            _ => json!({"type": "object", "properties": {}}),
        };
        let mut spec = json!({ "name": name, "inputSchema": { "json": schema } });
        if let Some(d) = f["description"].as_str() {
            spec["description"] = d.into();
        }
        specs.push(json!({ "toolSpec": spec }));
    }
    let bad =
        || TranslateError::invalid("tool_choice", "must be none, auto, required or a function");
    let choice = match present(x, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" => {
                let history = messages.iter().any(|m| {
                    m.role == "tool" || m.extra.get("tool_calls").is_some_and(|c| !c.is_null())
                });
                if !history {
                    return Ok(None);
                }
                None
            }
            _ => return Err(bad()),
        },
        Some(obj) => {
            let name = obj
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            if !specs.iter().any(|s| s["toolSpec"]["name"] == name) {
                let what = "names a function that is not in tools";
                return Err(TranslateError::invalid("tool_choice.function.name", what));
            }
            Some(json!({"tool": {"name": name}}))
        }
    };
    let mut config = json!({ "tools": specs });
    if let Some(c) = choice {
        config["toolChoice"] = c;
    }
    Ok(Some(config))
}

/// The `system` blocks and the Converse messages. System (and developer) messages go to
/// `system` wherever they stand; tool results become user-role `toolResult` blocks; and
/// consecutive messages of one role are merged, since Converse wants the roles to alternate
/// (parallel tool calls come back as several `tool` messages in a row).
fn encode_messages(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                let text = text_only(m, i)?;
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
                continue;
            }
            "user" => ("user", user_blocks(m, i)?),
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
        match out.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    let messages = out
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    Ok((system, messages))
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
                let what = "is a content part type Bedrock does not take here";
                return Err(TranslateError::unsupported(param, what));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// Converse rejects blank text blocks, so empty text is left out.
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "text": text }))
}

fn user_blocks(m: &Message, i: usize) -> Result<Vec<Value>, TranslateError> {
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
            "image_url" => out.push(image_block(part, &param)?),
            _ => {
                let what = "is a content part type Bedrock does not take";
                return Err(TranslateError::unsupported(param + ".type", what));
            }
        }
    }
    Ok(out)
}

/// A base64 data URL as an `image` block. Bedrock takes image bytes (or S3 locations) only:
/// it cannot fetch a URL, and the gateway does not fetch on a client's behalf, so a URL is
/// refused rather than silently dropped.
fn image_block(part: &ContentPart, param: &str) -> Result<Value, TranslateError> {
    let param = format!("{param}.image_url.url");
    let url = part
        .extra
        .get("image_url")
        .and_then(|v| v.get("url").unwrap_or(v).as_str())
        .ok_or_else(|| TranslateError::invalid(&param, "is required"))?;
    let Some(rest) = url.strip_prefix("data:") else {
        let what = "must be a base64 data URL: Bedrock cannot fetch image URLs";
        return Err(TranslateError::unsupported(param, what));
    };
    let (mime, data) = data_url(rest)
        .ok_or_else(|| TranslateError::invalid(&param, "must be data:<type>;base64,<data>"))?;
    let format = match mime.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => {
            let what = "must be a png, jpeg, gif or webp image";
            return Err(TranslateError::unsupported(param, what));
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
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
    let mut out: Vec<Value> = text_block(&text_only(m, i)?).into_iter().collect();
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
        // Converse wants the arguments as a JSON object; OpenAI sends them as a JSON string.
        let input = match &call["function"]["arguments"] {
            Value::Null => json!({}),
            Value::String(s) if s.trim().is_empty() => json!({}),
            Value::String(s) => serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    TranslateError::invalid(
                        format!("{param}.function.arguments"),
                        "must be a JSON object",
                    )
                })?,
            v @ Value::Object(_) => v.clone(),
            _ => {
                let param = format!("{param}.function.arguments");
                return Err(TranslateError::invalid(param, "must be a JSON object"));
            }
        };
        out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    Ok(out)
}

/// A tool result; output that is a JSON object goes as `json` (the model sees structure),
/// anything else as text.
fn tool_result(m: &Message, i: usize) -> Result<Value, TranslateError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TranslateError::invalid(format!("messages[{i}].tool_call_id"), "is required")
        })?;
    let text = m.content.as_ref().map(Content::text).unwrap_or_default();
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(data @ Value::Object(_)) => json!([{ "json": data }]),
        _ => json!([{ "text": text }]),
    };
    Ok(json!({"toolResult": {"toolUseId": id, "content": content, "status": "success"}}))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// The embedding model families Bedrock serves through InvokeModel, each with its own body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedFamily {
    /// `amazon.titan-embed-*`: one `inputText` per call.
    Titan,
    /// `cohere.embed-*`: a batch of `texts`.
    Cohere,
}

impl EmbedFamily {
    /// The family of a model id (bare, inference profile `us.cohere...` or ARN).
    pub fn of(model: &str) -> Option<Self> {
        if model.contains("amazon.titan-embed") {
            Some(Self::Titan)
        } else if model.contains("cohere.embed") {
            Some(Self::Cohere)
        } else {
            None
        }
    }
}

/// The InvokeModel body for an OpenAI embeddings request. Titan embeds one text per call: an
/// array of more than one input is refused (400) rather than fanned out, so one client request
/// stays one upstream request (one price, one rate-limit charge, one failure to retry).
/// `encoding_format` is dropped: floats come back, which OpenAI's SDKs accept whatever they
/// asked for.
pub fn encode_embeddings(
    req: &EmbeddingsRequest,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let Some(family) = EmbedFamily::of(upstream_model) else {
        return Err(TranslateError::unsupported(
            "model",
            "is not an embedding model the bedrock provider can call: use amazon.titan-embed-* or cohere.embed-*",
        ));
    };
    let token_arrays =
        || TranslateError::unsupported("input", "must be text: Bedrock does not take token arrays");
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
    let dimensions = present(&req.extra, "dimensions")
        .map(|d| {
            d.as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| TranslateError::invalid("dimensions", "must be a positive integer"))
        })
        .transpose()?;
    match family {
        EmbedFamily::Titan => {
            let [text] = texts.as_slice() else {
                return Err(TranslateError::unsupported(
                    "input",
                    "must be one string: Titan embedding models embed one input per request (send several requests, or use a cohere.embed-* model for batches)",
                ));
            };
            let mut body = json!({ "inputText": text });
            if let Some(d) = dimensions {
                body["dimensions"] = d.into();
            }
            Ok(body)
        }
        EmbedFamily::Cohere => {
            // OpenAI has no notion of Cohere's `input_type`; `search_document` is the neutral
            // choice for stored vectors, and a client that knows better may send it itself.
            let input_type = match present(&req.extra, "input_type") {
                None => "search_document",
                Some(v) => v
                    .as_str()
                    .ok_or_else(|| TranslateError::invalid("input_type", "must be a string"))?,
            };
            let mut body = json!({ "texts": texts, "input_type": input_type });
            if let Some(d) = dimensions {
                body["output_dimension"] = d.into();
            }
            Ok(body)
        }
    }
}
