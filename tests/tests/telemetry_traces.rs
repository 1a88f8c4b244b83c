//! End to end: OpenTelemetry traces over OTLP/HTTP. A chat request that carries a W3C
//! `traceparent` is one server span in the client's trace, with a client span per routing
//! attempt under it, named and attributed per the GenAI semantic conventions; the provider
//! receives the attempt's `traceparent`; prompts and completions are not recorded. The spans
//! are received and decoded by an in-test collector (`switchyard_e2e::otlp`).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use serde_json::json;
use switchyard_e2e::{
    Gateway, client,
    otlp::{self, ReceivedSpan, Traces, random_id},
};
use switchyard_telemetry::trace::TraceProtocol;
use switchyard_testkit::{Fault, MockConfig, MockServer, RandomFaults};

fn traces() -> &'static Traces {
    otlp::traces(TraceProtocol::Http)
}

const PROMPT: &str = "a prompt that must not leave the gateway in a span";

/// POSTs a chat completion for `model` as a client in trace `trace_id` whose current span is
/// `parent`; returns the status and the answer's text.
async fn chat(gateway: &Gateway, model: &str, trace_id: &str, parent: &str) -> (u16, String) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": PROMPT}]});
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn server_spans(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    spans.iter().filter(|s| s.kind == "SERVER").collect()
}

/// The client spans, in the order they started.
fn attempt_spans(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    let mut attempts: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.kind == "CLIENT").collect();
    attempts.sort_by_key(|s| s.start);
    attempts
}

