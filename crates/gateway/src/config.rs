//! The configuration file (`switchyard.yaml`): its shape, loading and validation.
//!
//! Loading is strict: an unknown key, a missing `${VARIABLE}`, a value of the wrong type or an
//! unknown provider is an error that names the key and its line. `${NAME}` is replaced by the
//! environment variable `NAME` inside scalar values (after YAML parsing, so a value containing
//! YAML syntax cannot change the document's structure); `${NAME:-default}` gives a default.
//!
//! Each concern has its own plain struct, and layers receive only their own (STYLE.md).
//! Without a file, [`Config::zero_config`] builds the embedded default.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::SocketAddr,
    path::Path,
};

use serde::Deserialize;
use serde_saphyr::Spanned;
use switchyard_providers::presets::{self, Dialect};

mod accounting;
mod routing;
mod telemetry;

pub use accounting::{AccountingConfig, DEFAULT_DATABASE_URL, DatabaseConfig, ModelLimits};

pub use telemetry::{MetricsConfig, TelemetryConfig, TraceProtocol, TracesConfig};

pub use routing::{
    CooldownSettings, ModelRouting, PolicyName, PriceConfig, RedisConfig, RetryBudgetConfig, RouterConfig,
};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Retries, backoff, the retry budget, cooldowns and the default policy.
    #[serde(default)]
    pub router: RouterConfig,
    /// Redis, to share routing state between replicas.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Metrics, traces and request logs.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Where keys, teams, users and the spend ledger live (default: a SQLite file).
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// How spend is recorded and limits are counted.
    #[serde(default)]
    pub accounting: AccountingConfig,
    /// The models clients may call.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

/// `server:`: where and how the gateway listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The key clients send as `Authorization: Bearer`; without one, only loopback is allowed.
    #[serde(default)]
    pub master_key: Option<Secret>,
    /// Largest request body accepted, in bytes (images inflate bodies: base64).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long to wait for a TCP/TLS connection to a provider, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            master_key: None,
            max_body_bytes: default_max_body_bytes(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000))
}

fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

/// One entry of `models:`: a name clients send, served by one or more deployments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What clients send as `model`. A trailing `*` makes it a prefix (`groq/*`).
    pub name: Spanned<String>,
    /// Where requests for it go; several deployments share the traffic.
    pub deployments: Vec<DeploymentConfig>,
    /// Its balancing policy and cooldown, when not the `router:` defaults.
    #[serde(default)]
    pub routing: ModelRouting,
    /// Limits for all of its clients together (requests, tokens, in flight).
    #[serde(default)]
    pub limits: ModelLimits,
    /// Models to try, in order, when its deployments fail.
    #[serde(default)]
    pub fallbacks: Vec<Spanned<String>>,
    /// Models to try when a prompt is too long for it.
    #[serde(default)]
    pub context_window_fallbacks: Vec<Spanned<String>>,
    /// Models to try when its provider refuses the content.
    #[serde(default)]
    pub content_policy_fallbacks: Vec<Spanned<String>>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: spanless(String::new()),
            deployments: Vec::new(),
            routing: ModelRouting::default(),
            limits: ModelLimits::default(),
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
        }
    }
}

/// One deployment: a provider, its model, its endpoint and credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// A preset (`openai`, `azure`, `groq`, ...) or `mock`.
    pub provider: Spanned<String>,
    /// The upstream model id (for Azure, the deployment name). `*` under a wildcard model
    /// name forwards the part of the client's model the wildcard matched.
    pub model: Spanned<String>,
    /// The provider key. Without it, the preset's environment variable is used when the
    /// deployment talks to the preset's own endpoint.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Base URL, overriding the preset's.
    #[serde(default)]
    pub api_base: Option<Spanned<String>>,
    /// Azure's `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Bedrock and Vertex AI: the region (`us-east-1`, `us-central1`), which also picks the
    /// endpoint. Bedrock falls back to `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// Vertex AI: the Google Cloud project id.
    #[serde(default)]
    pub project: Option<String>,
    /// Vertex AI: a service account's JSON key file; else `GOOGLE_APPLICATION_CREDENTIALS`.
    /// An OAuth access token given as `api_key` is used as it is instead.
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// Bedrock: the AWS access key id; else `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub aws_access_key_id: Option<Secret>,
    /// Bedrock: the AWS secret access key; else `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub aws_secret_access_key: Option<Secret>,
    /// Bedrock: an AWS session token for temporary credentials; else `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub aws_session_token: Option<Secret>,
    /// The `max_tokens` sent to a provider that requires one (Anthropic, Bedrock) when the
    /// request has none (default 4096).
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// Extra headers to send upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline for a whole answer, stream included, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Streams: deadline for the first chunk, in milliseconds.
    #[serde(default)]
    pub ttft_timeout_ms: Option<u64>,
    /// Streams: longest silence between two chunks, in milliseconds.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// Deadline for the TCP and TLS connection, in milliseconds (else `server.connect_timeout_ms`).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Relative share of the model's traffic (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Requests per minute it may receive.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute it may use.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests it may have in flight at once.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Its price, instead of the built-in catalog's: for spend, budgets and the lowest_cost policy.
    #[serde(default)]
    pub price: Option<PriceConfig>,
}

