//! The Gemini adapter, data first: every fixture under `tests/fixtures/gemini/` is a payload in
//! Gemini's real wire format (from Google's documentation and recorded exchanges) beside the
//! OpenAI document it must translate to or from.
//!
//! - `request/NAME.openai.json` (what a client sends) → `request/NAME.gemini.json` (the body
//!   Gemini receives);
//! - `response/NAME.gemini.json` (Gemini's answer) → `response/NAME.openai.json` (the
//!   completion, or `{"error": {"class", "message_contains"}}`);
//! - `stream/NAME.sse` (the bytes Gemini streams, fed in small pieces) → `stream/NAME.chunks.json`
//!   (the chunks, an error last when the stream fails);
//! - `errors/NAME.json`: a status and Google's error body, answered by the mock, and the error
//!   the adapter makes of it.
//!
//! Generated values are normalised before comparing: `created` becomes 0 and generated tool
//! call ids `call_<generated>`.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{fs, path::PathBuf, sync::Arc};

use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use serde_json::{Value, json};
use switchyard_providers::{
    client::{ClientSettings, build_client},
    gemini::{self, Gemini, GeminiChunks, GeminiSettings, Platform, ServiceAccountKey, VertexCredentials},
};
use switchyard_testkit::{Fault, MockConfig, MockServer};
use switchyard_types::{
    llm::{LlmError, LlmRequest, Operation, ResponseBody, UpstreamHeaders},
    openai::{ChatCompletionRequest, EmbeddingsRequest},
};
use tower::ServiceExt;

fn fixtures(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemini").join(kind)
}

