//! Opt-in end to end: the gateway in front of a real LLM server nobody on the team wrote,
//! llama.cpp's `llama-server` (start it with `../shared/real-upstream/start-llama.sh`, then run
//! with `SWITCHYARD_REAL_UPSTREAM_URL=http://127.0.0.1:8091/v1`).
//!
//! It closes its connection after every streamed response without saying so: alternating
//! streamed and plain requests proves the pooled-connection resend works on the real thing.
//! Without the variable the tests say they were skipped and pass.

use std::{io::Write, time::Duration};

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client};

fn upstream() -> Option<String> {
    let url = std::env::var("SWITCHYARD_REAL_UPSTREAM_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        // Written to the real stderr, not through the test harness's capture, so that the skip
        // shows in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "real_upstream: skipped: SWITCHYARD_REAL_UPSTREAM_URL is not set (start ../shared/real-upstream/start-llama.sh, then set it to http://127.0.0.1:8091/v1)"
        );
    }
    url
}

fn request(stream: bool) -> Value {
    json!({
        "model": "gemma",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8, "temperature": 0, "stop": ["\n"],
        "stream": stream, "stream_options": {"include_usage": true}
    })
}

#[tokio::test]
async fn llama_server_streams_and_its_closed_connections_never_reach_the_client() {
    let Some(base) = upstream() else { return };
    let gateway = Gateway::start(&format!(
        "models:\n  - name: gemma\n    deployments:\n      - {{provider: openai, model: gemma, api_base: '{base}'}}\n"
    ))
    .await;
    let http = client();
    for round in 0..5 {
        let streamed = tokio::time::timeout(Duration::from_secs(60), async {
            let response = http.post(gateway.url("/v1/chat/completions")).json(&request(true)).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })
        .await
        .expect("the stream finished within 60 s")
        .expect("the stream was read");
        assert_eq!(streamed.0, 200, "round {round}: {}", streamed.1);
        assert!(streamed.1.ends_with("data: [DONE]\n\n"), "round {round}: {}", streamed.1);
        assert!(streamed.1.contains("\"usage\":{"), "round {round}: usage chunk present: {}", streamed.1);

        let plain = http.post(gateway.url("/v1/chat/completions")).json(&request(false)).send().await;
        let plain = plain.expect("the request after a stream was answered");
        assert_eq!(plain.status(), 200, "round {round}: the request after a stream");
        let body: Value = plain.json().await.expect("JSON");
        assert_eq!(body["object"], "chat.completion");
        assert!(body["usage"]["completion_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");
    }
}