/// A secret string: shown as `<redacted>` in debug output and logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a configuration could not be used; every problem found, each with its place.
#[derive(Debug)]
pub struct ConfigError {
    /// The file, when there is one.
    pub source_name: String,
    /// The problems, in file order.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{} has {n} problem{}:", self.source_name, if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            for (i, line) in problem.lines().enumerate() {
                let bullet = if i == 0 { "  - " } else { "    " };
                writeln!(f, "{bullet}{line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The name of the built-in local mock provider.
pub const MOCK_PROVIDER: &str = "mock";

// === impl Config ===

impl Config {
    /// Reads, interpolates and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: source_name.clone(),
            problems: vec![format!("cannot read it: {e}")],
        })?;
        Self::parse(&text, &source_name, std::env::vars().collect())
    }

    /// Parses and validates YAML `text`, interpolating `${NAME}` from `env`.
    pub fn parse(text: &str, source_name: &str, env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let options = serde_saphyr::Options::default().with_properties(env.clone());
        let config: Config = serde_saphyr::from_str_with_options(text, options).map_err(|e| ConfigError {
            source_name: source_name.to_owned(),
            problems: vec![explain_yaml_error(&e.to_string())],
        })?;
        let problems = config.problems(&env);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { source_name: source_name.to_owned(), problems })
        }
    }

    /// The embedded default used when no file is given: every provider whose key is in the
    /// environment, as `<provider>/*` (for example `openai/gpt-4o-mini`), or, when there is
    /// none, the built-in local `mock` model.
    pub fn zero_config(env: &HashMap<String, String>) -> Self {
        let mut models: Vec<ModelConfig> = presets::PRESETS
            .iter()
            .filter(|p| p.api_base.is_some() && !p.key_optional)
            .filter_map(|p| {
                let key = env.get(p.key_env?).filter(|k| !k.is_empty())?;
                Some(ModelConfig {
                    name: spanless(format!("{}/*", p.name)),
                    deployments: vec![DeploymentConfig::new(p.name, "*", Some(Secret::new(key.clone())))],
                    ..ModelConfig::default()
                })
            })
            .collect();
        if models.is_empty() {
            models.push(ModelConfig {
                name: spanless(MOCK_PROVIDER.to_owned()),
                deployments: vec![DeploymentConfig::new(MOCK_PROVIDER, MOCK_PROVIDER, None)],
                ..ModelConfig::default()
            });
        }
        Config { models, ..Config::default() }
    }

    /// Every semantic problem, each naming its key and line.
    fn problems(&self, env: &HashMap<String, String>) -> Vec<String> {
        let mut problems = Vec::new();
        if self.server.master_key.is_none() && !self.server.listen.ip().is_loopback() {
            problems.push(format!(
                "server.listen: {} is reachable from the network but there is no server.master_key; \
                 anyone who can reach it could spend your provider credits. Set master_key \
                 (e.g. master_key: ${{SWITCHYARD_MASTER_KEY}}) or listen on 127.0.0.1",
                self.server.listen
            ));
        }
        if self.models.is_empty() {
            problems.push("`models` is empty: add at least one model with a deployment".to_owned());
        }
        let mut seen = HashSet::new();
        for (m, model) in self.models.iter().enumerate() {
            let name = &model.name.value;
            let at = at(&model.name);
            if name.trim().is_empty() {
                problems.push(format!("models[{m}].name{at}: must not be empty"));
            } else if !seen.insert(name.as_str()) {
                problems.push(format!(
                    "models[{m}].name{at}: `{name}` is defined twice; model names must be unique"
                ));
            }
            if name.contains('*') && !name.ends_with('*') {
                problems.push(format!("models[{m}].name{at}: `*` may only end a name (as in `groq/*`)"));
            }
            if model.deployments.is_empty() {
                problems.push(format!(
                    "models[{m}].deployments{at}: `{name}` has no deployments; add at least one"
                ));
            }
            for (d, deployment) in model.deployments.iter().enumerate() {
                let path = format!("models[{m}].deployments[{d}]");
                deployment.check(&path, name.ends_with('*'), env, &mut problems);
            }
        }
        self.routing_problems(&mut problems);
        self.telemetry.problems(&mut problems);
        self.accounting_problems(&mut problems);
        problems
    }
}