/// `(name, path)` of the fixtures in `kind` whose file name ends in `suffix`, sorted.
fn cases(kind: &str, suffix: &str) -> Vec<(String, PathBuf)> {
    let mut cases: Vec<_> = fs::read_dir(fixtures(kind))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.strip_suffix(suffix)?.to_owned();
            Some((name, path))
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no {kind}/*{suffix} fixtures");
    cases
}

fn read_json(path: &PathBuf) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `created` → 0, generated tool-call ids → `call_<generated>`, at any depth.
fn normalise(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.contains_key("created") {
                object.insert("created".to_owned(), json!(0));
            }
            if let Some(Value::Array(calls)) = object.get_mut("tool_calls") {
                for call in calls {
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        assert!(id.starts_with("call_") && id.len() == 29, "a generated id: {id}");
                        call["id"] = json!("call_<generated>");
                    }
                }
            }
            object.values_mut().for_each(normalise);
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// `{"error": {"class", "message"}}` for an error, for comparing with an expectation.
fn check_error(case: &str, error: &LlmError, expected: &Value) {
    let expected = &expected["error"];
    assert_eq!(error.class.as_str(), expected["class"], "{case}: {error}");
    for needle in expected["message_contains"].as_array().unwrap() {
        assert!(
            error.message.contains(needle.as_str().unwrap()),
            "{case}: `{}` lacks {needle}",
            error.message
        );
    }
}

#[test]
fn requests_translate_to_gemini() {
    for (name, path) in cases("request", ".openai.json") {
        let chat: ChatCompletionRequest = serde_json::from_value(read_json(&path)).unwrap();
        let sent: Value = serde_json::from_slice(&gemini::request_body(&chat).unwrap()).unwrap();
        let expected = read_json(&fixtures("request").join(format!("{name}.gemini.json")));
        assert_eq!(sent, expected, "request/{name}");
    }
}

#[test]
fn responses_translate_to_openai() {
    for (name, path) in cases("response", ".gemini.json") {
        let body = fs::read(&path).unwrap();
        let expected = read_json(&fixtures("response").join(format!("{name}.openai.json")));
        match gemini::completion(&body, "gemini/test", "requested-model") {
            Ok(completion) => {
                let mut got: Value = serde_json::from_slice(completion.raw()).unwrap();
                normalise(&mut got);
                assert_eq!(got, expected, "response/{name}");
                // The facts the gateway reads without parsing all of it agree.
                assert!(completion.has_finish_reason(), "response/{name}");
                assert_eq!(completion.usage().map(|u| u.total()), got["usage"]["total_tokens"].as_u64());
            }
            Err(error) => check_error(&format!("response/{name}"), &error, &expected),
        }
    }
}

#[tokio::test]
async fn streams_translate_to_openai_chunks_as_bytes_arrive() {
    for (name, path) in cases("stream", ".sse") {
        let raw = fs::read(&path).unwrap();
        // Seven-byte pieces: events split anywhere, inside UTF-8 sequences and CRLFs too.
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            raw.chunks(7).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
        let chunks = GeminiChunks::new(
            futures_util::stream::iter(pieces),
            Arc::from("gemini/test"),
            "requested-model",
        );
        let items: Vec<_> = chunks.collect().await;
        let expected = read_json(&fixtures("stream").join(format!("{name}.chunks.json")));
        let expected = expected.as_array().unwrap();
        assert_eq!(items.len(), expected.len(), "stream/{name}: {items:?}");
        for (at, (item, want)) in items.iter().zip(expected).enumerate() {
            match item {
                Ok(chunk) => {
                    let mut got: Value = serde_json::from_slice(chunk.raw()).unwrap();
                    normalise(&mut got);
                    assert_eq!(&got, want, "stream/{name} chunk {at}");
                }
                Err(error) => check_error(&format!("stream/{name} item {at}"), error, want),
            }
        }
    }
}

fn client() -> reqwest::Client {
    build_client(&ClientSettings::default()).unwrap()
}

fn studio(mock: &MockServer, key: &str) -> Gemini {
    let settings = GeminiSettings {
        label: "gemini/gemini-2.5-flash".into(),
        platform: Platform::AiStudio { api_base: format!("http://{}", mock.addr()), api_key: key.into() },
        model: Some("gemini-2.5-flash".into()),
        headers: HeaderMap::new(),
    };
    Gemini::new(client(), settings).unwrap()
}

fn chat(body: Value) -> LlmRequest {
    LlmRequest::new(Operation::chat(serde_json::from_value(body).unwrap()))
}

fn hello(stream: bool) -> LlmRequest {
    chat(json!({"model": "alias", "stream": stream, "messages": [{"role": "user", "content": "hello"}]}))
}

#[tokio::test]
async fn errors_are_classified_from_googles_envelope() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    for (name, path) in cases("errors", ".json") {
        let case = read_json(&path);
        mock.push_fault(Fault::Status {
            status: case["status"].as_u64().unwrap() as u16,
            body: case["body"].clone(),
        });
        let error = studio(&mock, "AIza-key-0123456789").oneshot(hello(false)).await.unwrap_err();
        let expected = &case["expected"];
        check_error(&format!("errors/{name}"), &error, &json!({"error": expected}));
        assert_eq!(error.upstream_status, case["status"].as_u64().map(|s| s as u16), "errors/{name}");
        let wait = error.retry_after.map(|d| d.as_millis() as u64);
        assert_eq!(wait, expected.get("retry_after_ms").and_then(Value::as_u64), "errors/{name}");
        assert_eq!(error.code.as_deref(), expected.get("code").and_then(Value::as_str), "errors/{name}");
    }
}

#[tokio::test]
async fn ai_studio_requests_carry_the_key_header_the_model_path_and_layer_headers() {
    let mock = MockServer::start(MockConfig {
        api_key: Some("AIza-key-0123456789".into()),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let mut request = hello(false);
    let mut asked = HeaderMap::new();
    asked.insert(
        "traceparent",
        http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    request.extensions.insert(UpstreamHeaders(asked));
    let response = studio(&mock, "AIza-key-0123456789").oneshot(request).await.unwrap();
    let ResponseBody::Chat(completion) = response.body else { panic!("a complete answer") };
    let completion: Value = serde_json::from_slice(completion.raw()).unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10 tok11 tok12 tok13 tok14 tok15 tok16 tok17 tok18 tok19 "
    );
    assert_eq!(completion["model"], "gemini-2.5-flash");
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.headers["x-goog-api-key"], "AIza-key-0123456789");
    assert!(sent.headers.contains_key("traceparent"));
    assert_eq!(sent.body, json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}));

    let refused = studio(&mock, "AIza-wrong-key-000").oneshot(hello(false)).await.unwrap_err();
    assert_eq!(refused.class.as_str(), "provider_authentication", "{refused}");
}

#[tokio::test]
async fn a_stream_from_the_mock_ends_with_finish_then_usage() {
    let mock = MockServer::start(MockConfig { chunks: 4, ..MockConfig::default() }).await.unwrap();
    let response = studio(&mock, "k").oneshot(hello(true)).await.unwrap();
    let ResponseBody::ChatStream(stream) = response.body else { panic!("a stream") };
    let chunks: Vec<Value> =
        stream.map(|c| serde_json::from_slice(c.unwrap().raw()).unwrap()).collect().await;
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 ");
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 4);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(sent.query.as_deref(), Some("alt=sse"));
}

#[tokio::test]
async fn a_tool_call_round_trip_returns_the_thought_signature() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let adapter = studio(&mock, "k");
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let ask =
        json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let response = adapter.clone().oneshot(chat(ask)).await.unwrap();
    let ResponseBody::Chat(completion) = response.body else { panic!("a complete answer") };
    let completion: Value = serde_json::from_slice(completion.raw()).unwrap();
    let message = &completion["choices"][0]["message"];
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        message["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"})
    );

    let id = message["tool_calls"][0]["id"].clone();
    let follow_up = json!({"model": "m", "tools": tools, "messages": [
        {"role": "user", "content": "weather in Paris?"}, message.clone(),
        {"role": "tool", "tool_call_id": id, "content": "{\"celsius\": 18}"}]});
    adapter.oneshot(chat(follow_up)).await.unwrap();
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.body["contents"][1]["parts"][0]["thoughtSignature"], "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==");
    assert_eq!(
        sent.body["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"celsius": 18}}})
    );
}

#[tokio::test]
async fn embeddings_go_to_batch_embed_contents() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let adapter = studio(&mock, "k");
    let request = EmbeddingsRequest {
        model: "alias".into(),
        input: json!(["one", "two"]),
        extra: serde_json::from_value(json!({"dimensions": 4})).unwrap(),
    };
    let response = adapter.oneshot(LlmRequest::new(Operation::embeddings(request))).await.unwrap();
    let ResponseBody::Embeddings(list) = response.body else { panic!("embeddings") };
    let list: Value = serde_json::from_slice(list.raw()).unwrap();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["data"][1]["embedding"].as_array().map(Vec::len), Some(4));
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:batchEmbedContents");
    assert_eq!(
        sent.body["requests"][0],
        json!({"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "one"}]}, "outputDimensionality": 4})
    );
}

/// A key file for a fresh RSA key (made by `openssl`, as a developer would with
/// `gcloud iam service-accounts keys create`), whose `token_uri` is the mock's.
fn key_file(mock: &MockServer) -> String {
    let output = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("the openssl command makes the test's RSA key");
    assert!(output.status.success());
    json!({"type": "service_account", "project_id": "my-proj", "private_key_id": "k1",
           "private_key": String::from_utf8(output.stdout).unwrap(),
           "client_email": "gateway@my-proj.iam.gserviceaccount.com",
           "token_uri": format!("http://{}/token", mock.addr())})
    .to_string()
}

#[tokio::test]
async fn vertex_signs_a_jwt_exchanges_it_and_sends_the_token() {
    let mock =
        MockServer::start(MockConfig { api_key: Some("not-the-token".into()), ..MockConfig::default() })
            .await
            .unwrap();
    let json = key_file(&mock);
    mock.register_service_account(&json).unwrap();
    let settings = GeminiSettings {
        label: "vertex/gemini-2.5-flash".into(),
        platform: Platform::Vertex {
            api_base: Some(format!("http://{}", mock.addr())),
            project: "my-proj".into(),
            region: "us-central1".into(),
            credentials: VertexCredentials::ServiceAccount(Box::new(
                ServiceAccountKey::from_json(&json).unwrap(),
            )),
        },
        model: Some("gemini-2.5-flash".into()),
        headers: HeaderMap::new(),
    };
    let adapter = Gemini::new(client(), settings).unwrap();
    for _ in 0..3 {
        adapter.clone().oneshot(hello(false)).await.unwrap();
    }
    let requests = mock.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let generate = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent";
    assert_eq!(paths, ["/token", generate, generate, generate], "one exchange, then the cached token");
    assert_eq!(requests[1].headers["authorization"], "Bearer ya29.mock-1");
    assert!(!requests[1].headers.contains_key("x-goog-api-key"));
}
