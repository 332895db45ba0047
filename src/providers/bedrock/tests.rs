//! Bedrock translation checked against the provider fixtures: request bodies exactly,
//! responses, stream transcripts (decoded from the binary fixtures), errors, embeddings and
//! request signing.

use serde_json::{json, Value};

use super::*;
use crate::eventstream::Decoder;
use crate::sse::Event;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/bedrock/", $name))
    };
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn encode(openai: &Value) -> Value {
    let req: ChatRequest = serde_json::from_value(openai.clone()).unwrap();
    encode_chat(&req).unwrap()
}

fn encode_err(openai: Value) -> TranslateError {
    let req: ChatRequest = serde_json::from_value(openai).unwrap();
    encode_chat(&req).unwrap_err()
}

/// Removes `additionalProperties` from every tool schema: the gateway passes the client's
/// schema through untouched, the fixtures were written without it.
fn without_additional_properties(mut v: Value) -> Value {
    for tool in v["toolConfig"]["tools"].as_array_mut().unwrap() {
        let schema = tool["toolSpec"]["inputSchema"]["json"]
            .as_object_mut()
            .unwrap();
        schema.remove("additionalProperties");
    }
    v
}

#[test]
fn chat_request_exact() {
    let openai = json!({"model": "m", "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name the three primary colors."}],
        "max_tokens": 256, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\nHuman:"], "top_k": 40,
        // Harmless fields without an equivalent are dropped.
        "user": "user-1234", "n": 1, "seed": 7, "metadata": {"a": "b"}, "store": false,
        "stream_options": null, "parallel_tool_calls": true, "presence_penalty": 0});
    assert_eq!(encode(&openai), json(fixture!("converse.request.json")));
}

#[test]
fn the_openai_fixture_translates() {
    let got = encode(&json(fixture!("openai/chat.request.json")));
    assert_eq!(
        got,
        json!({
            "messages": [{"role": "user", "content": [{"text": "Name the three primary colors."}]}],
            "system": [{"text": "You are a terse assistant."}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "topP": 1, "stopSequences": ["\n\n"]},
        })
    );
}

#[test]
fn stream_request_exact() {
    let mut openai = json(fixture!("openai/chat.stream.request.json"));
    openai["max_tokens"] = json!(256);
    assert_eq!(
        encode(&openai),
        json(fixture!("converse-stream.request.json"))
    );
}

#[test]
fn tools_request_exact() {
    let mut openai = json(fixture!("openai/tools.request.json"));
    openai["max_completion_tokens"] = json!(512);
    let got = encode(&openai);
    assert_eq!(
        got["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        openai["tools"][0]["function"]["parameters"]
    );
    assert_eq!(
        without_additional_properties(got),
        json(fixture!("tools.request.json"))
    );
}

#[test]
fn tool_followup_request_exact() {
    let mut openai = json(fixture!("openai/tools.followup.request.json"));
    let id = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q";
    openai["messages"][1]["content"] = json!("I'll look up the current weather in Paris.");
    openai["messages"][1]["tool_calls"][0]["id"] = json!(id);
    openai["messages"][2]["tool_call_id"] = json!(id);
    let got = without_additional_properties(encode(&openai));
    assert_eq!(got, json(fixture!("tools.followup.request.json")));
}

#[test]
fn tool_choice_variants() {
    let mut req = json(fixture!("openai/tools.request.json"));
    req["tool_choice"] = json!("required");
    assert_eq!(encode(&req)["toolConfig"]["toolChoice"], json!({"any": {}}));
    req["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    assert_eq!(
        encode(&req)["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "get_weather"}})
    );
    // `none` has no Converse member: the tools are left out...
    req["tool_choice"] = json!("none");
    assert!(encode(&req).get("toolConfig").is_none());
    // ...unless the conversation holds tool blocks, which Converse refuses without them.
    let mut followup = json(fixture!("openai/tools.followup.request.json"));
    followup["tool_choice"] = json!("none");
    let got = encode(&followup);
    assert!(got["toolConfig"]["tools"].is_array());
    assert!(got["toolConfig"].get("toolChoice").is_none());
    req["tool_choice"] = json!({"type": "function", "function": {"name": "missing"}});
    let e = encode_err(req.clone());
    assert_eq!(e.param.as_deref(), Some("tool_choice.function.name"));
    // A function without parameters still gets the schema Converse requires.
    req["tools"] = json!([{"type": "function", "function": {"name": "now"}}]);
    req["tool_choice"] = json!("auto");
    assert_eq!(
        encode(&req)["toolConfig"]["tools"][0],
        json!({"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}})
    );
}

#[test]
fn parallel_tool_results_share_one_user_turn() {
    let calls = json!([
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": ""}}]);
    let got = encode(&json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": "[1,2]"},
        {"role": "user", "content": "and?"}]}));
    assert_eq!(
        got["messages"],
        json!([
            {"role": "user", "content": [{"text": "go"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "a", "name": "f", "input": {"x": 1}}},
                {"toolUse": {"toolUseId": "b", "name": "f", "input": {}}}]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "a", "content": [{"text": "sunny"}], "status": "success"}},
                {"toolResult": {"toolUseId": "b", "content": [{"text": "[1,2]"}], "status": "success"}},
                {"text": "and?"}]}])
    );
}

