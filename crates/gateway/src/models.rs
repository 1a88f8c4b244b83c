//! Building the route table from the configuration: each deployment becomes a provider
//! adapter (with traces on, behind `switchyard-telemetry`'s `PropagateLayer`, which sends the
//! attempt's `traceparent` upstream), wrapped in its time limits, as a `switchyard-router`
//! endpoint with its weight, limits and price; each model becomes a group with its policy and
//! cooldown.
//!
//! Deployments share one upstream client, and so one connection pool, per connect timeout
//! (a connect timeout is a property of the client, not of a request).

use std::{collections::HashMap, sync::Arc, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_providers::{
    anthropic::{Anthropic, AnthropicSettings},
    bedrock::{AwsCredentials, Bedrock, BedrockSettings},
    client::{ClientSettings, build_client},
    cohere::{Cohere, CohereSettings},
    gemini::{Gemini, GeminiSettings, Platform, ServiceAccountKey, VertexCredentials},
    messages_over_chat::MessagesOverChatLayer,
    mock::MockProvider,
    openai::{OpenAiCompatible, OpenAiSettings},
    presets::{self, Dialect},
    translate::chat_to_messages::DEFAULT_MAX_TOKENS,
};
use switchyard_router::{
    DeploymentService, Endpoint, EndpointSettings, GroupSettings, ModelGroup, Price, RouteTable,
    timeout::{DeadlineLayer, Timeouts},
};
use switchyard_telemetry::trace::PropagateLayer;
use tower::{Layer, util::BoxCloneSyncService};

use crate::config::{Config, DeploymentConfig, MOCK_PROVIDER, ModelConfig};

/// A deployment that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("model `{model}`, deployment {index} ({provider}): {reason}")]
pub struct BuildError {
    model: String,
    index: usize,
    provider: String,
    reason: String,
}

/// The provider of an endpoint the gateway built (its GenAI-conventions name).
pub fn provider_of(endpoint: &Endpoint) -> &str {
    &endpoint.provider
}

/// Who serves a model, for `GET /v1/models`.
pub fn owned_by(group: &ModelGroup) -> &str {
    group.endpoints().first().map_or("switchyard", provider_of)
}

/// Builds every model group of a validated `config`.
pub fn build_table(config: &Config, env: &HashMap<String, String>) -> Result<RouteTable, BuildError> {
    let mut clients = Clients::new(config.server.connect_timeout_ms);
    let traced = config.telemetry.traces.is_some();
    let mut groups = Vec::with_capacity(config.models.len());
    for model in &config.models {
        let name = model.name.value.as_str();
        let endpoints = model
            .deployments
            .iter()
            .enumerate()
            .map(|(index, d)| {
                let key = format!("{name}/{index}");
                let label = label_of(model, index);
                build_endpoint(d, label, key, traced, &mut clients, env).map_err(|reason| BuildError {
                    model: name.to_owned(),
                    index,
                    provider: d.provider.value.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let settings = GroupSettings {
            policy: model.routing.policy.unwrap_or(config.router.policy).policy(),
            cooldown: model.routing.cooldown.as_ref().unwrap_or(&config.router.cooldown).cooldown(),
        };
        groups.push(ModelGroup::new(name, endpoints, settings));
    }
    Ok(RouteTable::new(groups))
}

/// One upstream client per connect timeout.
struct Clients {
    default_ms: u64,
    built: HashMap<u64, reqwest::Client>,
}

impl Clients {
    fn new(default_ms: u64) -> Self {
        Self { default_ms, built: HashMap::new() }
    }

    fn get(&mut self, connect_timeout_ms: Option<u64>) -> Result<reqwest::Client, String> {
        let ms = connect_timeout_ms.unwrap_or(self.default_ms);
        if let Some(client) = self.built.get(&ms) {
            return Ok(client.clone());
        }
        let client = build_client(&ClientSettings {
            connect_timeout: Duration::from_millis(ms),
            ..ClientSettings::default()
        })
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        self.built.insert(ms, client.clone());
        Ok(client)
    }
}

/// One deployment: its adapter, behind the trace context propagation when `traced`, behind
/// its time limits.
/// The provider's name as the OpenTelemetry GenAI conventions spell it (`gen_ai.provider.name`),
/// for traces and the metrics' `provider` label; a preset without a registered name keeps its own.
fn genai_provider(preset: &str) -> &str {
    match preset {
        "azure" => "azure.ai.openai",
        "bedrock" => "aws.bedrock",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        "gemini" => "gcp.gemini",
        "vertex" => "gcp.vertex_ai",
        other => other,
    }
}

/// `provider/model`; when two deployments of one model share it (same provider and model,
/// different endpoints or keys), `#index` tells them apart in headers, logs and metrics.
fn label_of(model: &ModelConfig, index: usize) -> Arc<str> {
    let plain = |d: &DeploymentConfig| format!("{}/{}", d.provider.value, d.model.value);
    let label = plain(&model.deployments[index]);
    let shared = model.deployments.iter().filter(|d| plain(d) == label).count() > 1;
    if shared { format!("{label}#{index}").into() } else { label.into() }
}

fn build_endpoint(
    config: &DeploymentConfig,
    label: Arc<str>,
    key: String,
    traced: bool,
    clients: &mut Clients,
    env: &HashMap<String, String>,
) -> Result<Endpoint, String> {
    let provider = config.provider.value.as_str();
    let model = config.model.value.as_str();
    // Adapters that speak only the OpenAI dialect serve Anthropic clients through the
    // translation layer; the Anthropic adapter speaks both itself.
    let over_chat = MessagesOverChatLayer::new();
    let adapter: DeploymentService = if provider == MOCK_PROVIDER {
        BoxCloneSyncService::new(over_chat.layer(MockProvider::new(Arc::clone(&label))))
    } else {
        let preset = presets::preset(provider).ok_or_else(|| format!("unknown provider `{provider}`"))?;
        match preset.dialect {
            Dialect::OpenAi => BoxCloneSyncService::new(over_chat.layer(openai_adapter(
                config,
                preset,
                Arc::clone(&label),
                clients,
                env,
            )?)),
            Dialect::Anthropic => {
                BoxCloneSyncService::new(anthropic_adapter(config, preset, Arc::clone(&label), clients, env)?)
            }
            Dialect::Cohere => BoxCloneSyncService::new(over_chat.layer(cohere_adapter(
                config,
                preset,
                Arc::clone(&label),
                clients,
                env,
            )?)),
            Dialect::Bedrock => BoxCloneSyncService::new(over_chat.layer(bedrock_adapter(
                config,
                Arc::clone(&label),
                clients,
                env,
            )?)),
            Dialect::Gemini | Dialect::Vertex => BoxCloneSyncService::new(over_chat.layer(gemini_adapter(
                config,
                preset,
                Arc::clone(&label),
                clients,
                env,
            )?)),
        }
    };
    // With traces on, the provider request carries the attempt span's `traceparent`. The
    // layer runs inside the attempt span (the router calls the deployment there); it is left
    // out with traces off, where it would find no span on every request.
    let adapter =
        if traced { BoxCloneSyncService::new(PropagateLayer::new().layer(adapter)) } else { adapter };
    let timeouts = Timeouts {
        total: config.timeout_ms.map(Duration::from_millis),
        ttft: config.ttft_timeout_ms.map(Duration::from_millis),
        idle: config.idle_timeout_ms.map(Duration::from_millis),
    };
    // Every deployment sits behind its time limits, even one with none configured: the layer
    // also enforces the client's own (`x-switchyard-timeout-ms`, `x-switchyard-ttft-timeout-ms`),
    // which a deployment without limits would otherwise ignore.
    let service = BoxCloneSyncService::new(DeadlineLayer::new(timeouts, Arc::clone(&label)).layer(adapter));
    let settings = EndpointSettings {
        weight: config.weight.unwrap_or(1),
        rpm: config.rpm,
        tpm: config.tpm,
        max_parallel: config.max_parallel,
        price: config.price.map(|p| Price { input: p.input, output: p.output }),
    };
    let endpoint = Endpoint::new(label, key, service, settings).with_provider(genai_provider(provider));
    Ok(if model == "*" { endpoint.forwarding_model() } else { endpoint })
}

fn openai_adapter(
    config: &DeploymentConfig,
    preset: &presets::Preset,
    label: Arc<str>,
    clients: &mut Clients,
    env: &HashMap<String, String>,
) -> Result<OpenAiCompatible, String> {
    let model = config.model.value.as_str();
    let settings = OpenAiSettings {
        label,
        api_base: api_base(config, preset)?,
        api_key: config.resolved_key(env),
        auth: preset.auth,
        url_style: preset.url_style,
        api_version: config.api_version.clone(),
        model: (model != "*").then(|| model.to_owned()),
        headers: headers(config)?,
    };
    // Streams are billed from the usage the provider reports at their end: ask for it where the
    // provider accepts `stream_options` (the gateway drops the report for a client that did not ask).
    OpenAiCompatible::new(clients.get(config.connect_timeout_ms)?, settings)
        .map(|adapter| adapter.asking_stream_usage(preset.accepts_stream_options))
        .map_err(|e| e.to_string())
}

/// Gemini on AI Studio (`gemini`: an API key) or on Vertex AI (`vertex`: project, region, and an
/// access token as `api_key` or a service account key file, which is read here, once).
fn gemini_adapter(
    config: &DeploymentConfig,
    preset: &presets::Preset,
    label: Arc<str>,
    clients: &mut Clients,
    env: &HashMap<String, String>,
) -> Result<Gemini, String> {
    let platform = if preset.dialect == Dialect::Vertex {
        let credentials = match config.resolved_key(env) {
            Some(token) => VertexCredentials::AccessToken(token),
            None => {
                let path = config
                    .credentials_file
                    .clone()
                    .or_else(|| env.get("GOOGLE_APPLICATION_CREDENTIALS").cloned())
                    .filter(|p| !p.is_empty())
                    .ok_or("Vertex AI deployments need credentials: set credentials_file, export GOOGLE_APPLICATION_CREDENTIALS, or give an access token as api_key")?;
                let json = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the credentials file `{path}`: {e}"))?;
                let key = ServiceAccountKey::from_json(&json)
                    .map_err(|e| format!("credentials file `{path}`: {e}"))?;
                VertexCredentials::ServiceAccount(Box::new(key))
            }
        };
        Platform::Vertex {
            api_base: config.api_base.as_ref().map(|b| b.value.clone()),
            project: config.project.clone().unwrap_or_default(),
            region: config.region.clone().unwrap_or_default(),
            credentials,
        }
    } else {
        let api_key = config.resolved_key(env).ok_or_else(|| {
            format!(
                "provider `{}` needs an API key: set api_key{}",
                preset.name,
                preset.key_env.map(|v| format!(" or export {v}")).unwrap_or_default()
            )
        })?;
        Platform::AiStudio { api_base: api_base(config, preset)?, api_key }
    };
    let model = config.model.value.as_str();
    let settings = GeminiSettings {
        label,
        platform,
        model: (model != "*").then(|| model.to_owned()),
        headers: headers(config)?,
    };
    Gemini::new(clients.get(config.connect_timeout_ms)?, settings).map_err(|e| e.to_string())
}

fn anthropic_adapter(
    config: &DeploymentConfig,
    preset: &presets::Preset,
    label: Arc<str>,
    clients: &mut Clients,
    env: &HashMap<String, String>,
) -> Result<Anthropic, String> {
    let model = config.model.value.as_str();
    let settings = AnthropicSettings {
        label,
        api_base: api_base(config, preset)?,
        api_key: config.resolved_key(env),
        model: (model != "*").then(|| model.to_owned()),
        default_max_tokens: config.default_max_tokens.map_or(DEFAULT_MAX_TOKENS, u64::from),
        headers: headers(config)?,
    };
    Anthropic::new(clients.get(config.connect_timeout_ms)?, settings).map_err(|e| e.to_string())
}

/// A Cohere deployment: the native v2 adapter (`/v2/chat`, `/v2/embed`), Bearer auth.
fn cohere_adapter(
    config: &DeploymentConfig,
    preset: &presets::Preset,
    label: Arc<str>,
    clients: &mut Clients,
    env: &HashMap<String, String>,
) -> Result<Cohere, String> {
    let model = config.model.value.as_str();
    let settings = CohereSettings {
        label,
        api_base: api_base(config, preset)?,
        api_key: config.resolved_key(env),
        model: (model != "*").then(|| model.to_owned()),
        headers: headers(config)?,
    };
    Cohere::new(clients.get(config.connect_timeout_ms)?, settings).map_err(|e| e.to_string())
}

/// A Bedrock deployment: its region and AWS credentials from the configuration, else from the
/// AWS environment variables. A session token from `AWS_SESSION_TOKEN` goes only with keys that
/// also came from the environment: it belongs to them, not to keys written in the file.
fn bedrock_adapter(
    config: &DeploymentConfig,
    label: Arc<str>,
    clients: &mut Clients,
    env: &HashMap<String, String>,
) -> Result<Bedrock, String> {
    let region =
        config.aws_region(env).ok_or("Bedrock deployments need a region: set region or export AWS_REGION")?;
    let missing = "Bedrock deployments need aws_access_key_id and aws_secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)";
    let access_key_id =
        config.secret_or_env(&config.aws_access_key_id, "AWS_ACCESS_KEY_ID", env).ok_or(missing)?;
    let secret_access_key =
        config.secret_or_env(&config.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY", env).ok_or(missing)?;
    let session_token = if config.aws_access_key_id.is_some() {
        config.aws_session_token.as_ref().map(|t| t.expose().to_owned()).filter(|t| !t.is_empty())
    } else {
        config.secret_or_env(&config.aws_session_token, "AWS_SESSION_TOKEN", env)
    };
    let model = config.model.value.as_str();
    let settings = BedrockSettings {
        label,
        region,
        api_base: config.api_base.as_ref().map(|b| b.value.clone()),
        credentials: AwsCredentials { access_key_id, secret_access_key, session_token },
        model: (model != "*").then(|| model.to_owned()),
        default_max_tokens: config.default_max_tokens,
        headers: headers(config)?,
    };
    Bedrock::new(clients.get(config.connect_timeout_ms)?, settings).map_err(|e| e.to_string())
}

/// The deployment's base URL: its own, else its preset's.
fn api_base(config: &DeploymentConfig, preset: &presets::Preset) -> Result<String, String> {
    config
        .api_base
        .as_ref()
        .map(|b| b.value.clone())
        .or_else(|| preset.api_base.map(str::to_owned))
        .ok_or_else(|| format!("provider `{}` has no default endpoint: set api_base", preset.name))
}

/// The deployment's configured extra headers.
fn headers(config: &DeploymentConfig) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name `{name}`"))?;
        let value =
            HeaderValue::try_from(value.as_str()).map_err(|_| format!("bad value for header `{name}`"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let env = HashMap::new();
        let config = Config::parse(yaml, "t.yaml", env.clone()).expect("valid config");
        build_table(&config, &env).expect("table")
    }

    #[test]
    fn exact_names_win_then_the_longest_prefix() {
        let t = table(
            "models:
  - {name: 'a/*', deployments: [{provider: vllm, model: '*'}]}
  - {name: 'a/b/*', deployments: [{provider: ollama, model: '*'}]}
  - {name: 'a/b/c', deployments: [{provider: mock, model: mock}]}
",
        );
        let name = |m| t.resolve(m).map(|(g, rest)| (g.name(), rest));
        assert_eq!(name("a/b/c"), Some(("a/b/c", None)));
        assert_eq!(name("a/b/x"), Some(("a/b/*", Some("x"))));
        assert_eq!(name("a/x"), Some(("a/*", Some("x"))));
        assert_eq!(name("a/"), None, "a wildcard needs something to match");
        assert_eq!(name("zzz"), None);
    }

    #[test]
    fn deployments_carry_their_routing_settings() {
        let t = table(
            "models:
  - name: m
    routing: {policy: lowest_cost}
    deployments:
      - {provider: vllm, model: one, weight: 3, rpm: 60, tpm: 1000, max_parallel: 4, price: {input: 1, output: 2}}
      - {provider: vllm, model: two, price: {input: 0.5, output: 1}}
",
        );
        let (group, _) = t.resolve("m").expect("m exists");
        assert_eq!(group.settings().policy, switchyard_router::Policy::LowestCost);
        let first = &group.endpoints()[0];
        assert_eq!(&*first.key, "m/0");
        assert_eq!(
            first.settings,
            EndpointSettings {
                weight: 3,
                rpm: Some(60),
                tpm: Some(1000),
                max_parallel: Some(4),
                price: Some(Price { input: 1.0, output: 2.0 }),
            }
        );
        assert_eq!(group.endpoints()[1].settings.weight, 1);
        assert_eq!(owned_by(group), "vllm");
    }

    #[test]
    fn a_bedrock_deployment_builds_from_the_aws_environment() {
        let env: HashMap<String, String> = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let yaml = "models:\n  - {name: c, deployments: [{provider: bedrock, model: 'anthropic.claude-3-5-sonnet-20240620-v1:0'}]}\n";
        let config = Config::parse(yaml, "t.yaml", env.clone()).expect("valid config");
        let t = build_table(&config, &env).expect("table");
        let (group, _) = t.resolve("c").expect("c exists");
        assert_eq!(provider_of(&group.endpoints()[0]), "aws.bedrock");

        let without = HashMap::new();
        let Err(error) = build_table(&config, &without) else { panic!("no credentials, no deployment") };
        assert!(error.to_string().contains("region"), "{error}");
    }

    #[test]
    fn gemini_and_vertex_deployments_are_built_and_a_bad_key_file_is_named() {
        let t = table(
            "models:
  - name: g
    deployments:
      - {provider: gemini, model: gemini-2.5-flash, api_key: AIza-k}
      - {provider: vertex, model: gemini-2.5-flash, project: p, region: global, api_key: ya29.t}
",
        );
        let (group, _) = t.resolve("g").expect("g exists");
        let providers: Vec<&str> = group.endpoints().iter().map(provider_of).collect();
        assert_eq!(providers, ["gcp.gemini", "gcp.vertex_ai"], "GenAI convention names");

        let env = HashMap::new();
        let yaml = "models:\n  - {name: v, deployments: [{provider: vertex, model: m, project: p, region: us-central1, credentials_file: /nonexistent/sa.json}]}\n";
        let config = Config::parse(yaml, "t.yaml", env.clone()).expect("valid config");
        let error = build_table(&config, &env).expect_err("the file does not exist").to_string();
        assert!(error.contains("cannot read the credentials file `/nonexistent/sa.json`"), "{error}");
    }

    #[test]
    fn two_deployments_of_one_upstream_model_get_distinct_labels() {
        let t = table(
            "models:
  - name: m
    deployments:
      - {provider: vllm, model: llama, api_base: 'http://10.0.0.1:8000/v1'}
      - {provider: vllm, model: llama, api_base: 'http://10.0.0.2:8000/v1'}
      - {provider: azure, model: gpt, api_base: 'https://r.openai.azure.com', api_version: '2024-10-21', api_key: k}
",
        );
        let (group, _) = t.resolve("m").expect("m exists");
        let labels: Vec<&str> = group.endpoints().iter().map(|e| &*e.label).collect();
        assert_eq!(labels, ["vllm/llama#0", "vllm/llama#1", "azure/gpt"]);
        let providers: Vec<&str> = group.endpoints().iter().map(provider_of).collect();
        assert_eq!(providers, ["vllm", "vllm", "azure.ai.openai"], "GenAI convention names");
    }

    #[test]
    fn cohere_deployments_get_the_native_adapter() {
        let t = table(
            "models:
  - name: command
    deployments:
      - {provider: cohere, model: command-a-03-2025, api_key: co-key}
",
        );
        let (group, _) = t.resolve("command").expect("command exists");
        assert_eq!(&*group.endpoints()[0].label, "cohere/command-a-03-2025");
        assert_eq!(provider_of(&group.endpoints()[0]), "cohere");
    }
}
