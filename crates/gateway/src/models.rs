//! The model table: which names clients may send, and the deployments behind each.
//!
//! Built once from the configuration. A name is exact (`gpt-4o-mini`) or a prefix ending in
//! `*` (`groq/*`); exact names win, then the longest prefix. Each deployment is a boxed
//! provider service; they share one upstream client and so one connection pool.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_providers::{
    mock::MockProvider,
    openai::{OpenAiCompatible, OpenAiSettings},
    presets,
};
use switchyard_types::llm::{LlmError, LlmRequest, LlmResponse};
use tower::util::BoxCloneSyncService;

use crate::config::{Config, DeploymentConfig, MOCK_PROVIDER};

/// A provider deployment as the stack calls it.
pub type DeploymentService = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;

/// One deployment of a model.
#[derive(Clone)]
pub struct Deployment {
    /// `provider/model`, for logs and the `x-switchyard-deployment` header.
    pub label: Arc<str>,
    /// The provider's name (`openai`, `groq`, `mock`, ...).
    pub provider: String,
    /// Whether the upstream model is the part of the client's model a wildcard matched.
    pub forwards_model: bool,
    /// The adapter.
    pub service: DeploymentService,
}

/// A name clients send and the deployments that serve it.
pub struct ModelGroup {
    /// The configured name (`gpt-4o-mini`, or `groq/*`).
    pub name: String,
    /// For a wildcard name, the prefix before `*`.
    pub prefix: Option<String>,
    /// The deployments, in configuration order.
    pub deployments: Vec<Deployment>,
    next: AtomicUsize,
}

impl ModelGroup {
    /// The next deployment in round-robin order.
    pub fn pick(&self) -> Option<&Deployment> {
        if self.deployments.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.deployments.get(turn % self.deployments.len())
    }

    /// Who serves this model, for `GET /v1/models`.
    pub fn owned_by(&self) -> &str {
        self.deployments.first().map_or("switchyard", |d| d.provider.as_str())
    }
}

/// Every model the gateway serves.
#[derive(Default)]
pub struct ModelTable {
    exact: HashMap<String, Arc<ModelGroup>>,
    /// Wildcard groups, longest prefix first.
    prefixed: Vec<Arc<ModelGroup>>,
    /// All groups in configuration order.
    ordered: Vec<Arc<ModelGroup>>,
}

/// A deployment that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("model `{model}`, deployment {index} ({provider}): {reason}")]
pub struct BuildError {
    model: String,
    index: usize,
    provider: String,
    reason: String,
}

// === impl ModelTable ===

impl ModelTable {
    /// Builds every deployment of a validated `config`, sending through `client`.
    pub fn build(
        config: &Config,
        client: &reqwest::Client,
        env: &HashMap<String, String>,
    ) -> Result<Self, BuildError> {
        let mut table = ModelTable::default();
        for model in &config.models {
            let name = model.name.value.clone();
            let deployments = model
                .deployments
                .iter()
                .enumerate()
                .map(|(index, d)| {
                    build_deployment(d, client, env).map_err(|reason| BuildError {
                        model: name.clone(),
                        index,
                        provider: d.provider.value.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let prefix = name.strip_suffix('*').map(str::to_owned);
            let group =
                Arc::new(ModelGroup { name: name.clone(), prefix, deployments, next: AtomicUsize::new(0) });
            if group.prefix.is_some() {
                table.prefixed.push(Arc::clone(&group));
            } else {
                table.exact.insert(name, Arc::clone(&group));
            }
            table.ordered.push(group);
        }
        table.prefixed.sort_by_key(|g| std::cmp::Reverse(g.prefix.as_ref().map_or(0, String::len)));
        Ok(table)
    }

    /// The group serving `model`, and for a wildcard the part of `model` it matched.
    pub fn resolve<'m>(&self, model: &'m str) -> Option<(&Arc<ModelGroup>, Option<&'m str>)> {
        if let Some(group) = self.exact.get(model) {
            return Some((group, None));
        }
        self.prefixed.iter().find_map(|group| {
            let rest = model.strip_prefix(group.prefix.as_deref()?)?;
            (!rest.is_empty()).then_some((group, Some(rest)))
        })
    }

    /// All groups, in configuration order.
    pub fn groups(&self) -> &[Arc<ModelGroup>] {
        &self.ordered
    }
}

fn build_deployment(
    config: &DeploymentConfig,
    client: &reqwest::Client,
    env: &HashMap<String, String>,
) -> Result<Deployment, String> {
    let provider = config.provider.value.as_str();
    let model = config.model.value.as_str();
    let forwards_model = model == "*";
    let label: Arc<str> = format!("{provider}/{model}").into();
    if provider == MOCK_PROVIDER {
        return Ok(Deployment {
            label: Arc::clone(&label),
            provider: provider.to_owned(),
            forwards_model,
            service: BoxCloneSyncService::new(MockProvider::new(label)),
        });
    }
    let preset = presets::preset(provider).ok_or_else(|| format!("unknown provider `{provider}`"))?;
    let api_base = config
        .api_base
        .as_ref()
        .map(|b| b.value.clone())
        .or_else(|| preset.api_base.map(str::to_owned))
        .ok_or("no api_base")?;
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name `{name}`"))?;
        let value =
            HeaderValue::try_from(value.as_str()).map_err(|_| format!("bad value for header `{name}`"))?;
        headers.insert(name, value);
    }
    let settings = OpenAiSettings {
        label: Arc::clone(&label),
        api_base,
        api_key: config.resolved_key(env),
        auth: preset.auth,
        url_style: preset.url_style,
        api_version: config.api_version.clone(),
        model: (!forwards_model).then(|| model.to_owned()),
        headers,
        timeout: config.timeout_ms.map(Duration::from_millis),
    };
    let adapter = OpenAiCompatible::new(client.clone(), settings).map_err(|e| e.to_string())?;
    Ok(Deployment {
        label,
        provider: provider.to_owned(),
        forwards_model,
        service: BoxCloneSyncService::new(adapter),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> ModelTable {
        let env = HashMap::new();
        let config = Config::parse(yaml, "t.yaml", env.clone()).expect("valid config");
        let client = switchyard_providers::client::build_client(&Default::default()).expect("client");
        ModelTable::build(&config, &client, &env).expect("table")
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
        let name = |m| t.resolve(m).map(|(g, rest)| (g.name.as_str(), rest));
        assert_eq!(name("a/b/c"), Some(("a/b/c", None)));
        assert_eq!(name("a/b/x"), Some(("a/b/*", Some("x"))));
        assert_eq!(name("a/x"), Some(("a/*", Some("x"))));
        assert_eq!(name("a/"), None, "a wildcard needs something to match");
        assert_eq!(name("zzz"), None);
    }

    #[test]
    fn round_robin_visits_every_deployment_in_turn() {
        let t = table(
            "models:
  - name: m
    deployments:
      - {provider: vllm, model: one}
      - {provider: vllm, model: two}
      - {provider: vllm, model: three}
",
        );
        let (group, _) = t.resolve("m").expect("m exists");
        let picks: Vec<_> = (0..6).filter_map(|_| group.pick().map(|d| d.label.to_string())).collect();
        assert_eq!(picks, ["vllm/one", "vllm/two", "vllm/three", "vllm/one", "vllm/two", "vllm/three"]);
    }
}