#[test]
fn image_request_exact_and_urls_refused() {
    let openai = json(fixture!("openai/image.request.json"));
    // The https image cannot be fetched by Bedrock: a clear 400 naming the part.
    let e = encode_err(openai.clone());
    assert_eq!(e.status, 400);
    assert_eq!(e.code, "unsupported_parameter");
    assert_eq!(
        e.param.as_deref(),
        Some("messages[0].content[1].image_url.url")
    );
    assert!(
        e.message.contains("cannot fetch image URLs"),
        "{}",
        e.message
    );
    let mut openai = openai;
    let parts = openai["messages"][0]["content"].as_array_mut().unwrap();
    parts.remove(1);
    parts[0]["text"] = json!("What is in this image?");
    openai
        .as_object_mut()
        .unwrap()
        .remove("max_completion_tokens");
    assert_eq!(encode(&openai), json(fixture!("image.request.json")));
    // Types Bedrock cannot take are refused too.
    let svg = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}}]}]});
    assert_eq!(encode_err(svg).code, "unsupported_parameter");
}

#[test]
fn requests_that_cannot_be_honoured_are_refused() {
    let base = || json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let mut r = base();
    r["n"] = json!(2);
    assert_eq!(encode_err(r).param.as_deref(), Some("n"));
    let mut r = base();
    r["response_format"] = json!({"type": "json_object"});
    assert_eq!(encode_err(r).code, "unsupported_parameter");
    let mut r = base();
    r["response_format"] = json!({"type": "text"});
    assert!(encode(&r).get("inferenceConfig").is_none());
    let mut r = base();
    r["messages"][0]["role"] = json!("function");
    assert_eq!(encode_err(r).param.as_deref(), Some("messages[0].role"));
    let bad_args = json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]});
    assert_eq!(
        encode_err(bad_args).param.as_deref(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
}

#[test]
fn response_decode() {
    let v = decode_response(fixture!("converse.response.json").as_bytes(), "claude", 7).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude");
    assert_eq!(v["created"], 7);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["content"], "Red, yellow, and blue.");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 31,
            "prompt_tokens_details": {"cached_tokens": 0}})
    );
}

#[test]
fn tool_response_decode() {
    let v = decode_response(fixture!("tools.response.json").as_bytes(), "m", 1).unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["content"],
        "I'll look up the current weather in Paris."
    );
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({"location": "Paris, France", "unit": "celsius"})
    );
    assert_eq!(v["usage"]["prompt_tokens"], 401);
}

