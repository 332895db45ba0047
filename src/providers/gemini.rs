//! The Google Gemini API (AI Studio, `generativelanguage.googleapis.com/v1beta`): translation
//! between OpenAI Chat Completions / Embeddings and `generateContent`,
//! `streamGenerateContent?alt=sse` and `batchEmbedContents`, for requests, responses, stream
//! events and error bodies. No I/O lives here: `pipeline/forward.rs` sends the request, with
//! the key as `x-goog-api-key: <key>` (not `Authorization`). The model goes in the URL path.
//!
//! Bodies use the camelCase JSON names (`systemInstruction`, `inlineData`, ...), the spelling
//! Google's own SDK sends; the API also accepts snake_case, but one spelling keeps it simple.
//!
//! Error messages made here name fields and indexes, never prompt text.

use std::collections::HashMap;

use serde::Deserialize;

pub use super::translate::TranslateError;
use super::translate::{ChunkHead, Text};
use serde_json::{json, Map, Value};

use crate::api::openai::{
    ChatRequest, Content, ContentPart, EmbeddingsRequest, Message, PromptTokensDetails, Usage,
};

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// The header that carries the provider key: `x-goog-api-key: <key>`, without a prefix.
pub const AUTH_HEADER: &str = "x-goog-api-key";

// ---------------------------------------------------------------------------------------------
// Paths

/// The model name as it goes into the URL path (`models/` prefix allowed and removed). Only
/// URL-safe names pass: anything else could reach another endpoint.
fn model_path(model: &str) -> Result<&str, TranslateError> {
    let name = model.strip_prefix("models/").unwrap_or(model);
    let safe = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if safe {
        Ok(name)
    } else {
        Err(TranslateError::invalid(
            "model",
            "does not map to a valid Gemini model name",
        ))
    }
}

/// `/models/{model}:generateContent`, or the SSE streaming method.
pub fn chat_path(model: &str, stream: bool) -> Result<String, TranslateError> {
    let name = model_path(model)?;
    Ok(if stream {
        format!("/models/{name}:streamGenerateContent?alt=sse")
    } else {
        format!("/models/{name}:generateContent")
    })
}

pub fn embeddings_path(model: &str) -> Result<String, TranslateError> {
    Ok(format!("/models/{}:batchEmbedContents", model_path(model)?))
}

// ---------------------------------------------------------------------------------------------
// Request

/// The Gemini `generateContent` body for an OpenAI chat request (the model is in the path).
/// Dropped for lack of an equivalent: `user`/`safety_identifier`, `metadata`, `store`,
/// `logit_bias`, `parallel_tool_calls`, `service_tier`, `reasoning_effort` (Gemini's thinking
/// budget is per model family, with no level that maps for all), `stream_options` (Gemini always
/// reports usage), and `logprobs`/`top_logprobs` (the response decoder does not carry
/// Gemini's `logprobsResult` back, so asking for it would cost without showing anything).
pub fn encode_request(req: &ChatRequest) -> Result<Value, TranslateError> {
    let x = &req.extra;
    let (system, contents) = encode_messages(&req.messages)?;
    let mut body = Map::new();
    if let Some(system) = system {
        body.insert("systemInstruction".into(), system);
    }
    body.insert("contents".into(), contents.into());
    // A toolConfig without tools means nothing; leave both out.
    if let Some(tools) = present(x, "tools").map(encode_tools).transpose()? {
        if !tools.is_empty() {
            body.insert("tools".into(), json!([{ "functionDeclarations": tools }]));
            if let Some(config) = encode_tool_choice(present(x, "tool_choice"))? {
                body.insert(
                    "toolConfig".into(),
                    json!({ "functionCallingConfig": config }),
                );
            }
        }
    }
    let config = generation_config(x)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), config.into());
    }
    Ok(body.into())
}

/// A field that is there and not `null` (clients send `"stop": null` and mean "absent").
fn present<'a>(x: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    x.get(key).filter(|v| !v.is_null())
}

fn generation_config(x: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let mut out = Map::new();
    // Same ranges and meaning on both sides, so these pass through as numbers.
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = present(x, from) {
            if !v.is_number() {
                return Err(TranslateError::invalid(from, "must be a number"));
            }
            out.insert(to.into(), v.clone());
        }
    }
    let max = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find_map(|k| present(x, k).map(|v| (k, v)));
    if let Some((key, v)) = max {
        // No default is invented: without a limit Gemini uses the model's own, as OpenAI does.
        out.insert("maxOutputTokens".into(), positive(v, key)?);
    }
    if let Some(stop) = stop_sequences(x)? {
        out.insert("stopSequences".into(), stop);
    }
    if let Some(n) = present(x, "n") {
        out.insert("candidateCount".into(), positive(n, "n")?);
    }
    if let Some(seed) = present(x, "seed") {
        if !(seed.is_i64() || seed.is_u64()) {
            return Err(TranslateError::invalid("seed", "must be an integer"));
        }
        out.insert("seed".into(), seed.clone());
    }
    if let Some(format) = present(x, "response_format") {
        match format["type"].as_str() {
            Some("text") => {}
            Some("json_object") => {
                out.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => match format.pointer("/json_schema/schema") {
                // `responseJsonSchema` takes plain JSON Schema; `responseSchema` is an OpenAPI
                // subset that rejects what OpenAI clients routinely send.
                Some(schema) if schema.is_object() => {
                    out.insert("responseMimeType".into(), "application/json".into());
                    out.insert("responseJsonSchema".into(), schema.clone());
                }
                _ => {
                    return Err(TranslateError::invalid(
                        "response_format.json_schema.schema",
                        "must be an object",
                    ))
                }
            },
            _ => {
                return Err(TranslateError::invalid(
                    "response_format.type",
                    "must be text, json_schema or json_object",
                ))
            }
        }
    }
    Ok(out)
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

fn encode_tools(tools: &Value) -> Result<Vec<Value>, TranslateError> {
    let items = tools
        .as_array()
        .ok_or_else(|| TranslateError::invalid("tools", "must be an array"))?;
    let encode = |(i, tool): (usize, &Value)| {
        if tool["type"] != "function" {
            let what = "must be function: Gemini takes no other tool type here";
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type"),
                what,
            ));
        }
        let f = &tool["function"];
        let name = f["name"].as_str().ok_or_else(|| {
            TranslateError::invalid(format!("tools[{i}].function.name"), "is required")
        })?;
        let mut t = json!({ "name": name });
        if f["description"].is_string() {
            t["description"] = f["description"].clone();
        }
        // Plain JSON Schema, as OpenAI has it (`parameters` would want Google's OpenAPI subset).
        // `strict` has no equivalent and is dropped.
        if f["parameters"].is_object() {
            t["parametersJsonSchema"] = f["parameters"].clone();
        }
        Ok(t)
    };
    items.iter().enumerate().map(encode).collect()
}

