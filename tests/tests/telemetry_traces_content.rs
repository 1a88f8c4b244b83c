//! End to end: with `telemetry.traces.capture_content` on (a test binary of its own: the
//! setting is process-wide, like the subscriber), the request's server span carries the
//! prompt (`gen_ai.input.messages`) and the answer's choices (`gen_ai.output.messages`); the
//! attempt spans never do. Off, which `telemetry_traces.rs` checks, neither appears.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use serde_json::{Value, json};
use switchyard_e2e::{
    Gateway, client,
    otlp::{self, random_id},
};
use switchyard_telemetry::trace::TraceProtocol;
use switchyard_testkit::{MockConfig, MockServer};

#[tokio::test]
async fn prompts_and_answers_are_on_the_server_span_only_when_capture_is_on() {
    let traces = otlp::traces_with(TraceProtocol::Http, true);
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "telemetry:\n  traces:\n    endpoint: {}\n    capture_content: true\nmodels:\n  - name: gpt-x\n    deployments:\n      - {{provider: openai, model: gpt-x-up, api_base: '{}', api_key: sk-upstream}}\n",
        traces.collector.url(),
        mock.url(),
    ))
    .await;
    let trace_id = random_id(32);
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace_id}-{}-01", random_id(16)))
        .json(
            &json!({"model": "gpt-x", "messages": [{"role": "user", "content": "the secret word is heron"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let reply = answer["choices"][0]["message"]["content"].as_str().unwrap().to_owned();

    let spans = traces.wait_for(&trace_id, |spans| spans.len() >= 2).await;
    let server = spans.iter().find(|s| s.kind == "SERVER").unwrap();
    let attempt = spans.iter().find(|s| s.kind == "CLIENT").unwrap();
    let input: Value = serde_json::from_str(server.str("gen_ai.input.messages").unwrap()).unwrap();
    assert_eq!(input, json!([{"role": "user", "content": "the secret word is heron"}]));
    let output: Value = serde_json::from_str(server.str("gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(output[0]["message"]["content"], reply.as_str());
    assert_eq!(attempt.str("gen_ai.input.messages"), None, "content stays on the server span");
    assert_eq!(attempt.str("gen_ai.output.messages"), None);
}