#[test]
fn stop_reasons_and_cache_usage() {
    let answer = |reason: &str| {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": reason, "usage": {"inputTokens": 5, "outputTokens": 2,
            "cacheReadInputTokens": 100, "cacheWriteInputTokens": 10}});
        decode_response(body.to_string().as_bytes(), "m", 1)
    };
    for (reason, want) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("something_new", "stop"),
    ] {
        assert_eq!(
            answer(reason).unwrap()["choices"][0]["finish_reason"],
            want,
            "{reason}"
        );
    }
    assert_eq!(answer("malformed_tool_use").unwrap_err().status, 502);
    let usage = &answer("end_turn").unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 115);
    assert_eq!(usage["completion_tokens"], 2);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100);
    assert!(decode_response(b"<html>", "m", 1).is_err());
}

/// Decodes a binary fixture and runs it through a stream translator: the chunks it sent (as
/// JSON) and the error that ended it, if any.
fn transcript(
    bin: &[u8],
    include_usage: bool,
) -> (StreamState, Vec<Value>, Option<TranslateError>) {
    let mut events = Vec::new();
    Decoder::default().push(bin, &mut events).unwrap();
    let mut state = StreamState::new("m", 1, include_usage);
    let mut chunks = Vec::new();
    for ev in events {
        let Event::Message { event, data } = ev else {
            continue;
        };
        match state.on_event(event.as_deref(), &data) {
            Ok(out) => chunks.extend(out.iter().map(|c| json(c))),
            Err(e) => return (state, chunks, Some(e)),
        }
    }
    (state, chunks, None)
}

