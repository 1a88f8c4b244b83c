//! Presets: the OpenAI-compatible providers we know by name, with their real base URLs and
//! the environment variable that conventionally holds their key.
//!
//! A preset saves writing `api_base`; any field of a deployment still overrides it.

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
}

const fn cloud(name: &'static str, api_base: &'static str, key_env: &'static str) -> Preset {
    Preset {
        name,
        api_base: Some(api_base),
        key_env: Some(key_env),
        key_optional: false,
        auth: AuthStyle::Bearer,
        url_style: UrlStyle::OpenAi,
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
    }
}

/// Every preset, in the order `switchyard check` and the docs list them.
pub const PRESETS: &[Preset] = &[
    cloud("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    Preset {
        name: "azure",
        api_base: None,
        key_env: Some("AZURE_OPENAI_API_KEY"),
        key_optional: false,
        auth: AuthStyle::ApiKeyHeader,
        url_style: UrlStyle::Azure,
    },
    cloud("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    cloud("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    cloud("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    cloud("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    cloud("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    cloud("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    cloud("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    cloud("perplexity", "https://api.perplexity.ai", "PERPLEXITY_API_KEY"),
    cloud("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    cloud("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    local("vllm", "http://127.0.0.1:8000/v1"),
    local("ollama", "http://127.0.0.1:11434/v1"),
    local("lmstudio", "http://127.0.0.1:1234/v1"),
];

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
}
