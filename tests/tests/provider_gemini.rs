//! End to end: OpenAI-dialect clients served by Gemini, on AI Studio (`provider: gemini`, an API
//! key) and on Vertex AI (`provider: vertex`, an access token or a service account key file whose
//! JWT grant the mock's token endpoint verifies), through the gateway to the testkit's Gemini mock.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, post_json, sse_data};
use switchyard_testkit::{Fault, MockConfig, MockServer};

const KEY: &str = "AIzaSyD-mock-key-0123456789";

fn mock_config() -> MockConfig {
    MockConfig { api_key: Some(KEY.to_owned()), chunks: 5, ..MockConfig::default() }
}

/// A gateway serving `gemini-flash` from AI Studio at the mock, with `key`.
async fn studio_gateway(mock: &MockServer, key: &str, router: &str) -> Gateway {
    Gateway::start(&format!(
        "{router}models:\n  - name: gemini-flash\n    deployments:\n      - provider: gemini\n        model: gemini-2.5-flash\n        api_base: http://{}\n        api_key: {key}\n",
        mock.addr()
    ))
    .await
}

async fn post(gateway: &Gateway, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client().post(gateway.url("/v1/chat/completions")).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn ask(text: &str) -> Value {
    json!({"model": "gemini-flash", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_chat_is_answered_in_openai_shape_from_generate_content() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = studio_gateway(&mock, KEY, "").await;
    let mut body = ask("What is the capital of France?");
    body["max_tokens"] = json!(3);
    body["temperature"] = json!(0.1);
    let (status, headers, answer) = post(&gateway, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["x-switchyard-deployment"], "gemini/gemini-2.5-flash");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"], json!({"role": "assistant", "content": "tok0 tok1 tok2 "}));
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "MAX_TOKENS is OpenAI's length");
    let usage = &answer["usage"];
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap())
    );

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.headers["x-goog-api-key"], KEY);
    assert_eq!(
        sent.body,
        json!({"contents": [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}],
               "systemInstruction": {"parts": [{"text": "Be brief."}]},
               "generationConfig": {"maxOutputTokens": 3, "temperature": 0.1}})
    );
}

#[tokio::test]
async fn a_stream_arrives_as_openai_chunks_with_done_and_usage_when_asked() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = studio_gateway(&mock, KEY, "").await;
    let mut body = ask("Tell me a story.");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 ");
    let finishes: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0].get("finish_reason")).filter(|f| !f.is_null()).collect();
    assert_eq!(finishes, [&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{usage}");
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(sent.query.as_deref(), Some("alt=sse"));

    // A client that did not ask for usage does not get the usage chunk (the gateway bills it).
    body["stream_options"] = json!(null);
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let events = sse_data(response).await;
    assert!(events.iter().all(|e| !e.contains("\"usage\"")), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_tool_call_comes_back_in_openai_shape_and_its_result_goes_back_to_gemini() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = studio_gateway(&mock, KEY, "").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "additionalProperties": false,
                       "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]);
    let body = json!({"model": "gemini-flash", "tools": tools, "tool_choice": "required",
                      "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let answer = post_json(&gateway, "/v1/chat/completions", &body).await;
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"], json!({"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}));
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.body["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    assert_eq!(
        sent.body["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}),
        "additionalProperties is dropped: Gemini refuses it"
    );

    let follow_up = json!({"model": "gemini-flash", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        choice["message"].clone(),
        {"role": "tool", "tool_call_id": call["id"].clone(), "content": "{\"celsius\": 18}"}]});
    let answer = post_json(&gateway, "/v1/chat/completions", &follow_up).await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let sent = mock.requests().pop().unwrap();
    let turns = sent.body["contents"].as_array().unwrap();
    assert_eq!(turns[1]["role"], "model");
    assert_eq!(turns[1]["parts"][0]["functionCall"]["name"], "get_weather");
    assert!(turns[1]["parts"][0]["thoughtSignature"].is_string(), "the call's signature goes back");
    assert_eq!(
        turns[2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"celsius": 18}}})
    );
}

#[tokio::test]
async fn a_rate_limit_reaches_the_client_as_429_with_retry_after_once_retries_are_spent() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = studio_gateway(&mock, KEY, "router:\n  retries: 1\n").await;
    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    let (status, headers, body) = post(&gateway, &ask("hi")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("RESOURCE_EXHAUSTED"), "{body}");
    assert_eq!(mock.stats().faults_by_kind.rate_limited, 2, "the retry was spent on Gemini too");
}