#[test]
fn stream_transcript() {
    let (state, chunks, err) = transcript(
        include_bytes!("../../../tests/fixtures/bedrock/converse-stream.bin"),
        true,
    );
    assert!(err.is_none());
    assert!(state.is_done());
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Red, yellow, and blue.");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 15);
    assert_eq!(last["usage"]["total_tokens"], 25);
    assert_eq!(state.usage().completion_tokens, 10);
    // One id and one model on every chunk.
    assert!(chunks
        .iter()
        .all(|c| c["id"] == chunks[0]["id"] && c["model"] == "m"));
    // Without include_usage there is no usage chunk, but usage is still known.
    let (state, chunks, _) = transcript(
        include_bytes!("../../../tests/fixtures/bedrock/converse-stream.bin"),
        false,
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(state.usage().prompt_tokens, 15);
}

#[test]
fn stream_tool_call_transcript() {
    let (state, chunks, err) = transcript(
        include_bytes!("../../../tests/fixtures/bedrock/converse-stream.tools.bin"),
        false,
    );
    assert!(err.is_none() && state.is_done());
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(
        calls[0],
        &json!([{"index": 0, "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}])
    );
    // The arguments stream as they arrive, in two fragments.
    assert_eq!(calls.len(), 3);
    let args: String = calls[1..]
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"location": "Paris, France", "unit": "celsius"}"#);
    assert!(calls[1..]
        .iter()
        .all(|c| c[0]["index"] == 0 && c[0].get("id").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(state.usage().prompt_tokens, 401);
}

#[test]
fn stream_exception_ends_the_stream() {
    let (state, chunks, err) = transcript(
        include_bytes!("../../../tests/fixtures/bedrock/converse-stream.error.bin"),
        false,
    );
    assert!(!state.is_done());
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Red");
    let e = err.unwrap();
    assert_eq!((e.status, e.code), (429, "rate_limit_exceeded"));
    assert_eq!(
        e.message,
        "Too many tokens, please wait before trying again."
    );
    let mut s = StreamState::new("m", 1, false);
    let e = s
        .on_event(
            Some("exception:modelStreamErrorException"),
            r#"{"message":"bad"}"#,
        )
        .unwrap_err();
    assert_eq!(e.status, 502);
    let e = s
        .on_event(Some("error:InternalFailure"), r#"{"message":"boom"}"#)
        .unwrap_err();
    assert_eq!(e.status, 502);
    assert!(e.message.contains("InternalFailure"));
}

#[test]
fn error_decode() {
    let header = |http: &str| {
        http.lines()
            .find_map(|l| l.strip_prefix("x-amzn-ErrorType: "))
            .map(str::to_string)
    };
    let throttled = fixture!("error.429.throttling.http");
    let (status, body) = decode_error(
        429,
        header(throttled).as_deref(),
        fixture!("error.429.throttling.json").as_bytes(),
    );
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"error": {"message": "Too many requests, please wait before trying again.",
            "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );
    let validation = fixture!("error.400.validation.http");
    let (status, body) = decode_error(
        400,
        header(validation).as_deref(),
        fixture!("error.400.validation.json").as_bytes(),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["param"], "messages");
    // Without the header, the status decides.
    let (status, body) = decode_error(
        403,
        None,
        fixture!("error.403.access_denied.json").as_bytes(),
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("permission_denied"))
    );
    for (name, http, want_status, want_code) in [
        ("ModelNotReadyException", 429, 503, "model_not_ready"),
        ("ServiceUnavailableException", 503, 503, "overloaded"),
        ("ModelTimeoutException", 408, 504, "timeout"),
        ("ValidationException", 400, 400, "invalid_request"),
        ("UnrecognizedClientException", 403, 401, "invalid_api_key"),
        ("ResourceNotFoundException", 404, 404, "model_not_found"),
        ("InternalServerException", 500, 500, "server_error"),
    ] {
        let h = format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/");
        let (status, body) = decode_error(http, Some(&h), br#"{"message":"the model x"}"#);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{name}"
        );
    }
    // `__type` in the body (the JSON protocol's spelling), and `Message`.
    let (status, body) = decode_error(
        400,
        None,
        br#"{"__type":"com.amazon.coral#ThrottlingException","Message":"slow down"}"#,
    );
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (429, Some("slow down"))
    );
    // A proxy's page is not echoed.
    let (status, body) = decode_error(502, None, b"<html>bad gateway</html>");
    assert_eq!(status, 502);
    assert!(!body.to_string().contains("html"));
}

#[test]
fn embeddings_requests() {
    let req = |input: Value, extra: Value| -> EmbeddingsRequest {
        let mut v = json!({"model": "e", "input": input});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    };
    let titan = "amazon.titan-embed-text-v2:0";
    assert_eq!(
        encode_embeddings(&req(json!("hello"), json!({"dimensions": 256})), titan).unwrap(),
        json!({"inputText": "hello", "dimensions": 256})
    );
    assert_eq!(
        encode_embeddings(&req(json!(["hello"]), json!({})), titan).unwrap(),
        json!({"inputText": "hello"})
    );
    let openai = json(fixture!("openai/embeddings.request.json"));
    let many: EmbeddingsRequest = serde_json::from_value(openai).unwrap();
    let e = encode_embeddings(&many, titan).unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("input")));
    assert!(e.message.contains("one input per request"), "{}", e.message);
    assert_eq!(
        encode_embeddings(&many, "cohere.embed-english-v3").unwrap(),
        json!({"texts": ["The quick brown fox", "jumped over the lazy dog"],
            "input_type": "search_document", "output_dimension": 4})
    );
    let q = req(json!(["q"]), json!({"input_type": "search_query"}));
    assert_eq!(
        encode_embeddings(&q, "us.cohere.embed-v4:0").unwrap()["input_type"],
        "search_query"
    );
    assert_eq!(
        encode_embeddings(&req(json!("x"), json!({})), "anthropic.claude-v2")
            .unwrap_err()
            .param
            .as_deref(),
        Some("model")
    );
    assert!(encode_embeddings(&req(json!([[1, 2]]), json!({})), titan).is_err());
}

#[test]
fn embeddings_responses() {
    let titan = json!({"embedding": [0.1, 0.2], "inputTextTokenCount": 3});
    let v = decode_response(titan.to_string().as_bytes(), "e", 1).unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "model": "e",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    );
    let cohere = json!({"id": "x", "embeddings": [[1.0], [2.0]], "texts": ["a", "b"],
        "response_type": "embeddings_floats"});
    let v = decode_response(cohere.to_string().as_bytes(), "e", 1).unwrap();
    assert_eq!(v["data"][1]["embedding"], json!([2.0]));
    assert_eq!(v["data"][1]["index"], 1);
    let v4 =
        json!({"id": "x", "embeddings": {"float": [[3.0]]}, "response_type": "embeddings_by_type"});
    let v = decode_response(v4.to_string().as_bytes(), "e", 1).unwrap();
    assert_eq!(v["data"][0]["embedding"], json!([3.0]));
}

#[test]
fn model_ids_are_percent_encoded_in_the_path() {
    assert_eq!(
        model_path("anthropic.claude-3-5-sonnet-20240620-v1:0", "converse"),
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        model_path(
            "arn:aws:bedrock:us-east-1:123:inference-profile/us.x",
            "invoke"
        ),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x/invoke"
    );
}

fn provider(token: bool) -> std::sync::Arc<Provider> {
    let toml = r#"
[[providers]]
name = "br"
kind = "bedrock"
region = "us-east-1"
"#;
    let cfg: crate::config::Config = figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(toml),
    )
    .extract()
    .unwrap();
    let rt = crate::config::Runtime::build(&cfg, &|name| match name {
        "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
        "AWS_SESSION_TOKEN" if token => Some("session-token-value".into()),
        _ => None,
    })
    .unwrap();
    rt.providers[0].clone()
}

#[test]
fn requests_are_signed_with_sigv4() {
    let p = provider(false);
    assert_eq!(
        p.base_url,
        "https://bedrock-runtime.us-east-1.amazonaws.com"
    );
    let uri = format!("{}{}", p.base_url, model_path("m:0", "converse"));
    let (mut parts, ()) = http::Request::post(uri).body(()).unwrap().into_parts();
    sign_request(&p, &mut parts, b"{}", 1_440_938_160).unwrap();
    let h = |n: &str| parts.headers.get(n).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("host"), "bedrock-runtime.us-east-1.amazonaws.com");
    assert_eq!(h("x-amz-date"), "20150830T123600Z");
    assert_eq!(
        h("x-amz-content-sha256"),
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let auth = h("authorization");
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
         SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ),
        "{auth}"
    );
    assert!(!auth.contains("EXAMPLEKEY"));
    assert!(parts.headers.get("authorization").unwrap().is_sensitive());
    // The same request signed twice at the same time gives the same signature; the body is
    // part of it.
    let (mut again, ()) = http::Request::post(parts.uri.clone())
        .body(())
        .unwrap()
        .into_parts();
    sign_request(&p, &mut again, b"{}", 1_440_938_160).unwrap();
    assert_eq!(
        again.headers.get("authorization"),
        parts.headers.get("authorization")
    );
    sign_request(&p, &mut again, b"{ }", 1_440_938_160).unwrap();
    assert_ne!(
        again.headers.get("authorization"),
        parts.headers.get("authorization")
    );

    let p = provider(true);
    let (mut parts, ()) = http::Request::post("https://example.com/x")
        .body(())
        .unwrap()
        .into_parts();
    sign_request(&p, &mut parts, b"", 0).unwrap();
    assert_eq!(h_of(&parts, "x-amz-security-token"), "session-token-value");
    assert!(h_of(&parts, "authorization")
        .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    assert!(!format!("{p:?}").contains("session-token-value"));
}

fn h_of(parts: &http::request::Parts, name: &str) -> String {
    parts
        .headers
        .get(name)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}
