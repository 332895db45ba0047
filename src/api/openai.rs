//! OpenAI wire types: chat completions, embeddings, usage, model listings, and the JSON parser
//! that turns serde errors into a 400 that says where the body is wrong (without echoing the
//! values it carries, which may be prompt text).

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the usage chunk at the end of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Content {
    /// The text of the message: the string, or its text parts joined by newlines.
    pub fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token usage as OpenAI reports it; absent fields are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Prompt tokens written to the provider's prompt cache (Anthropic, Bedrock), which bill
    /// above the input price; part of `prompt_tokens`. Not an OpenAI field: the name is the
    /// one other gateways use for it, and it is left out when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_input_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

/// Just enough of a response or stream chunk to find its usage and whether it is the
/// usage-only chunk that ends a stream.
#[derive(Debug, Deserialize)]
pub struct UsagePeek {
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub choices: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Debug, Serialize)]
pub struct ModelObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: Vec<ModelObject<'a>>,
}

/// Parses a JSON request body into `T`, or a 400 that says what is wrong and where.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::InvalidRequest {
            message: "request body is empty; expected a JSON object".into(),
            param: None,
            code: "invalid_json",
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let (message, code) = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => (
                format!(
                    "request body is not valid JSON: {} at line {} column {}",
                    syntax_reason(&e),
                    e.line(),
                    e.column()
                ),
                "invalid_json",
            ),
            Category::Data => (
                format!(
                    "invalid request body: {} (at line {} column {})",
                    without_values(&e.to_string()),
                    e.line(),
                    e.column()
                ),
                "invalid_request",
            ),
        };
        let param = missing_field(&e.to_string());
        Error::InvalidRequest {
            message,
            param,
            code,
        }
    })
}

/// serde_json's message without its " at line X column Y" suffix.
fn syntax_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Drops quoted values (`invalid type: string "...", expected ...`) from a serde message so a
/// prompt never ends up in an error body or a log line.
fn without_values(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start + "string".len()]);
        let after = &rest[start + "string \"".len()..];
        match after.find("\", expected") {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn missing_field(msg: &str) -> Option<String> {
    let start = msg.find("missing field `")? + "missing field `".len();
    let end = msg[start..].find('`')?;
    Some(msg[start..start + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_do_not_echo_values() {
        let err = parse_json::<ChatRequest>(br#"{"model":"m","messages":"my secret prompt"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn missing_model_names_the_param() {
        match parse_json::<ChatRequest>(br#"{"messages":[]}"#) {
            Err(Error::InvalidRequest { param, .. }) => assert_eq!(param.as_deref(), Some("model")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_round_trip() {
        let req: ChatRequest = parse_json(
            br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"x"}],"seed":7,"tools":[]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let v = serde_json::to_value(&req).unwrap_or_default();
        assert_eq!(v["seed"], 7);
        assert_eq!(v["messages"][0]["name"], "x");
        assert!(v["tools"].is_array());
    }
}