#[tokio::test]
async fn a_refused_key_is_502_and_never_shown() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = studio_gateway(&mock, "AIzaSyD-wrong-key-99999999", "router:\n  retries: 0\n").await;
    let (status, _, body) = post(&gateway, &ask("hi")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_authentication_failed");
    assert!(body["error"]["message"].as_str().unwrap().contains("API key not valid"), "{body}");
    assert!(!body.to_string().contains("wrong-key"), "{body}");
}

#[tokio::test]
async fn a_safety_block_and_a_prompt_too_long_are_400s_with_their_codes() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = studio_gateway(&mock, KEY, "router:\n  retries: 0\n").await;
    let (status, _, body) = post(&gateway, &ask("Please BLOCK_ME now")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "content_policy_violation");
    assert!(body["error"]["message"].as_str().unwrap().contains("SAFETY"), "{body}");

    // Streamed, the block comes before any chunk: still a real 400, not a broken stream.
    let mut streamed = ask("BLOCK_ME");
    streamed["stream"] = json!(true);
    let (status, _, body) = post(&gateway, &streamed).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "content_policy_violation");

    mock.push_fault(Fault::Status {
        status: 400,
        body: json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "The input token count (1290043) exceeds the maximum number of tokens allowed (1048576)."}}),
    });
    let (status, _, body) = post(&gateway, &ask("a very long prompt")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
}

/// A service account key file for a fresh RSA key, `token_uri` at the mock, written to a
/// temporary file; returns its path and contents.
fn service_account_file(mock: &MockServer) -> (std::path::PathBuf, String) {
    let output = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("the openssl command makes the test's RSA key");
    assert!(output.status.success(), "openssl genpkey failed");
    let json = json!({
        "type": "service_account", "project_id": "my-proj", "private_key_id": "0123abcd",
        "private_key": String::from_utf8(output.stdout).unwrap(),
        "client_email": "switchyard@my-proj.iam.gserviceaccount.com", "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("http://{}/token", mock.addr()),
    })
    .to_string();
    let path = std::env::temp_dir().join(format!(
        "switchyard-vertex-{}-{}.json",
        std::process::id(),
        mock.addr().port()
    ));
    std::fs::write(&path, &json).unwrap();
    (path, json)
}

fn vertex_config(mock: &MockServer, credentials: &str) -> String {
    format!(
        "models:\n  - name: gemini-vertex\n    deployments:\n      - provider: vertex\n        model: gemini-2.5-flash\n        project: my-proj\n        region: europe-west4\n        api_base: http://{}\n{credentials}",
        mock.addr()
    )
}

#[tokio::test]
async fn vertex_gets_a_token_for_its_service_account_and_serves_chats_and_streams() {
    // The key the mock knows is not the token: only a token its /token endpoint issued passes.
    let mock = MockServer::start(mock_config()).await.unwrap();
    let (path, json) = service_account_file(&mock);
    mock.register_service_account(&json).unwrap();
    let gateway =
        Gateway::start(&vertex_config(&mock, &format!("        credentials_file: {}\n", path.display())))
            .await;

    let mut body = ask("hello");
    body["model"] = json!("gemini-vertex");
    let (status, headers, answer) = post(&gateway, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["x-switchyard-deployment"], "vertex/gemini-2.5-flash");
    assert_eq!(answer["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    body["stream"] = json!(true);
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    let requests = mock.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let model = "/v1/projects/my-proj/locations/europe-west4/publishers/google/models/gemini-2.5-flash";
    assert_eq!(
        paths,
        ["/token".to_owned(), format!("{model}:generateContent"), format!("{model}:streamGenerateContent")],
        "one token exchange serves both requests"
    );
    assert_eq!(requests[1].headers["authorization"], "Bearer ya29.mock-1");
    assert_eq!(requests[2].headers["authorization"], "Bearer ya29.mock-1");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn vertex_with_a_refused_access_token_is_502() {
    let mock = MockServer::start(mock_config()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "router:\n  retries: 0\n{}",
        vertex_config(&mock, "        api_key: ya29.not-issued-by-google\n")
    ))
    .await;
    let mut body = ask("hello");
    body["model"] = json!("gemini-vertex");
    let (status, _, answer) = post(&gateway, &body).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["error"]["code"], "upstream_authentication_failed");
    assert!(answer["error"]["message"].as_str().unwrap().contains("UNAUTHENTICATED"), "{answer}");
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.headers["authorization"], "Bearer ya29.not-issued-by-google");
}
