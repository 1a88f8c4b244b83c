//! End to end: when a model cannot serve, its fallback models do. Failures of its deployments
//! go to `fallbacks`, prompts too long for it to `context_window_fallbacks` (and only there), a
//! client's own `"models"` list is used only when the configuration allows it and never reaches
//! the provider, and a fallback naming an unknown model is refused when the file is loaded.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::collections::HashMap;

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, chat_body, client};
use switchyard_gateway::config::Config;
use switchyard_testkit::{Fault, MockConfig, MockServer, RandomFaults};

/// Sends `body`; returns the status, the deployment that served it (empty if none), the
/// attempts it took and the JSON answer.
async fn post(gateway: &Gateway, body: &Value) -> (u16, String, usize, Value) {
    let response = client().post(gateway.url("/v1/chat/completions")).json(body).send().await.unwrap();
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let deployment = header("x-switchyard-deployment");
    let attempts = header("x-switchyard-attempts").parse().unwrap_or(0);
    (response.status().as_u16(), deployment, attempts, response.json().await.unwrap())
}

async fn healthy() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

/// A mock whose every request fails with a 500.
async fn broken() -> MockServer {
    let mock = healthy().await;
    let error = json!({"error": {"message": "The engine crashed", "type": "server_error"}});
    mock.set_random_faults(Some(
        RandomFaults::new(1, 100).with(Fault::Status { status: 500, body: error }, 1),
    ));
    mock
}

fn context_too_long() -> Fault {
    Fault::Status {
        status: 400,
        body: json!({"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}),
    }
}

fn model(name: &str, upstream: &str, mock: &MockServer, extra: &str) -> String {
    format!(
        "  - name: {name}\n    deployments:\n      - {{provider: vllm, model: {upstream}, api_base: '{}'}}\n{extra}",
        mock.url()
    )
}

#[tokio::test]
async fn a_model_whose_deployments_fail_is_served_by_its_fallback() {
    let (primary, backup) = (broken().await, healthy().await);
    let gateway = Gateway::start(&format!(
        "router:\n  retries: 2\n  backoff_base_ms: 10\nmodels:\n{}{}",
        model("a", "a-up", &primary, "    fallbacks: [b]\n"),
        model("b", "b-up", &backup, "")
    ))
    .await;
    let (status, deployment, attempts, body) = post(&gateway, &chat_body("a", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deployment, "vllm/b-up");
    assert_eq!(primary.stats().requests, 3, "the first attempt and two retries");
    assert_eq!(attempts, 4, "every attempt counts, on every model: three on `a`, one on `b`");
    assert_eq!(backup.stats().chat_completions, 1);
}

#[tokio::test]
async fn a_prompt_too_long_goes_to_the_context_window_fallbacks_and_only_there() {
    let (small, general, large) = (healthy().await, healthy().await, healthy().await);
    let gateway = Gateway::start(&format!(
        "router:\n  backoff_base_ms: 10\nmodels:\n{}{}{}",
        model(
            "small",
            "small-up",
            &small,
            "    fallbacks: [general]\n    context_window_fallbacks: [large]\n"
        ),
        model("general", "general-up", &general, ""),
        model("large", "large-up", &large, "")
    ))
    .await;

    small.push_fault(context_too_long());
    let (status, deployment, attempts, body) = post(&gateway, &chat_body("small", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deployment, "vllm/large-up");
    assert_eq!(attempts, 2, "the client's prompt is not retried on the same model");
    assert_eq!(general.stats().requests, 0, "a prompt too long is not a failure of the deployment");

    // And the other way round: a deployment failure goes to `fallbacks`, not to the larger model.
    for _ in 0..3 {
        small.push_fault(Fault::Status { status: 500, body: json!({"error": {"message": "crashed"}}) });
    }
    let (status, deployment, _, body) = post(&gateway, &chat_body("small", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deployment, "vllm/general-up");
    assert_eq!(large.stats().requests, 1, "only the context-length failure went there");
}

#[tokio::test]
async fn a_clients_models_list_is_its_fallbacks_when_allowed_and_never_reaches_the_provider() {
    let (primary, backup) = (broken().await, healthy().await);
    let models = format!("{}{}", model("a", "a-up", &primary, ""), model("b", "b-up", &backup, ""));
    let mut body = chat_body("a", false);
    body["models"] = json!(["b"]);

    let allowed =
        Gateway::start(&format!("router:\n  retries: 0\n  allow_client_fallbacks: true\nmodels:\n{models}"))
            .await;
    let (status, deployment, attempts, answer) = post(&allowed, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(deployment, "vllm/b-up");
    assert_eq!(attempts, 2);
    let sent: Vec<Value> = primary.requests().into_iter().chain(backup.requests()).map(|r| r.body).collect();
    assert_eq!(sent.len(), 2);
    for upstream in &sent {
        assert!(upstream.get("models").is_none(), "the list was taken out of the body: {upstream}");
        assert_eq!(upstream["messages"], body["messages"], "the rest went through: {upstream}");
    }
    primary.clear();
    backup.clear();

    // Not allowed: `models` is one more field of the body, passed through; no fallback.
    let plain = Gateway::start(&format!("router:\n  retries: 0\nmodels:\n{models}")).await;
    let (status, _, attempts, answer) = post(&plain, &body).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(attempts, 1);
    assert_eq!(backup.requests().len(), 0, "the client's list was not used");
    let sent = primary.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["models"], json!(["b"]), "passed through untouched: {}", sent[0].body);

    let mut healthy_body = chat_body("b", false);
    healthy_body["models"] = json!(["a"]);
    let (status, _, _, answer) = post(&plain, &healthy_body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(backup.requests()[0].body["models"], json!(["a"]));
}

#[test]
fn a_fallback_naming_an_unknown_model_is_refused_at_load() {
    let yaml = "models:
  - name: a
    deployments: [{provider: vllm, model: a-up, api_base: 'http://127.0.0.1:9/v1'}]
    fallbacks: [b]
    context_window_fallbacks: [a-large]
  - name: b
    deployments: [{provider: vllm, model: b-up, api_base: 'http://127.0.0.1:9/v1'}]
";
    let error = Config::parse(yaml, "switchyard.yaml", HashMap::new()).unwrap_err();
    assert_eq!(error.problems.len(), 1, "`b` exists; only `a-large` does not: {error}");
    let problem = &error.problems[0];
    assert!(problem.starts_with("models[0].context_window_fallbacks[0]"), "names the key: {problem}");
    assert!(problem.contains("(line 5,"), "and its line: {problem}");
    assert!(problem.contains("`a-large`"), "and the model: {problem}");
    assert!(error.to_string().starts_with("switchyard.yaml has 1 problem"), "{error}");
}