/// The YAML library calls `${NAME}` a property; our users know it as an environment variable.
fn explain_yaml_error(message: &str) -> String {
    message.replace("missing property", "environment variable not set:")
}

fn spanless<T>(value: T) -> Spanned<T> {
    Spanned::new(value, serde_saphyr::Location::UNKNOWN, serde_saphyr::Location::UNKNOWN)
}

/// ` (line N)` for a located value, nothing for a built-in one.
fn at<T>(value: &Spanned<T>) -> String {
    let location = value.referenced;
    if location == serde_saphyr::Location::UNKNOWN {
        String::new()
    } else {
        format!(" (line {}, column {})", location.line(), location.column())
    }
}

// === impl DeploymentConfig ===

impl DeploymentConfig {
    /// A deployment of `provider`'s `model`, everything else default.
    pub fn new(provider: &str, model: &str, api_key: Option<Secret>) -> Self {
        Self {
            provider: spanless(provider.to_owned()),
            model: spanless(model.to_owned()),
            api_key,
            api_base: None,
            api_version: None,
            region: None,
            project: None,
            credentials_file: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_session_token: None,
            default_max_tokens: None,
            headers: BTreeMap::new(),
            timeout_ms: None,
            ttft_timeout_ms: None,
            idle_timeout_ms: None,
            connect_timeout_ms: None,
            weight: None,
            rpm: None,
            tpm: None,
            max_parallel: None,
            price: None,
        }
    }

    /// The key to send: the configured one, or the preset's environment variable when the
    /// deployment talks to the preset's own endpoint (never to a different server).
    pub fn resolved_key(&self, env: &HashMap<String, String>) -> Option<String> {
        if let Some(key) = &self.api_key {
            return Some(key.expose().to_owned()).filter(|k| !k.is_empty());
        }
        let preset = presets::preset(&self.provider.value)?;
        if self.api_base.is_some() && preset.api_base.is_some() {
            return None;
        }
        env.get(preset.key_env?).filter(|k| !k.is_empty()).cloned()
    }

    /// The region a Bedrock deployment signs for: its own, else the AWS environment's.
    pub fn aws_region(&self, env: &HashMap<String, String>) -> Option<String> {
        self.region
            .clone()
            .or_else(|| env.get("AWS_REGION").cloned())
            .or_else(|| env.get("AWS_DEFAULT_REGION").cloned())
            .filter(|r| !r.is_empty())
    }

    /// A configured secret, else the environment variable `var`.
    pub fn secret_or_env(
        &self,
        secret: &Option<Secret>,
        var: &str,
        env: &HashMap<String, String>,
    ) -> Option<String> {
        secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .or_else(|| env.get(var).cloned())
            .filter(|v| !v.is_empty())
    }