fn encode_tool_choice(choice: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let bad =
        || TranslateError::invalid("tool_choice", "must be none, auto, required or a function");
    Ok(Some(match choice {
        None => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            "none" => json!({"mode": "NONE"}),
            _ => return Err(bad()),
        },
        Some(obj) => {
            let name = obj.pointer("/function/name").and_then(Value::as_str);
            json!({"mode": "ANY", "allowedFunctionNames": [name.ok_or_else(bad)?]})
        }
    }))
}

/// `systemInstruction` (if any) and `contents`: consecutive messages that end up in one role
/// are merged, so the answers to parallel tool calls share one turn as Gemini expects.
fn encode_messages(messages: &[Message]) -> Result<(Option<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    // Tool call id -> function name: Gemini matches a result to its call by name.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(content_parts(m, i, false)?);
                continue;
            }
            "user" => ("user", content_parts(m, i, true)?),
            "assistant" => ("model", assistant_parts(m, i, &mut call_names)?),
            "tool" => ("user", vec![tool_result(m, i, &call_names)?]),
            _ => {
                let what = "must be system, developer, user, assistant or tool";
                return Err(TranslateError::unsupported(
                    format!("messages[{i}].role"),
                    what,
                ));
            }
        };
        match turns.last_mut() {
            // Gemini rejects a turn without parts (an assistant `content: ""`, say).
            _ if parts.is_empty() => {}
            Some((r, p)) if *r == role => p.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    let system = (!system.is_empty()).then(|| json!({ "parts": system }));
    Ok((system, contents))
}

/// Message content as parts: text, and media where `media` allows it.
fn content_parts(m: &Message, i: usize, media: bool) -> Result<Vec<Value>, TranslateError> {
    let parts = match &m.content {
        None => return Ok(Vec::new()),
        Some(Content::Text(s)) => return Ok(text_part(s).into_iter().collect()),
        Some(Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match part.kind.as_str() {
            "text" => out.extend(text_part(part.text.as_deref().unwrap_or_default())),
            "image_url" if media => out.push(image_part(part, &param)?),
            "input_audio" if media => out.push(audio_part(part, &param)?),
            "file" if media => out.push(file_part(part, &param)?),
            // An assistant's refusal is not something to show the model again.
            "refusal" if !media => {}
            _ => {
                let what = "is a content part type Gemini does not take here";
                return Err(TranslateError::unsupported(param + ".type", what));
            }
        }
    }
    Ok(out)
}

/// Empty text parts carry nothing, and Gemini rejects them.
fn text_part(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "text": text }))
}

fn image_part(part: &ContentPart, param: &str) -> Result<Value, TranslateError> {
    let param = format!("{param}.image_url.url");
    let url = part
        .extra
        .get("image_url")
        .and_then(|v| v.get("url").unwrap_or(v).as_str())
        .ok_or_else(|| TranslateError::invalid(&param, "is required"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime, data) = data_url(rest)
            .ok_or_else(|| TranslateError::invalid(&param, "must be data:<type>;base64,<data>"))?;
        // A common misspelling of the registered name.
        let mime = if mime == "image/jpg" {
            "image/jpeg".into()
        } else {
            mime
        };
        Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        // Gemini fetches the URL itself (Files-API URIs, and public URLs on models that take
        // them); it needs the type up front, which the extension is the only hint of here.
        Ok(json!({"fileData": {"mimeType": mime_from_url(url), "fileUri": url}}))
    } else {
        let what = "must be an http(s) URL or a base64 data URL";
        Err(TranslateError::invalid(param, what))
    }
}

fn audio_part(part: &ContentPart, param: &str) -> Result<Value, TranslateError> {
    let audio = part.extra.get("input_audio");
    let data = audio.and_then(|a| a["data"].as_str());
    let format = audio.and_then(|a| a["format"].as_str());
    let (Some(data), Some(format)) = (data, format) else {
        let param = format!("{param}.input_audio");
        return Err(TranslateError::invalid(param, "needs data and format"));
    };
    let mime = match format {
        "mp3" => "audio/mp3".to_string(),
        other => format!("audio/{other}"),
    };
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

fn file_part(part: &ContentPart, param: &str) -> Result<Value, TranslateError> {
    let param = format!("{param}.file.file_data");
    let data = part
        .extra
        .get("file")
        .and_then(|f| f["file_data"].as_str())
        .and_then(|d| d.strip_prefix("data:"))
        .and_then(data_url);
    // OpenAI `file_id`s point into OpenAI's storage, which Gemini cannot read.
    let (mime, data) =
        data.ok_or_else(|| TranslateError::unsupported(&param, "must be a base64 data URL"))?;
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
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

/// The image type a URL's extension names; JPEG when it names none (the commonest on the web).
fn mime_from_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => "image/jpeg",
    }
}

fn assistant_parts(
    m: &Message,
    i: usize,
    call_names: &mut HashMap<String, String>,
) -> Result<Vec<Value>, TranslateError> {
    let mut out = content_parts(m, i, false)?;
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
        // Ids minted by this adapter (`call_0`, ...) repeat across turns; the latest call
        // with an id is the one a following tool message answers.
        call_names.insert(id.to_string(), name.to_string());
        let args = tool_args(&call["function"]["arguments"], &param)?;
        out.push(json!({"functionCall": {"name": name, "args": args}}));
    }
    Ok(out)
}

