//! What well-known models can do, for deployments that do not declare it: capabilities,
//! context window and maximum output tokens, by upstream model id (first matching pattern wins;
//! `*` matches any run of characters, so dated snapshots and Bedrock ids such as
//! `us.anthropic.claude-sonnet-4-5-20250929-v1:0` match their family).
//!
//! Values are the providers' published limits for each family (model pages of OpenAI,
//! Anthropic, Google, Cohere, Mistral, Groq and DeepSeek, checked 2026-08). A deployment's own
//! `capabilities`, `context_window` and `max_output_tokens` always win; a model not listed here
//! is assumed able to do everything, with no known limits.

use crate::config::validate::{glob_match, Capabilities};

#[derive(Debug)]
pub struct Known {
    pub pattern: &'static str,
    pub caps: Capabilities,
    pub context_window: u64,
    pub max_output: u64,
}

const ALL: Capabilities = Capabilities::ALL;
/// Text, tools and JSON, no image input.
const TEXT_TOOLS: Capabilities = Capabilities {
    vision: false,
    ..Capabilities::ALL
};
/// Text only: no images, no tools (JSON mode and streams work).
const TEXT: Capabilities = Capabilities {
    vision: false,
    tools: false,
    ..Capabilities::ALL
};

const fn known(pattern: &'static str, caps: Capabilities, context: u64, out: u64) -> Known {
    Known {
        pattern,
        caps,
        context_window: context,
        max_output: out,
    }
}

pub const KNOWN: &[Known] = &[
    // OpenAI
    known("gpt-5*", ALL, 400_000, 128_000),
    known("gpt-4.1*", ALL, 1_047_576, 32_768),
    known("gpt-4o*", ALL, 128_000, 16_384),
    known("gpt-4-turbo*", ALL, 128_000, 4_096),
    known("gpt-3.5-turbo*", TEXT_TOOLS, 16_385, 4_096),
    known("o1-mini*", TEXT, 128_000, 65_536),
    known("o1*", ALL, 200_000, 100_000),
    known("o3-mini*", TEXT_TOOLS, 200_000, 100_000),
    known("o3*", ALL, 200_000, 100_000),
    known("o4-mini*", ALL, 200_000, 100_000),
    // Anthropic (also as Bedrock and Vertex ids)
    known("*claude-opus-4-1*", ALL, 200_000, 32_000),
    known("*claude-opus-4-5*", ALL, 200_000, 64_000),
    known("*claude-opus-4*", ALL, 200_000, 32_000),
    known("*claude-sonnet-4*", ALL, 200_000, 64_000),
    known("*claude-haiku-4*", ALL, 200_000, 64_000),
    known("*claude-3-7-sonnet*", ALL, 200_000, 64_000),
    known("*claude-3-5-sonnet*", ALL, 200_000, 8_192),
    known("*claude-3-5-haiku*", ALL, 200_000, 8_192),
    known("*claude-3-haiku*", ALL, 200_000, 4_096),
    known("*claude-3-opus*", ALL, 200_000, 4_096),
    // Google
    known("gemini-3*", ALL, 1_048_576, 65_536),
    known("gemini-2.5*", ALL, 1_048_576, 65_536),
    known("gemini-2.0-flash*", ALL, 1_048_576, 8_192),
    known("gemini-1.5-pro*", ALL, 2_097_152, 8_192),
    known("gemini-1.5-flash*", ALL, 1_048_576, 8_192),
    // Cohere
    known("command-a-vision*", ALL, 128_000, 8_000),
    known("command-a*", TEXT_TOOLS, 256_000, 8_000),
    known("command-r*", TEXT_TOOLS, 128_000, 4_000),
    // Mistral
    known("mistral-large*", TEXT_TOOLS, 131_072, 131_072),
    known("mistral-medium*", ALL, 131_072, 131_072),
    known("mistral-small*", ALL, 131_072, 131_072),
    known("pixtral*", ALL, 131_072, 131_072),
    known("codestral*", TEXT_TOOLS, 256_000, 256_000),
    // Meta Llama as Groq, Together, Fireworks and Ollama name it
    known("*llama-3.3-70b*", TEXT_TOOLS, 131_072, 32_768),
    known("*llama-3.1-8b*", TEXT_TOOLS, 131_072, 131_072),
    known("*llama-3.2-*vision*", ALL, 131_072, 8_192),
    // DeepSeek
    known("deepseek-chat*", TEXT_TOOLS, 128_000, 8_192),
    known("deepseek-reasoner*", TEXT_TOOLS, 128_000, 65_536),
];

/// What is known of `model` (an upstream model id), if it is listed.
pub fn lookup(model: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| glob_match(k.pattern, model))
}

/// `max_tokens` to send to a provider that requires one when the request sets none: the
/// provider's configured default, else the model's own maximum output, else 4096.
pub fn default_max_tokens(configured: Option<u32>, upstream_model: &str) -> u32 {
    configured.unwrap_or_else(|| {
        lookup(upstream_model).map_or(4096, |k| u32::try_from(k.max_output).unwrap_or(u32::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_match_snapshots_and_platform_ids() {
        let ctx = |m: &str| lookup(m).map(|k| k.context_window);
        assert_eq!(ctx("gpt-4o-mini-2024-07-18"), Some(128_000));
        assert_eq!(ctx("gpt-4.1-nano"), Some(1_047_576));
        assert_eq!(
            lookup("us.anthropic.claude-sonnet-4-5-20250929-v1:0").map(|k| k.max_output),
            Some(64_000)
        );
        assert_eq!(
            lookup("claude-opus-4-1-20250805").map(|k| k.max_output),
            Some(32_000)
        );
        assert_eq!(
            lookup("claude-3-5-haiku-latest").map(|k| k.max_output),
            Some(8_192)
        );
        assert!(!lookup("gpt-3.5-turbo").unwrap().caps.vision);
        assert!(!lookup("o1-mini").unwrap().caps.tools);
        assert!(lookup("o1-2024-12-17").unwrap().caps.tools);
        assert!(lookup("my-finetune").is_none());
        assert_eq!(default_max_tokens(None, "claude-3-5-haiku-latest"), 8_192);
        assert_eq!(
            default_max_tokens(Some(1000), "claude-3-5-haiku-latest"),
            1000
        );
        assert_eq!(default_max_tokens(None, "my-finetune"), 4096);
    }

    #[test]
    fn limits_are_sane() {
        for k in KNOWN {
            assert!(k.max_output <= k.context_window, "{}", k.pattern);
            assert!(k.caps.streaming, "{}", k.pattern);
        }
    }
}