    fn check_bedrock(&self, path: &str, env: &HashMap<String, String>, problems: &mut Vec<String>) {
        let at_provider = at(&self.provider);
        if self.aws_region(env).is_none() {
            problems.push(format!(
                "{path}.region{at_provider}: Bedrock deployments need a region: set region (e.g. us-east-1) or export AWS_REGION"
            ));
        }
        let id = self.secret_or_env(&self.aws_access_key_id, "AWS_ACCESS_KEY_ID", env);
        let secret = self.secret_or_env(&self.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY", env);
        if id.is_none() || secret.is_none() {
            problems.push(format!(
                "{path}.aws_access_key_id{at_provider}: Bedrock deployments need AWS credentials: set aws_access_key_id and aws_secret_access_key (e.g. ${{AWS_ACCESS_KEY_ID}}) or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ));
        }
    }

    fn check_vertex(&self, path: &str, env: &HashMap<String, String>, problems: &mut Vec<String>) {
        let at_provider = at(&self.provider);
        if self.project.as_deref().is_none_or(str::is_empty) {
            problems.push(format!("{path}.project{at_provider}: Vertex AI deployments need project: your Google Cloud project id"));
        }
        if self.region.as_deref().is_none_or(str::is_empty) {
            problems.push(format!(
                "{path}.region{at_provider}: Vertex AI deployments need region (e.g. us-central1, or global)"
            ));
        }
        let has_credentials = self.api_key.is_some()
            || self.credentials_file.is_some()
            || env.get("GOOGLE_APPLICATION_CREDENTIALS").is_some_and(|f| !f.is_empty());
        if !has_credentials {
            problems.push(format!(
                "{path}.credentials_file{at_provider}: Vertex AI deployments need credentials: set credentials_file to a service account key file, export GOOGLE_APPLICATION_CREDENTIALS, or give an OAuth access token as api_key (e.g. api_key: ${{VERTEX_ACCESS_TOKEN}})"
            ));
        }
    }

    fn check(
        &self,
        path: &str,
        under_wildcard: bool,
        env: &HashMap<String, String>,
        problems: &mut Vec<String>,
    ) {
        let provider = self.provider.value.as_str();
        let at_provider = at(&self.provider);
        if self.model.value.trim().is_empty() {
            problems.push(format!("{path}.model{}: must not be empty", at(&self.model)));
        }
        if self.model.value == "*" && !under_wildcard {
            problems.push(format!(
                "{path}.model{}: `*` forwards the part of a wildcard model name (like `groq/*`); this model's name has no wildcard",
                at(&self.model)
            ));
        }
        if let Some(base) = &self.api_base
            && !(base.value.starts_with("http://") || base.value.starts_with("https://"))
        {
            problems.push(format!(
                "{path}.api_base{}: `{}` is not an http:// or https:// URL",
                at(base),
                base.value
            ));
        }
        for name in self.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!("{path}.headers: `{name}` is not a valid header name"));
            }
        }
        if provider == MOCK_PROVIDER {
            return;
        }
        let Some(preset) = presets::preset(provider) else {
            let known: Vec<_> = presets::names().chain([MOCK_PROVIDER]).collect();
            problems.push(format!(
                "{path}.provider{at_provider}: unknown provider `{provider}`; known providers: {}",
                known.join(", ")
            ));
            return;
        };
        match preset.dialect {
            Dialect::Bedrock => self.check_bedrock(path, env, problems),
            Dialect::Vertex => self.check_vertex(path, env, problems),
            _ => {}
        }
        let endpoint_from_region = matches!(preset.dialect, Dialect::Bedrock | Dialect::Vertex);
        if preset.api_base.is_none() && self.api_base.is_none() && !endpoint_from_region {
            problems.push(format!(
                "{path}.api_base{at_provider}: provider `{provider}` has no default endpoint; set api_base (e.g. https://<resource>.openai.azure.com)"
            ));
        }
        if preset.url_style == presets::UrlStyle::Azure {
            if self.api_version.is_none() {
                problems.push(format!(
                    "{path}.api_version{at_provider}: Azure deployments need api_version (e.g. 2024-10-21)"
                ));
            }
            if self.model.value == "*" {
                problems.push(format!(
                    "{path}.model{}: Azure needs its deployment name, not `*`",
                    at(&self.model)
                ));
            }
        }
        let talks_to_preset = self.api_base.is_none();
        if !preset.key_optional && talks_to_preset && self.resolved_key(env).is_none() {
            let env_hint = preset.key_env.map(|v| format!(" or export {v}")).unwrap_or_default();
            problems.push(format!(
                "{path}.api_key{at_provider}: provider `{provider}` needs an API key: set api_key (e.g. api_key: ${{{}}}){env_hint}",
                preset.key_env.unwrap_or("API_KEY"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(text, "test.yaml", env(vars))
    }

    const EXAMPLE: &str = "\
server:
  listen: 127.0.0.1:4000
  master_key: ${SWITCHYARD_MASTER_KEY}
models:
  - name: gpt-4o-mini
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}
      - provider: openai
        model: llama-3.1-8b
        api_base: http://127.0.0.1:8000/v1
";

    #[test]
    fn the_documented_example_loads_and_interpolates() {
        let config =
            parse(EXAMPLE, &[("SWITCHYARD_MASTER_KEY", "sk-master"), ("OPENAI_API_KEY", "sk-openai")])
                .expect("the example is valid");
        assert_eq!(config.server.master_key, Some(Secret::new("sk-master")));
        let deployments = &config.models[0].deployments;
        assert_eq!(deployments[0].api_key.as_ref().map(Secret::expose), Some("sk-openai"));
        assert_eq!(
            deployments[1].resolved_key(&HashMap::new()),
            None,
            "a custom api_base never gets the preset's key"
        );
    }

    #[test]
    fn a_missing_variable_names_it_and_its_line() {
        let err = parse(EXAMPLE, &[("OPENAI_API_KEY", "sk")]).expect_err("SWITCHYARD_MASTER_KEY is unset");
        let text = err.to_string();
        assert!(text.contains("SWITCHYARD_MASTER_KEY"), "{text}");
        assert!(text.contains('3'), "names line 3: {text}");
    }

    #[test]
    fn an_unknown_key_names_the_key_and_line() {
        let text = "models:\n  - name: a\n    deployments:\n      - provider: openai\n        model: m\n        api_kee: x\n";
        let err = parse(text, &[("OPENAI_API_KEY", "sk")]).expect_err("api_kee is unknown").to_string();
        assert!(err.contains("api_kee") && err.contains('6'), "{err}");
    }

    #[test]
    fn semantic_problems_are_all_reported_with_lines() {
        let text = "\
models:
  - name: a
    deployments:
      - provider: opnai
        model: m
  - name: a
    deployments: []
  - name: az
    deployments:
      - provider: azure
        model: dep
";
        let err = parse(text, &[]).expect_err("invalid");
        let all = err.problems.join("\n");
        assert!(all.contains("unknown provider `opnai`") && all.contains("line 4"), "{all}");
        assert!(all.contains("defined twice") && all.contains("line 6"), "{all}");
        assert!(all.contains("has no deployments"), "{all}");
        assert!(all.contains("api_base") && all.contains("api_version"), "{all}");
    }

    #[test]
    fn a_cloud_provider_without_a_key_is_an_error_that_says_what_to_set() {
        let text = "models:\n  - name: g\n    deployments:\n      - provider: groq\n        model: llama\n";
        let err = parse(text, &[]).expect_err("no key").to_string();
        assert!(err.contains("GROQ_API_KEY"), "{err}");
        assert!(parse(text, &[("GROQ_API_KEY", "gsk")]).is_ok(), "the environment's key is used");
    }

    #[test]
    fn listening_beyond_loopback_needs_a_master_key() {
        let models = "models:\n  - {name: m, deployments: [{provider: mock, model: mock}]}\n";
        let open = format!("server:\n  listen: 0.0.0.0:4000\n{models}");
        let err = parse(&open, &[]).expect_err("no master key").to_string();
        assert!(err.contains("master_key") && err.contains("0.0.0.0:4000"), "{err}");
        let keyed = format!("server:\n  listen: 0.0.0.0:4000\n  master_key: sk-x\n{models}");
        assert!(parse(&keyed, &[]).is_ok());
        assert!(parse(models, &[]).is_ok(), "loopback needs no key");
    }

    #[test]
    fn bad_values_are_reported() {
        let err =
            parse("server:\n  listen: localhost\nmodels: []\n", &[]).expect_err("bad address").to_string();
        assert!(err.contains("listen") || err.contains("line 2"), "{err}");
    }

    #[test]
    fn zero_config_serves_mock_without_keys_and_providers_with_them() {
        let mock = Config::zero_config(&HashMap::new());
        assert_eq!(mock.models.len(), 1);
        assert_eq!(mock.models[0].name.value, "mock");
        let real = Config::zero_config(&env(&[("OPENAI_API_KEY", "sk"), ("GROQ_API_KEY", "gsk")]));
        let names: Vec<_> = real.models.iter().map(|m| m.name.value.as_str()).collect();
        assert_eq!(names, ["openai/*", "groq/*"]);
        assert!(real.problems(&HashMap::new()).is_empty(), "{:?}", real.problems(&HashMap::new()));
    }
}