/// OpenAI sends arguments as a JSON string; Gemini wants the object itself.
fn tool_args(args: &Value, param: &str) -> Result<Value, TranslateError> {
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

/// A tool message as a `functionResponse` part. Gemini wants an object; like Google's SDK the
/// output goes under `result` (parsed when it is JSON, as text otherwise).
fn tool_result(
    m: &Message,
    i: usize,
    call_names: &HashMap<String, String>,
) -> Result<Value, TranslateError> {
    let param = format!("messages[{i}].tool_call_id");
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(&param, "is required"))?;
    let name = call_names.get(id).ok_or_else(|| {
        TranslateError::invalid(
            &param,
            "matches no tool call of an earlier assistant message",
        )
    })?;
    let text = m.content.as_ref().map(Content::text).unwrap_or_default();
    let result = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    Ok(json!({"functionResponse": {"name": name, "response": {"result": result}}}))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// The `batchEmbedContents` body for an OpenAI embeddings request: one request per input.
/// `encoding_format` is dropped (floats come back, which OpenAI's SDKs accept whatever they
/// asked for) and so is `user`; Gemini's `taskType` has no OpenAI field.
pub fn encode_embeddings(
    req: &EmbeddingsRequest,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let model = format!("models/{}", model_path(upstream_model)?);
    let token_arrays =
        || TranslateError::unsupported("input", "must be text: Gemini does not take token arrays");
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
    let dims = present(&req.extra, "dimensions")
        .map(|d| positive(d, "dimensions"))
        .transpose()?;
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|text| {
            let mut r = json!({"model": model, "content": {"parts": [{"text": text}]}});
            if let Some(d) = &dims {
                r["outputDimensionality"] = d.clone();
            }
            r
        })
        .collect();
    Ok(json!({ "requests": requests }))
}

/// The OpenAI embeddings list for a `batchEmbedContents` answer. Gemini reports no token
/// counts for embeddings, so usage is zero.
fn decode_embeddings(v: &Value, public_model: &str) -> Result<Value, TranslateError> {
    let items = v["embeddings"].as_array().ok_or_else(|| {
        TranslateError::upstream("Gemini sent embeddings that are not a list".into())
    })?;
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e["values"]}))
        .collect();
    Ok(json!({
        "object": "list", "data": data, "model": public_model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }))
}

// ---------------------------------------------------------------------------------------------
// Response

/// `usageMetadata`; every field optional because Gemini leaves out zero counts.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
}

impl WireUsage {
    /// Thinking is billed as output, so it counts as completion tokens (as OpenAI counts
    /// reasoning); cached content is part of the prompt count already.
    fn to_openai(self) -> Usage {
        let prompt =
            self.prompt_token_count.unwrap_or(0) + self.tool_use_prompt_token_count.unwrap_or(0);
        let completion =
            self.candidates_token_count.unwrap_or(0) + self.thoughts_token_count.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: self.cached_content_token_count.unwrap_or(0),
            }),
            cache_creation_input_tokens: 0,
        }
    }

    /// The OpenAI `usage` object, with the thinking share as `reasoning_tokens`.
    fn to_json(self) -> Value {
        let mut v = json!(self.to_openai());
        v["completion_tokens_details"] =
            json!({"reasoning_tokens": self.thoughts_token_count.unwrap_or(0)});
        v
    }
}

/// Gemini has no tool-call reason: a normal stop that produced calls is OpenAI's `tool_calls`.
fn finish_reason(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        _ if has_calls => "tool_calls",
        // STOP, LANGUAGE, OTHER, MALFORMED_FUNCTION_CALL and the like, and reasons newer than
        // this code: the model stopped, with whatever it produced.
        _ => "stop",
    }
}

/// A `functionCall` as an OpenAI tool call; Gemini mostly sends no id, so one is minted from
/// `counter` (unique within the response).
fn tool_call(call: &Value, counter: &mut usize) -> Value {
    let id = match call["id"].as_str() {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("call_{counter}"),
    };
    *counter += 1;
    let arguments = match &call["args"] {
        Value::Null => "{}".to_string(),
        args => args.to_string(),
    };
    json!({"id": id, "type": "function",
        "function": {"name": call["name"], "arguments": arguments}})
}

/// The parts of a candidate that OpenAI can show: thought summaries are left out.
fn visible_parts(candidate: &Value) -> impl Iterator<Item = &Value> {
    candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["thought"] != true)
}

fn decode_candidate(c: &Value, position: usize, counter: &mut usize) -> Value {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in visible_parts(c) {
        if let Some(t) = part["text"].as_str() {
            text.push_str(t);
        } else if part["functionCall"].is_object() {
            tool_calls.push(tool_call(&part["functionCall"], counter));
        }
    }
    let reason = finish_reason(c["finishReason"].as_str(), !tool_calls.is_empty());
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = tool_calls.into();
    }
    let index = c["index"].as_u64().unwrap_or(position as u64);
    json!({"index": index, "message": message, "logprobs": null, "finish_reason": reason})
}