/// The parent span id a request's `traceparent` names, and its trace id.
fn traceparent_of(mock: &MockServer, index: usize) -> (String, String) {
    let requests = mock.requests();
    let value = requests[index].headers.get("traceparent").expect("a traceparent upstream");
    let parts: Vec<&str> = value.to_str().unwrap().split('-').collect();
    assert_eq!(parts.len(), 4, "{value:?}");
    assert_eq!((parts[0], parts[3]), ("00", "01"), "version 00, sampled: {value:?}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// `span`'s integer attribute `key` (the GenAI conventions' `gen_ai.usage.*`, and
/// `http.response.status_code`, are integers, not strings).
#[track_caller]
fn int(span: &ReceivedSpan, key: &str) -> i64 {
    match span.int(key) {
        Some(value) => value,
        None => panic!(
            "`{key}` is not an integer attribute of `{}` (record it as an i64: tracing-opentelemetry \
             exports u64 and usize as strings): {:?}",
            span.name,
            span.attributes.get(key)
        ),
    }
}

/// Neither the prompt nor the completion is in any attribute.
fn assert_no_content(spans: &[ReceivedSpan], completion: &str) {
    for span in spans {
        for (key, value) in &span.attributes {
            let value = value.to_string();
            assert!(!value.contains(PROMPT), "{}: {key} holds the prompt", span.name);
            assert!(!value.contains(completion), "{}: {key} holds the completion", span.name);
        }
    }
}

#[tokio::test]
async fn a_request_is_a_server_span_in_the_clients_trace_over_its_attempt() {
    let traces = traces();
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "telemetry:\n  traces:\n    endpoint: {}\nmodels:\n  - name: gpt-x\n    deployments:\n      - {{provider: openai, model: gpt-x-up, api_base: '{}', api_key: sk-upstream}}\n",
        traces.collector.url(),
        mock.url(),
    ))
    .await;
    let (trace_id, client_span) = (random_id(32), random_id(16));
    let (status, answer) = chat(&gateway, "gpt-x", &trace_id, &client_span).await;
    assert_eq!(status, 200, "{answer}");

    let spans = traces
        .wait_for(&trace_id, |spans| !server_spans(spans).is_empty() && !attempt_spans(spans).is_empty())
        .await;
    assert!(spans.iter().all(|s| s.protocol == "http"), "exported over OTLP/HTTP");

    // The server span: the client's span is its parent.
    let servers = server_spans(&spans);
    assert_eq!(servers.len(), 1, "one server span per request: {spans:#?}");
    let server = servers[0];
    assert_eq!(server.name, "chat gpt-x");
    assert_eq!(server.parent_span_id, client_span, "the client's span is the parent");
    assert!(!server.error);
    assert_eq!(server.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(server.str("gen_ai.request.model"), Some("gpt-x"));
    assert_eq!(server.str("gen_ai.response.model"), Some("gpt-x-up"));
    assert!(int(server, "gen_ai.usage.input_tokens") > 0, "{server:#?}");
    assert_eq!(int(server, "gen_ai.usage.output_tokens"), 20, "the mock's 20 tokens");
    assert_eq!(int(server, "http.response.status_code"), 200);
    assert_eq!(server.str("switchyard.deployment"), Some("openai/gpt-x-up"));
    assert_eq!(server.resource.get("service.name").and_then(|v| v.as_str()), Some("switchyard-e2e"));
    assert!(server.resource.get("service.version").and_then(|v| v.as_str()).is_some_and(|v| !v.is_empty()));
    assert_eq!(server.scope, "switchyard");

    // Its one attempt: a client span under it, named after the upstream model.
    let attempts = attempt_spans(&spans);
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(attempt.name, "chat gpt-x-up");
    assert!(!attempt.error);
    assert_eq!(attempt.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(attempt.str("gen_ai.provider.name"), Some("openai"));
    assert_eq!(attempt.str("gen_ai.request.model"), Some("gpt-x-up"));
    assert_eq!(attempt.str("switchyard.deployment"), Some("openai/gpt-x-up"));
    assert_eq!(attempt.str("error.type"), None);
    assert_eq!(spans.len(), 2, "nothing else is traced: {spans:#?}");

    // Upstream: the provider was called in the same trace, from the attempt.
    assert_eq!(traceparent_of(&mock, 0), (trace_id, attempt.span_id.clone()));

    let completion: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let completion = completion["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(completion.len() > 20, "{completion}");
    assert_no_content(&spans, &completion);
}

#[tokio::test]
async fn a_failed_attempt_and_the_one_that_served_are_both_children_of_the_request() {
    let traces = traces();
    let (broken, healthy) = (
        MockServer::start(MockConfig::default()).await.unwrap(),
        MockServer::start(MockConfig::default()).await.unwrap(),
    );
    let error = json!({"error": {"message": "The engine crashed", "type": "server_error"}});
    broken.set_random_faults(Some(
        RandomFaults::new(1, 100).with(Fault::Status { status: 500, body: error }, 1),
    ));
    // Round robin sends the first request to the first deployment: the broken one.
    let gateway = Gateway::start(&format!(
        "telemetry:\n  traces:\n    endpoint: {}\nrouter:\n  backoff_base_ms: 10\nmodels:\n  - name: pair\n    routing: {{policy: round_robin}}\n    deployments:\n      - {{provider: vllm, model: broken-up, api_base: '{}'}}\n      - {{provider: groq, model: healthy-up, api_base: '{}'}}\n",
        traces.collector.url(),
        broken.url(),
        healthy.url(),
    ))
    .await;
    let (trace_id, client_span) = (random_id(32), random_id(16));
    let (status, answer) = chat(&gateway, "pair", &trace_id, &client_span).await;
    assert_eq!(status, 200, "{answer}");

    let spans = traces
        .wait_for(&trace_id, |spans| !server_spans(spans).is_empty() && attempt_spans(spans).len() >= 2)
        .await;
    let servers = server_spans(&spans);
    assert_eq!(servers.len(), 1, "{spans:#?}");
    let server = servers[0];
    assert_eq!(server.parent_span_id, client_span);
    assert!(!server.error, "the request succeeded: {server:#?}");
    assert_eq!(int(server, "switchyard.attempts"), 2);
    assert_eq!(server.str("switchyard.deployment"), Some("groq/healthy-up"));

    let attempts = attempt_spans(&spans);
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let (failed, served) = (attempts[0], attempts[1]);
    assert!(attempts.iter().all(|a| a.parent_span_id == server.span_id), "{attempts:#?}");
    assert_eq!(failed.name, "chat broken-up");
    assert_eq!(failed.str("gen_ai.provider.name"), Some("vllm"));
    assert_eq!(failed.str("error.type"), Some("upstream_server_error"));
    assert!(failed.error, "status ERROR: {failed:#?}");
    assert_eq!(served.name, "chat healthy-up");
    assert_eq!(served.str("gen_ai.provider.name"), Some("groq"));
    assert_eq!(served.str("gen_ai.request.model"), Some("healthy-up"));
    assert_eq!(served.str("error.type"), None);
    assert!(!served.error);

    // Each provider request carried its own attempt as the parent.
    assert_eq!(traceparent_of(&healthy, 0), (trace_id.clone(), served.span_id.clone()));
    if !broken.requests().is_empty() {
        assert_eq!(traceparent_of(&broken, 0), (trace_id, failed.span_id.clone()));
    }
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_trace_and_still_propagates_it() {
    let traces = traces();
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "telemetry:\n  traces:\n    endpoint: {}\nmodels:\n  - name: solo\n    deployments:\n      - {{provider: vllm, model: solo-up, api_base: '{}'}}\n",
        traces.collector.url(),
        mock.url(),
    ))
    .await;
    let body = json!({"model": "solo", "messages": [{"role": "user", "content": PROMPT}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let (trace_id, parent) = traceparent_of(&mock, 0);
    let spans = traces.wait_for(&trace_id, |spans| spans.len() >= 2).await;
    let servers = server_spans(&spans);
    assert_eq!(servers.len(), 1, "the gateway's own trace: {spans:#?}");
    assert_eq!(servers[0].parent_span_id, "", "a root span");
    let attempts = attempt_spans(&spans);
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    assert_eq!(attempts[0].span_id, parent);
    assert_eq!(attempts[0].parent_span_id, servers[0].span_id);
}
