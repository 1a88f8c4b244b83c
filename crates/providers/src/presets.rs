//! Presets: the providers we know by name, with their real base URLs, the environment variable
//! that conventionally holds their key, and the [`Dialect`] they speak (which adapter serves
//! them). Most speak OpenAI's; `anthropic`, `gemini`, `vertex`, `bedrock` and `cohere` have
//! native adapters. `vertex` and `bedrock` have no fixed base URL: it follows from the
//! deployment's region, and their credentials come from Google's and AWS's usual places.
//!
//! A preset saves writing `api_base`; any field of a deployment still overrides it.
//!
//! [`Preset::accepts_stream_options`] says whether the provider is known to accept
//! `stream_options: {"include_usage": true}`, so that the adapter may ask it for the usage of
//! a stream the client did not ask usage for ([`OpenAiCompatible::asking_stream_usage`]).
//! It is `true` only where the provider documents the option; elsewhere the request goes
//! as the client sent it, since a strict server rejects a field it does not know.
//!
//! | preset | `stream_options` | basis |
//! |---|---|---|
//! | openai | yes | OpenAI's Chat Completions reference |
//! | azure | yes | Azure OpenAI's data-plane reference (GA since api-version 2024-10-21) |
//! | groq | yes | Groq's API reference (and its LangChain client's `stream_options`) |
//! | deepseek | yes | DeepSeek's API reference (`stream_options.include_usage`) |
//! | vllm | yes | vLLM's OpenAI-compatible server documents `stream_options` |
//! | ollama | yes | Ollama's OpenAI compatibility page lists `stream_options.include_usage` |
//! | openrouter | no | deprecated there with no effect: usage is always sent |
//! | mistral, together, fireworks, xai, perplexity, cerebras, deepinfra, lmstudio | no | not confirmed; several send usage on the last chunk unasked |
//!
//! [`OpenAiCompatible::asking_stream_usage`]: crate::openai::OpenAiCompatible::asking_stream_usage

/// The wire format a provider speaks, which decides the adapter that serves its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI Chat Completions: OpenAI, Azure OpenAI and every OpenAI-compatible server.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini on AI Studio (`generateContent`, an API key).
    Gemini,
    /// Gemini on Vertex AI (the same shapes; project and region URLs, an OAuth token).
    Vertex,
    /// AWS Bedrock Converse (SigV4-signed, binary event streams).
    Bedrock,
    /// Cohere v2 chat.
    Cohere,
}

/// How a provider expects the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and nearly everyone else).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKeyHeader,
}

/// How the request URL is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlStyle {
    /// `{api_base}/chat/completions`, `{api_base}/embeddings`.
    OpenAi,
    /// `{api_base}/openai/deployments/{model}/chat/completions?api-version={version}`.
    Azure,
}

/// A known provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name used as `provider:` in the configuration.
    pub name: &'static str,
    /// Base URL, ending before `/chat/completions`; `None` when each user has their own.
    pub api_base: Option<&'static str>,
    /// The environment variable that holds the key; zero-config serving looks for it.
    pub key_env: Option<&'static str>,
    /// Whether requests work without a key (local servers).
    pub key_optional: bool,
    /// How the key is sent.
    pub auth: AuthStyle,
    /// How URLs are built.
    pub url_style: UrlStyle,
    /// Whether the provider accepts `stream_options` (`include_usage`) on streamed chats.
    pub accepts_stream_options: bool,
    /// The wire format, and so the adapter. `auth`, `url_style` and `accepts_stream_options`
    /// are the OpenAI dialect's; the native adapters authenticate and build URLs their own way.
    pub dialect: Dialect,
}

// === impl Preset ===

impl Preset {
    /// The same preset, speaking `dialect` instead of OpenAI's.
    const fn speaking(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The same preset, marked as accepting `stream_options`.
    const fn with_stream_options(mut self) -> Self {
        self.accepts_stream_options = true;
        self
    }
}

const fn cloud(name: &'static str, api_base: &'static str, key_env: &'static str) -> Preset {
    Preset {
        name,
        api_base: Some(api_base),
        key_env: Some(key_env),
        key_optional: false,
        auth: AuthStyle::Bearer,
        url_style: UrlStyle::OpenAi,
        accepts_stream_options: false,
        dialect: Dialect::OpenAi,
    }
}

const fn local(name: &'static str, api_base: &'static str) -> Preset {
    Preset {
        name,
        api_base: Some(api_base),
        key_env: None,
        key_optional: true,
        auth: AuthStyle::Bearer,
        url_style: UrlStyle::OpenAi,
        accepts_stream_options: false,
        dialect: Dialect::OpenAi,
    }
}

/// Every preset, in the order `switchyard check` and the docs list them.
pub const PRESETS: &[Preset] = &[
    cloud("openai", "https://api.openai.com/v1", "OPENAI_API_KEY").with_stream_options(),
    Preset {
        name: "azure",
        api_base: None,
        key_env: Some("AZURE_OPENAI_API_KEY"),
        key_optional: false,
        auth: AuthStyle::ApiKeyHeader,
        url_style: UrlStyle::Azure,
        accepts_stream_options: true,
        dialect: Dialect::OpenAi,
    },
    cloud("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY").with_stream_options(),
    cloud("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    cloud("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY").with_stream_options(),
    cloud("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    cloud("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    cloud("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    cloud("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    cloud("perplexity", "https://api.perplexity.ai", "PERPLEXITY_API_KEY"),
    cloud("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    cloud("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    local("vllm", "http://127.0.0.1:8000/v1").with_stream_options(),
    local("ollama", "http://127.0.0.1:11434/v1").with_stream_options(),
    local("lmstudio", "http://127.0.0.1:1234/v1"),
    cloud("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY").speaking(Dialect::Anthropic),
    cloud("gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY").speaking(Dialect::Gemini),
    native("vertex", Dialect::Vertex),
    native("bedrock", Dialect::Bedrock),
    cloud("cohere", "https://api.cohere.com", "CO_API_KEY").speaking(Dialect::Cohere),
];

/// A provider whose endpoint follows from its `region` (and `project`) and whose credentials
/// come from its own environment (AWS, Google Cloud), not from one API key.
const fn native(name: &'static str, dialect: Dialect) -> Preset {
    Preset {
        name,
        api_base: None,
        key_env: None,
        key_optional: true,
        auth: AuthStyle::Bearer,
        url_style: UrlStyle::OpenAi,
        accepts_stream_options: false,
        dialect,
    }
}

/// The preset called `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The preset names, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_cloud_presets_have_https_bases() {
        let mut names: Vec<_> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
        for p in PRESETS.iter().filter(|p| !p.key_optional) {
            if let Some(base) = p.api_base {
                assert!(base.starts_with("https://"), "{} base {base}", p.name);
            }
        }
        assert_eq!(preset("azure").map(|p| p.auth), Some(AuthStyle::ApiKeyHeader));
        assert!(preset("nope").is_none());
    }

    #[test]
    fn only_documented_providers_are_sent_stream_options() {
        let accepting: Vec<_> = PRESETS.iter().filter(|p| p.accepts_stream_options).map(|p| p.name).collect();
        assert_eq!(accepting, ["openai", "azure", "groq", "deepseek", "vllm", "ollama"]);
    }
}