/// The OpenAI `chat.completion` for a `GenerateContentResponse`. `created` is the Unix time to
/// report (Gemini sends none); `public_model` is the name the client asked for.
fn decode_generate(v: &Value, public_model: &str, created: u64) -> Value {
    let mut counter = 0;
    let mut choices: Vec<Value> = v["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| decode_candidate(c, i, &mut counter))
        .collect();
    // A blocked prompt gets no candidates at all; the client still gets a choice that says why.
    if choices.is_empty() {
        let reason = if v["promptFeedback"]["blockReason"].is_string() {
            "content_filter"
        } else {
            "stop"
        };
        choices.push(
            json!({"index": 0, "logprobs": null, "finish_reason": reason,
            "message": {"role": "assistant", "content": "", "refusal": null}}),
        );
    }
    let usage = WireUsage::deserialize(&v["usageMetadata"]).unwrap_or_default();
    json!({
        "id": v["responseId"].as_str().unwrap_or_default(), "object": "chat.completion",
        "created": created, "model": public_model, "choices": choices,
        "usage": usage.to_json(),
    })
}

/// A successful non-streaming body as its OpenAI form: a `generateContent` answer becomes a
/// chat completion, a `batchEmbedContents` answer an embeddings list. The pipeline does not
/// say which it asked for, so the top-level keys decide.
pub fn decode_response(
    body: &[u8],
    public_model: &str,
    created: u64,
) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        // The position only: serde's own message may quote completion text.
        let (line, column) = (e.line(), e.column());
        TranslateError::upstream(format!(
            "Gemini sent a response that is not JSON (line {line} column {column})"
        ))
    })?;
    if v.get("embeddings").is_some() {
        decode_embeddings(&v, public_model)
    } else if ["candidates", "promptFeedback", "usageMetadata"]
        .iter()
        .any(|k| v.get(*k).is_some())
    {
        Ok(decode_generate(&v, public_model, created))
    } else {
        Err(TranslateError::upstream(
            "Gemini sent a response that is neither content nor embeddings".into(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

/// One candidate of a stream: its OpenAI choice index, tool calls sent, and whether it ended.
struct Candidate {
    index: u64,
    tools: usize,
    finished: bool,
}

/// Translates one Gemini SSE stream into OpenAI `chat.completion.chunk`s, event by event.
/// Every event is a whole `GenerateContentResponse` holding the next piece of text; function
/// calls arrive complete, so each goes out as one tool-call delta with all its arguments.
/// Gemini sends no end marker (the connection just closes), so the chunk that carries the
/// `finishReason` ends the stream: see [`StreamState::is_done`].
pub struct StreamState {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: WireUsage,
    candidates: Vec<Candidate>,
    /// Tool-call ids minted so far, so each is unique within the stream.
    calls: usize,
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
            candidates: Vec::new(),
            calls: 0,
            done: false,
        }
    }

    /// Usage so far in OpenAI terms; final once the stream is done.
    pub fn usage(&self) -> Usage {
        self.usage.to_openai()
    }

    /// Whether every candidate has finished (or the prompt was blocked): the stream's end, as
    /// far as the client is concerned, because Gemini marks it no other way.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One Gemini SSE event in, the OpenAI chunks to send out. An error object in the stream
    /// becomes an `Err` mapped like [`decode_error`].
    pub fn on_event(
        &mut self,
        _event: Option<&str>,
        data: &str,
    ) -> Result<Vec<String>, TranslateError> {
        if let Some(out) = self.fast_text(data) {
            return Ok(out);
        }
        let v: Value = serde_json::from_str(data).map_err(|_| {
            TranslateError::upstream("Gemini sent a stream event that is not JSON".into())
        })?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(provider_error(Some(&v), None));
        }
        if self.id.is_empty() {
            if let Some(id) = v["responseId"].as_str() {
                id.clone_into(&mut self.id);
            }
        }
        // Counts are running totals; the last chunk's are the final ones.
        if let Ok(u) = WireUsage::deserialize(&v["usageMetadata"]) {
            self.usage = u;
        }
        let mut out = Vec::new();
        let mut finished_now = false;
        let candidates = v["candidates"].as_array().filter(|c| !c.is_empty());
        for (position, c) in candidates.into_iter().flatten().enumerate() {
            let index = c["index"].as_u64().unwrap_or(position as u64);
            let slot = self.candidate(index, &mut out);
            for part in visible_parts(c) {
                if let Some(t) = part["text"].as_str() {
                    if !t.is_empty() {
                        out.push(self.head().text(index, t));
                    }
                } else if part["functionCall"].is_object() {
                    let mut call = tool_call(&part["functionCall"], &mut self.calls);
                    call["index"] = self.candidates[slot].tools.into();
                    self.candidates[slot].tools += 1;
                    out.push(self.chunk(index, json!({ "tool_calls": [call] }), None));
                }
            }
            if let Some(reason) = c["finishReason"].as_str() {
                finished_now |= self.finish(slot, Some(reason), &mut out);
            }
        }
        if candidates.is_none() && v["promptFeedback"]["blockReason"].is_string() {
            let slot = self.candidate(0, &mut out);
            finished_now |= self.finish(slot, Some("SAFETY"), &mut out);
        }
        if finished_now && self.candidates.iter().all(|c| c.finished) {
            if self.include_usage {
                out.push(self.head().usage(&self.usage.to_json()));
            }
            self.done = true;
        }
        Ok(out)
    }

    /// Most of a stream is one known candidate adding text: such an event skips the generic
    /// parse. None: anything else (a new candidate, a finish, tool calls, errors, blocks).
    fn fast_text(&mut self, data: &str) -> Option<Vec<String>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Event<'a> {
            #[serde(borrow)]
            candidates: Vec<Candidate<'a>>,
            #[serde(default)]
            usage_metadata: Option<WireUsage>,
            #[serde(borrow, default)]
            response_id: Option<Text<'a>>,
            #[serde(default)]
            error: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            prompt_feedback: Option<serde::de::IgnoredAny>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Candidate<'a> {
            #[serde(borrow)]
            content: Content<'a>,
            #[serde(default)]
            finish_reason: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            index: u64,
        }
        #[derive(Deserialize)]
        struct Content<'a> {
            #[serde(borrow)]
            parts: Vec<Part<'a>>,
        }
        #[derive(Deserialize)]
        struct Part<'a> {
            #[serde(borrow)]
            text: Text<'a>,
            #[serde(default)]
            thought: bool,
        }
        let e: Event = serde_json::from_str(data).ok()?;
        let [c] = e.candidates.as_slice() else {
            return None;
        };
        if e.error.is_some() || e.prompt_feedback.is_some() || c.finish_reason.is_some() {
            return None;
        }
        self.candidates.iter().find(|s| s.index == c.index)?;
        if self.id.is_empty() {
            if let Some(id) = &e.response_id {
                self.id = id.to_string();
            }
        }
        if let Some(u) = e.usage_metadata {
            self.usage = u;
        }
        let head = self.head();
        Some(
            c.content
                .parts
                .iter()
                .filter(|p| !p.thought && !p.text.is_empty())
                .map(|p| head.text(c.index, &p.text))
                .collect(),
        )
    }

    /// The slot of candidate `index`, opening it (with OpenAI's role chunk) on first sight.
    fn candidate(&mut self, index: u64, out: &mut Vec<String>) -> usize {
        if let Some(slot) = self.candidates.iter().position(|c| c.index == index) {
            return slot;
        }
        out.push(self.chunk(index, json!({"role": "assistant", "content": ""}), None));
        self.candidates.push(Candidate {
            index,
            tools: 0,
            finished: false,
        });
        self.candidates.len() - 1
    }

    /// Sends the finish chunk of a candidate once; true when this call sent it.
    fn finish(&mut self, slot: usize, reason: Option<&str>, out: &mut Vec<String>) -> bool {
        let c = &self.candidates[slot];
        if c.finished {
            return false;
        }
        let reason = finish_reason(reason, c.tools > 0);
        out.push(self.chunk(c.index, json!({}), Some(reason)));
        self.candidates[slot].finished = true;
        true
    }

    fn head(&self) -> ChunkHead<'_> {
        ChunkHead {
            id: &self.id,
            model: &self.model,
            created: self.created,
            include_usage: self.include_usage,
        }
    }

    fn chunk(&self, index: u64, delta: Value, finish: Option<&str>) -> String {
        self.head().choice(index, &delta, finish)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Google RPC status -> (its HTTP status, the status for the client, OpenAI type, OpenAI code).
const ERRORS: &[(&str, u16, u16, &str, &str)] = &[
    (
        "INVALID_ARGUMENT",
        400,
        400,
        "invalid_request_error",
        "invalid_request",
    ),
    // Billing or region: the request cannot succeed with this account as it is.
    (
        "FAILED_PRECONDITION",
        400,
        400,
        "invalid_request_error",
        "failed_precondition",
    ),
    (
        "OUT_OF_RANGE",
        400,
        400,
        "invalid_request_error",
        "invalid_request",
    ),
    (
        "UNAUTHENTICATED",
        401,
        401,
        "authentication_error",
        "invalid_api_key",
    ),
    (
        "PERMISSION_DENIED",
        403,
        403,
        "permission_error",
        "permission_denied",
    ),
    ("NOT_FOUND", 404, 404, "not_found_error", "not_found"),
    (
        "RESOURCE_EXHAUSTED",
        429,
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    ("INTERNAL", 500, 500, "api_error", "server_error"),
    // Temporary and retryable: the model is overloaded.
    ("UNAVAILABLE", 503, 503, "overloaded_error", "overloaded"),
    ("DEADLINE_EXCEEDED", 504, 504, "timeout_error", "timeout"),
];

/// The status and OpenAI error body for a Gemini error answer (`status` >= 400). The
/// provider's message is kept (it says what to fix); a body that is not Google's JSON (a
/// proxy's HTML page) is not echoed.
pub fn decode_error(status: u16, body: &[u8]) -> (u16, Value) {
    let parsed = serde_json::from_slice::<Value>(body).ok().map(|v| match v {
        // The non-SSE streaming method wraps everything, errors included, in an array.
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        v => v,
    });
    let e = provider_error(parsed.as_ref(), Some(status));
    (e.status, e.to_openai())
}

/// `{"error":{"code","message","status"}}`, from a body or an in-stream error object.
fn provider_error(body: Option<&Value>, http_status: Option<u16>) -> TranslateError {
    let err = body.map(|b| &b["error"]);
    let rpc = err.and_then(|e| e["status"].as_str());
    let message = err.and_then(|e| e["message"].as_str()).map(str::to_string);
    let code = err
        .and_then(|e| e["code"].as_u64())
        .and_then(|c| u16::try_from(c).ok());
    let http_status = http_status.or(code);
    // The RPC status decides; the HTTP status only when it is missing or newer than this table.
    let row = rpc
        .and_then(|k| ERRORS.iter().find(|r| r.0 == k))
        .or_else(|| http_status.and_then(|s| ERRORS.iter().find(|r| r.1 == s)));
    let Some(&(rpc, _, status, kind, code)) = row else {
        let status = match http_status {
            Some(s) if s >= 400 => s,
            _ => 502,
        };
        return TranslateError {
            status,
            kind: "upstream_error",
            code: "upstream_error",
            message: message.unwrap_or_else(|| format!("Gemini answered with HTTP {status}")),
            param: None,
        };
    };
    let message = message.unwrap_or_else(|| format!("Gemini answered with {rpc}"));
    let lower = message.to_ascii_lowercase();
    let (status, kind, code, param) = if rpc == "INVALID_ARGUMENT"
        && (lower.contains("input token count") || lower.contains("exceeds the maximum number"))
    {
        (400, kind, "context_length_exceeded", Some("messages"))
    } else if rpc == "INVALID_ARGUMENT" && lower.contains("api key not valid") {
        // Google reports a bad key as a bad argument; to a client it is a bad key.
        (401, "authentication_error", "invalid_api_key", None)
    } else if rpc == "NOT_FOUND" && lower.contains("models/") {
        (status, kind, "model_not_found", Some("model"))
    } else {
        (status, kind, code, None)
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

/// The Gemini wire format as a gateway adapter.
pub struct Gemini;

impl super::Adapter for Gemini {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        _provider: &crate::config::Provider,
    ) -> Result<super::UpstreamRequest, crate::error::Error> {
        let body = encode_request(req).map_err(TranslateError::into_error)?;
        let path =
            chat_path(upstream_model, req.is_stream()).map_err(TranslateError::into_error)?;
        Ok(super::UpstreamRequest {
            path,
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
            path: embeddings_path(upstream_model).map_err(TranslateError::into_error)?,
            body: bytes::Bytes::from(body.to_string()),
            stream: false,
        })
    }

    fn auth_header(&self) -> http::HeaderName {
        http::HeaderName::from_static(AUTH_HEADER)
    }

    fn decode_body(
        &self,
        body: bytes::Bytes,
        public_model: &str,
    ) -> Result<bytes::Bytes, crate::error::Error> {
        super::translate::body_or_502(
            decode_response(&body, public_model, super::translate::unix_now()),
            "gemini",
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
            include_str!(concat!("../../tests/fixtures/gemini/", $name))
        };
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn encode(openai: &str) -> Value {
        let req: ChatRequest = serde_json::from_str(openai).unwrap();
        encode_request(&req).unwrap()
    }

    fn encode_err(openai: Value) -> TranslateError {
        let req: ChatRequest = serde_json::from_value(openai).unwrap();
        encode_request(&req).unwrap_err()
    }

    #[test]
    fn chat_request() {
        let got = encode(fixture!("openai/chat.request.json"));
        let want = json(fixture!("generate.request.json"));
        for key in ["systemInstruction", "contents"] {
            assert_eq!(got[key], want[key], "{key}");
        }
        let (cfg, want_cfg) = (&got["generationConfig"], &want["generationConfig"]);
        for key in ["temperature", "stopSequences", "candidateCount"] {
            assert_eq!(cfg[key], want_cfg[key], "{key}");
        }
        // The fixtures' values differ here; the client's own go through.
        assert_eq!(
            (&cfg["topP"], &cfg["maxOutputTokens"]),
            (&json!(1), &json!(64))
        );
        // `user` has no equivalent; OpenAI sends no thinking budget.
        assert_eq!(cfg.as_object().unwrap().len(), 5);
        assert_eq!(
            got.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["contents", "generationConfig", "systemInstruction"]
        );
    }

    #[test]
    fn stream_request() {
        let got = encode(fixture!("openai/chat.stream.request.json"));
        let want = json(fixture!("generate.stream.request.json"));
        assert_eq!(got["contents"], want["contents"]);
        // No max_tokens given, none invented; stream_options has no Gemini form.
        assert!(got.get("generationConfig").is_none());
        assert_eq!(
            chat_path("gemini-2.5-flash", true).unwrap(),
            "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            chat_path("models/gemini-2.5-flash", false).unwrap(),
            "/models/gemini-2.5-flash:generateContent"
        );
        assert!(chat_path("../files?x=1", false).is_err());
    }

    #[test]
    fn tools_request() {
        let openai = json(fixture!("openai/tools.request.json"));
        let got = encode(fixture!("openai/tools.request.json"));
        let want = json(fixture!("tools.request.json"));
        for key in ["contents", "toolConfig"] {
            assert_eq!(got[key], want[key], "{key}");
        }
        let (decl, want_decl) = (
            &got["tools"][0]["functionDeclarations"][0],
            &want["tools"][0]["functionDeclarations"][0],
        );
        assert_eq!(decl["name"], want_decl["name"]);
        assert_eq!(decl["description"], want_decl["description"]);
        // The schema goes through untouched (the fixture omits additionalProperties).
        assert_eq!(
            decl["parametersJsonSchema"],
            openai["tools"][0]["function"]["parameters"]
        );
        for key in ["properties", "required", "type"] {
            assert_eq!(
                decl["parametersJsonSchema"][key],
                want_decl["parametersJsonSchema"][key]
            );
        }
        assert!(decl.get("strict").is_none());
        assert_eq!(got["tools"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn tool_choice_variants() {
        let mut req = json(fixture!("openai/tools.request.json"));
        req["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
        let got = encode(&req.to_string());
        assert_eq!(
            got["toolConfig"],
            json(fixture!("tools.forced.request.json"))["toolConfig"]
        );
        req["tool_choice"] = json!("required");
        let got = encode(&req.to_string());
        assert_eq!(
            got["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY"})
        );
        req["tool_choice"] = json!("none");
        let got = encode(&req.to_string());
        assert_eq!(
            got["toolConfig"]["functionCallingConfig"],
            json!({"mode": "NONE"})
        );
        req.as_object_mut().unwrap().remove("tool_choice");
        assert!(encode(&req.to_string()).get("toolConfig").is_none());
        // A choice without tools says nothing.
        req["tools"] = json!([]);
        req["tool_choice"] = json!("required");
        let got = encode(&req.to_string());
        assert!(got.get("toolConfig").is_none() && got.get("tools").is_none());
    }

    #[test]
    fn tool_followup_request() {
        let got = encode(fixture!("openai/tools.followup.request.json"));
        let want = json(fixture!("tools.followup.request.json"));
        assert_eq!(got["contents"], want["contents"]);
        assert_eq!(
            got["tools"][0]["functionDeclarations"][0]["name"],
            want["tools"][0]["functionDeclarations"][0]["name"]
        );
    }

    #[test]
    fn turns_merge_and_results_find_their_call() {
        let got = encode(
            &json!({"model": "m", "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c2", "content": "plain text"},
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "[1]"}]},
                {"role": "developer", "content": "late system"},
                {"role": "user", "content": "b"}
            ]})
            .to_string(),
        );
        let contents = got["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3);
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(
            contents[1]["parts"].as_array().unwrap().len(),
            2,
            "empty text dropped"
        );
        assert_eq!(contents[1]["parts"][1]["functionCall"]["args"], json!({}));
        assert_eq!(
            contents[2]["parts"],
            json!([
                {"functionResponse": {"name": "g", "response": {"result": "plain text"}}},
                {"functionResponse": {"name": "f", "response": {"result": [1]}}},
                {"text": "b"}
            ])
        );
        assert_eq!(
            got["systemInstruction"],
            json!({"parts": [{"text": "late system"}]})
        );
    }

    #[test]
    fn image_request() {
        let openai = json(fixture!("openai/image.request.json"));
        let got = encode(fixture!("openai/image.request.json"));
        let want = json(fixture!("image.request.json"));
        let parts = got["contents"][0]["parts"].as_array().unwrap();
        let want_parts = want["contents"][0]["parts"].as_array().unwrap();
        assert_eq!(got["contents"][0]["role"], "user");
        assert_eq!(parts.len(), 3);
        // The client's order is kept (the fixture puts the inline image first).
        assert_eq!(parts[0], want_parts[0]);
        assert_eq!(parts[2], want_parts[1]);
        // A web URL goes as fileData, typed from its extension (.jpg).
        let url = &openai["messages"][0]["content"][1]["image_url"]["url"];
        assert_eq!(
            parts[1],
            json!({"fileData": {"mimeType": want_parts[2]["fileData"]["mimeType"], "fileUri": url}})
        );
        assert_eq!(got["generationConfig"], json!({"maxOutputTokens": 300}));
        assert_eq!(mime_from_url("https://x.test/a.PNG?s=1"), "image/png");
        assert_eq!(mime_from_url("https://x.test/img"), "image/jpeg");
    }

    #[test]
    fn json_schema_request() {
        let openai = json(fixture!("openai/json_mode.request.json"));
        let got = encode(fixture!("openai/json_mode.request.json"));
        let want = json(fixture!("json_mode.request.json"));
        let (cfg, want_cfg) = (&got["generationConfig"], &want["generationConfig"]);
        assert_eq!(cfg["responseMimeType"], want_cfg["responseMimeType"]);
        let schema = &cfg["responseJsonSchema"];
        assert_eq!(schema, &openai["response_format"]["json_schema"]["schema"]);
        for key in ["type", "properties", "required"] {
            assert_eq!(schema[key], want_cfg["responseJsonSchema"][key], "{key}");
        }
        assert_eq!(
            got["systemInstruction"],
            json!({"parts": [{"text": "Extract the city and country."}]})
        );
        let got = encode(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "json_object"}})
            .to_string(),
        );
        assert_eq!(
            got["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
    }

    #[test]
    fn generation_config_and_dropped_fields() {
        let got = encode(
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "temperature": 1.7, "seed": 3, "logprobs": true, "top_logprobs": 2,
                "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"1": 2},
                "max_tokens": 10, "stop": "END", "store": true, "metadata": {"a": "b"},
                "n": 2, "user": "u", "parallel_tool_calls": false, "reasoning_effort": "low"})
            .to_string(),
        );
        assert_eq!(
            got,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "generationConfig": {"temperature": 1.7, "seed": 3, "presencePenalty": 0.5,
                    "frequencyPenalty": -0.5, "maxOutputTokens": 10, "stopSequences": ["END"],
                    "candidateCount": 2}})
        );
    }

    #[test]
    fn request_errors_name_the_param_not_the_prompt() {
        let secret = "my secret prompt";
        let e = encode_err(json!({"model": "m", "max_tokens": 0,
            "messages": [{"role": "user", "content": secret}]}));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        let e = encode_err(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": format!("{{{secret}")}}]}]}));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        assert!(e.message.contains("not valid JSON") && !e.message.contains("secret"));
        let e = encode_err(json!({"model": "m", "messages": [
            {"role": "tool", "tool_call_id": "nope", "content": secret}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        assert!(!e.message.contains("secret"));
        let e = encode_err(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search"}]}),
        );
        assert_eq!(e.to_openai()["error"]["code"], "unsupported_parameter");
    }

    #[test]
    fn embeddings_request() {
        let req: EmbeddingsRequest =
            serde_json::from_str(fixture!("openai/embeddings.request.json")).unwrap();
        let got = encode_embeddings(&req, "gemini-embedding-001").unwrap();
        let want = json(fixture!("embed.batch.request.json"));
        let (reqs, want_reqs) = (got["requests"].as_array().unwrap(), &want["requests"]);
        assert_eq!(reqs.len(), 2);
        for (i, r) in reqs.iter().enumerate() {
            for key in ["model", "content", "outputDimensionality"] {
                assert_eq!(r[key], want_reqs[i][key], "{i} {key}");
            }
            // OpenAI has no task type.
            assert!(r.get("taskType").is_none());
        }
        assert_eq!(
            embeddings_path("gemini-embedding-001").unwrap(),
            "/models/gemini-embedding-001:batchEmbedContents"
        );
        let one: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "m", "input": "hi"})).unwrap();
        let got = encode_embeddings(&one, "e").unwrap();
        assert_eq!(
            got,
            json!({"requests": [{"model": "models/e", "content": {"parts": [{"text": "hi"}]}}]})
        );
        for input in [json!([1, 2, 3]), json!([[1, 2]]), json!([]), json!(5)] {
            let req: EmbeddingsRequest =
                serde_json::from_value(json!({"model": "m", "input": input})).unwrap();
            let e = encode_embeddings(&req, "e").unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("input")));
        }
    }

    #[test]
    fn decodes_embeddings() {
        let got =
            decode_response(fixture!("embed.batch.response.json").as_bytes(), "emb", 0).unwrap();
        let want = json(fixture!("embed.batch.response.json"));
        assert_eq!(got["object"], "list");
        assert_eq!(got["model"], "emb");
        assert_eq!(got["usage"], json!({"prompt_tokens": 0, "total_tokens": 0}));
        let data = got["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            assert_eq!(d["embedding"], want["embeddings"][i]["values"]);
        }
    }

    #[test]
    fn decodes_text_response() {
        let got =
            decode_response(fixture!("generate.response.json").as_bytes(), "gpt-x", 7).unwrap();
        assert_eq!(got["id"], "m2mWaNbJBrOqz7IPkYvL8Qk");
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
        // Thinking counts as completion; the total matches Gemini's.
        assert_eq!(
            got["usage"],
            json!({"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 33}})
        );
    }

    #[test]
    fn decodes_tool_response() {
        let got = decode_response(fixture!("tools.response.json").as_bytes(), "gpt-x", 7).unwrap();
        let choice = &got["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert!(choice["message"]["content"].is_null());
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_0");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args = json(call["function"]["arguments"].as_str().unwrap());
        assert_eq!(
            args,
            json!({"location": "Paris, France", "unit": "celsius"})
        );
        assert_eq!(got["usage"]["total_tokens"], 83);
    }

    #[test]
    fn decodes_blocked_prompt() {
        let got =
            decode_response(fixture!("prompt_blocked.response.json").as_bytes(), "p", 0).unwrap();
        let choices = got["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0]["finish_reason"], "content_filter");
        assert_eq!(choices[0]["message"]["content"], "");
        assert_eq!(got["usage"]["prompt_tokens"], 9);
    }

    #[test]
    fn cached_thoughts_and_candidates() {
        let body = json!({"candidates": [
            {"content": {"role": "model", "parts": [{"text": "plan", "thought": true},
                {"text": "a"}, {"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 0},
            {"content": {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                "finishReason": "STOP", "index": 1}],
            "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 80,
                "toolUsePromptTokenCount": 5, "candidatesTokenCount": 3}});
        let got = decode_response(body.to_string().as_bytes(), "p", 0).unwrap();
        assert_eq!(got["choices"][0]["message"]["content"], "ab");
        assert_eq!(got["choices"][0]["finish_reason"], "length");
        assert_eq!(got["choices"][1]["index"], 1);
        assert_eq!(got["choices"][1]["finish_reason"], "tool_calls");
        assert_eq!(
            got["choices"][1]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert_eq!(
            got["usage"],
            json!({"prompt_tokens": 105, "completion_tokens": 3, "total_tokens": 108,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 0}})
        );
        assert_eq!(decode_response(b"<html>", "p", 0).unwrap_err().status, 502);
        assert_eq!(
            decode_response(b"{\"x\":1}", "p", 0).unwrap_err().status,
            502
        );
    }

    #[test]
    fn finish_reasons() {
        for (gemini, calls, openai) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", true, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("BLOCKLIST", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("SPII", false, "content_filter"),
            ("IMAGE_SAFETY", false, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", false, "stop"),
            ("OTHER", false, "stop"),
        ] {
            assert_eq!(finish_reason(Some(gemini), calls), openai, "{gemini}");
        }
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
            assert!(!state.is_done(), "done before the last event");
            let chunks = state.on_event(event.as_deref(), &data).unwrap();
            out.push(chunks.iter().map(|c| json(c)).collect());
        }
        (out, state)
    }

    #[test]
    fn text_stream() {
        let sse = fixture!("generate.stream.sse");
        assert!(sse.contains("\r\n\r\n"), "the fixture keeps Gemini's CRLF");
        let (calls, state) = run(sse, true);
        assert_eq!(calls.len(), 3);
        assert!(state.is_done(), "the finishReason chunk ends the stream");
        let chunks: Vec<&Value> = calls.iter().flatten().collect();
        assert!(chunks.iter().all(|c| c["id"] == "n3mWaKq1C9-kz7IP0eTC2QE"
            && c["model"] == "gpt-x"
            && c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        // Each text delta went out in the call that received it.
        assert_eq!(calls[0][1]["choices"][0]["delta"]["content"], "Red");
        assert_eq!(
            calls[1][0]["choices"][0]["delta"]["content"],
            ", yellow, and"
        );
        let choices: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).collect();
        let text: String = choices
            .iter()
            .filter_map(|c| c["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Red, yellow, and blue.");
        let finish: Vec<&Value> = choices
            .iter()
            .map(|c| &c["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("stop")]);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 8);
        assert_eq!(last["usage"]["completion_tokens"], 33);
        assert_eq!(last["usage"]["total_tokens"], 41);
        assert!(chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null()));
        assert_eq!(state.usage().total_tokens, 41);

        let (calls, state) = run(sse, false);
        assert!(state.is_done());
        assert!(calls
            .iter()
            .flatten()
            .all(|c| c.get("usage").is_none() && c["choices"].get(0).is_some()));
    }

    #[test]
    fn tool_stream_and_blocked_stream() {
        let mut state = StreamState::new("p", 0, false);
        let mut send = |data: Value| state.on_event(None, &data.to_string()).unwrap();
        let out = send(
            json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "a", "args": {"x": 1}}},
            {"functionCall": {"name": "b", "args": {}}}]}, "index": 0}]}),
        );
        assert_eq!(out.len(), 3);
        let first = &json(&out[1])["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            first,
            &json!({"index": 0, "id": "call_0", "type": "function",
                "function": {"name": "a", "arguments": "{\"x\":1}"}})
        );
        let second = &json(&out[2])["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            (&second["index"], &second["id"]),
            (&json!(1), &json!("call_1"))
        );
        let out = send(
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
            "finishReason": "STOP", "index": 0}]}),
        );
        assert_eq!(json(&out[0])["choices"][0]["finish_reason"], "tool_calls");
        assert!(state.is_done());

        let mut state = StreamState::new("p", 0, true);
        let out = state
            .on_event(None, fixture!("prompt_blocked.response.json"))
            .unwrap();
        assert!(state.is_done());
        let finish = json(&out[1]);
        assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(json(&out[2])["usage"]["prompt_tokens"], 9);
    }

    #[test]
    fn stream_error_object() {
        let mut state = StreamState::new("p", 0, false);
        let e = state
            .on_event(None, fixture!("error.503.unavailable.json"))
            .unwrap_err();
        assert_eq!((e.status, e.code), (503, "overloaded"));
        assert!(!state.is_done());
        assert_eq!(state.on_event(None, "nope").unwrap_err().status, 502);
    }

    #[test]
    fn error_bodies() {
        for (status, body, want_status, code) in [
            (
                400,
                fixture!("error.400.invalid_argument.json"),
                400,
                "context_length_exceeded",
            ),
            (
                403,
                fixture!("error.403.permission_denied.json"),
                403,
                "permission_denied",
            ),
            (
                429,
                fixture!("error.429.resource_exhausted.json"),
                429,
                "rate_limit_exceeded",
            ),
            (
                503,
                fixture!("error.503.unavailable.json"),
                503,
                "overloaded",
            ),
        ] {
            let (got_status, got) = decode_error(status, body.as_bytes());
            assert_eq!(got_status, want_status, "{status}");
            assert_eq!(got["error"]["code"], code, "{status}");
            assert_eq!(got["error"]["message"], json(body)["error"]["message"]);
        }
        let (_, got) = decode_error(400, fixture!("error.400.invalid_argument.json").as_bytes());
        assert_eq!(got["error"]["param"], "messages");
        assert_eq!(got["error"]["type"], "invalid_request_error");
        let bad_key = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "API key not valid. Please pass a valid API key."}});
        let (s, got) = decode_error(400, bad_key.to_string().as_bytes());
        assert_eq!((s, &got["error"]["code"]), (401, &json!("invalid_api_key")));
        let missing = json!({"error": {"code": 404, "status": "NOT_FOUND",
            "message": "models/gemini-9 is not found for API version v1beta"}});
        let (s, got) = decode_error(404, missing.to_string().as_bytes());
        assert_eq!((s, &got["error"]["code"]), (404, &json!("model_not_found")));
        let wrapped = format!("[{}]", fixture!("error.429.resource_exhausted.json"));
        assert_eq!(decode_error(429, wrapped.as_bytes()).0, 429);
        // No JSON body (a proxy's HTML page): the status decides, and the body is not echoed.
        let (s, got) = decode_error(503, b"<html>busy</html>");
        assert_eq!((s, &got["error"]["code"]), (503, &json!("overloaded")));
        let (s, got) = decode_error(502, b"<html>bad gateway</html>");
        assert_eq!(s, 502);
        assert!(!got["error"]["message"].as_str().unwrap().contains("html"));
    }

    #[test]
    fn adapter_wiring() {
        use super::super::Adapter;
        assert_eq!(Gemini.auth_header().as_str(), "x-goog-api-key");
        assert!(Gemini.required_headers().is_empty());
        assert_eq!(
            DEFAULT_BASE_URL,
            "https://generativelanguage.googleapis.com/v1beta"
        );
    }
}
