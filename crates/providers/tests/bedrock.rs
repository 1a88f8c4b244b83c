//! The Bedrock adapter, data-first: OpenAI requests → Converse bodies, Converse answers →
//! OpenAI completions, ConverseStream bytes → OpenAI chunks, each against a checked-in
//! fixture in Bedrock's published wire format (`fixtures/bedrock/`); then the adapter itself
//! against the testkit's Bedrock mock, which checks its SigV4 signatures.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{fs, path::PathBuf, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use switchyard_providers::{
    bedrock::{AwsCredentials, Bedrock, BedrockSettings, request, response, stream::EventStreamChunks},
    client::{ClientSettings, build_client},
};
use switchyard_testkit::{AwsKeys, Fault, MockConfig, MockServer};
use switchyard_types::{
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody, UpstreamHeaders},
    openai::ChatCompletionRequest,
};
use tower::ServiceExt;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn fixtures(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bedrock").join(kind)
}

fn read_json(path: &PathBuf) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every `<case>.<input>` file of `kind` with its `<case>.<expected>` partner.
fn cases(kind: &str, input: &str, expected: &str) -> Vec<(String, PathBuf, PathBuf)> {
    let dir = fixtures(kind);
    let mut found: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let case = name.strip_suffix(&format!(".{input}"))?.to_owned();
            Some((case.clone(), dir.join(&name), dir.join(format!("{case}.{expected}"))))
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no fixtures in {}", dir.display());
    found
}

fn chat(body: Value) -> ChatCompletionRequest {
    serde_json::from_value(body).unwrap()
}

// === translation ===

#[test]
fn openai_requests_become_the_converse_bodies_of_the_fixtures() {
    for (case, input, expected) in cases("request", "openai.json", "converse.json") {
        let sent = request::converse_body(&chat(read_json(&input)), request::DEFAULT_MAX_TOKENS).unwrap();
        let sent: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(sent, read_json(&expected), "case {case}");
    }
}

#[test]
fn requests_bedrock_cannot_serve_are_refused_with_the_parameter_at_fault() {
    let refused = |body: Value| request::converse_body(&chat(body), 4096).unwrap_err();
    let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});

    let link =
        refused(user(json!([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])));
    assert_eq!(link.class, ErrorClass::BadRequest);
    assert!(link.message.contains("bytes, not URLs"), "{}", link.message);
    assert_eq!(link.param.as_deref(), Some("messages[0].content[0]"));

    let tiff =
        refused(user(json!([{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}])));
    assert!(tiff.message.contains("image/tiff"), "{}", tiff.message);

    let mut two = user(json!("hi"));
    two["n"] = json!(2);
    assert_eq!(refused(two).param.as_deref(), Some("n"));

    let mut schema = user(json!("hi"));
    schema["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}});
    assert_eq!(refused(schema).param.as_deref(), Some("response_format"));

    let bad_arguments = json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}
    ]});
    assert_eq!(refused(bad_arguments).param.as_deref(), Some("messages[1].tool_calls[0]"));

    let audio = user(json!([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]));
    assert_eq!(refused(audio).class, ErrorClass::BadRequest);
}

#[test]
fn tool_choice_none_keeps_the_tools_and_drops_the_choice_and_the_deployment_default_applies() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
                      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
    let sent: Value = serde_json::from_slice(&request::converse_body(&chat(body), 1000).unwrap()).unwrap();
    assert_eq!(
        sent["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]})
    );
    assert_eq!(sent["inferenceConfig"], json!({"maxTokens": 1000}));
}

#[test]
fn converse_answers_become_the_openai_completions_of_the_fixtures() {
    for (case, input, expected) in cases("response", "converse.json", "completion.json") {
        let body = fs::read(&input).unwrap();
        let completion = response::completion(&body, "chatcmpl-test".into(), MODEL, 1_700_000_000).unwrap();
        assert_eq!(serde_json::to_value(&completion).unwrap(), read_json(&expected), "case {case}");
    }
}

/// Decodes a fixture's bytes handed over in pieces of `piece` bytes; errors become
/// `{"error": "<class>"}`.
async fn decode(bytes: Vec<u8>, piece: usize) -> Vec<Value> {
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        bytes.chunks(piece).map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    let chunks = EventStreamChunks::new(
        futures_util::stream::iter(pieces),
        "bedrock/test".into(),
        "chatcmpl-test".into(),
        MODEL.into(),
        1_700_000_000,
    );
    chunks
        .map(|item| match item {
            Ok(chunk) => serde_json::from_slice(chunk.raw()).unwrap(),
            Err(err) => json!({"error": err.class.as_str()}),
        })
        .collect()
        .await
}

#[tokio::test]
async fn converse_streams_become_the_openai_chunks_of_the_fixtures_however_the_bytes_are_cut() {
    for (case, input, expected) in cases("stream", "eventstream", "chunks.json") {
        let bytes = fs::read(&input).unwrap();
        let expected = read_json(&expected);
        for piece in [bytes.len(), 1, 7, 100] {
            let chunks = decode(bytes.clone(), piece).await;
            assert_eq!(Value::Array(chunks), expected, "case {case}, pieces of {piece} bytes");
        }
    }
}

#[tokio::test]
async fn a_corrupt_frame_ends_the_stream_with_an_error() {
    let mut bytes = fs::read(fixtures("stream").join("text.eventstream")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the last frame's checksum
    let chunks = decode(bytes, 64).await;
    assert_eq!(chunks.last(), Some(&json!({"error": "upstream_server_error"})));
    assert!(
        chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"),
        "frames before it went through"
    );
}

// === the adapter against the mock ===

fn keys() -> AwsKeys {
    AwsKeys {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    }
}

fn adapter(mock: &MockServer, secret: &str, token: Option<&str>, model: Option<&str>) -> Bedrock {
    let settings = BedrockSettings {
        label: "bedrock/test".into(),
        region: "us-east-1".into(),
        api_base: Some(mock.url().trim_end_matches("/v1").to_owned()),
        credentials: AwsCredentials {
            access_key_id: keys().access_key_id,
            secret_access_key: secret.into(),
            session_token: token.map(str::to_owned),
        },
        model: model.map(str::to_owned),
        default_max_tokens: None,
        headers: HeaderMap::from_iter([(
            http::HeaderName::from_static("x-team"),
            HeaderValue::from_static("search"),
        )]),
    };
    Bedrock::new(build_client(&ClientSettings::default()).unwrap(), settings).unwrap()
}

fn signed_mock(token: Option<&str>) -> MockConfig {
    MockConfig {
        aws: Some(AwsKeys { session_token: token.map(str::to_owned), ..keys() }),
        ..MockConfig::default()
    }
}

async fn send(adapter: &Bedrock, body: Value) -> Result<LlmResponse, LlmError> {
    let mut request = LlmRequest::new(Operation::chat(chat(body)));
    let mut extra = HeaderMap::new();
    extra.insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    request.extensions.insert(UpstreamHeaders(extra));
    adapter.clone().oneshot(request).await
}

fn body(stream: bool) -> Value {
    json!({"model": "claude", "stream": stream, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn a_signed_request_is_accepted_and_answered_in_openai_shape() {
    let mock = MockServer::start(signed_mock(None)).await.unwrap();
    let response =
        send(&adapter(&mock, &keys().secret_access_key, None, Some(MODEL)), body(false)).await.unwrap();
    let ResponseBody::Chat(completion) = response.body else { panic!("a complete answer") };
    let completion: Value = serde_json::from_slice(completion.raw()).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], synth_text(20));
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["model"], MODEL);
    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-mock-request-"), "{completion}");
    assert_eq!(completion["usage"]["completion_tokens"], 20);

    let sent = mock.requests().pop().unwrap();
    assert_eq!(
        sent.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        "the model id is one path segment"
    );
    let authorization = sent.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"),
        "{authorization}"
    );
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"), "{authorization}");
    let signed = authorization.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
    assert_eq!(signed, "content-type;host;traceparent;x-amz-date;x-team", "every header we set is signed");
    assert_eq!(sent.body["system"], json!([{"text": "be brief"}]));
}

fn synth_text(tokens: usize) -> String {
    (0..tokens).map(|i| format!("tok{i} ")).collect()
}

#[tokio::test]
async fn a_stream_is_decoded_from_real_event_stream_frames() {
    let mock =
        MockServer::start(MockConfig { chunks: 5, ..signed_mock(Some("session-token-1")) }).await.unwrap();
    let adapter = adapter(&mock, &keys().secret_access_key, Some("session-token-1"), None);
    let response = send(&adapter, body(true)).await.unwrap();
    let ResponseBody::ChatStream(stream) = response.body else { panic!("a stream") };
    let chunks: Vec<Value> =
        stream.map(|c| serde_json::from_slice(c.unwrap().raw()).unwrap()).collect().await;
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, synth_text(5));
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().unwrap();
    assert_eq!((last["choices"].clone(), last["usage"]["completion_tokens"].clone()), (json!([]), json!(5)));
    assert_eq!(chunks[0]["model"], "claude", "without a configured model the request's goes");

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/model/claude/converse-stream");
    assert_eq!(sent.headers["x-amz-security-token"], "session-token-1");
    assert_eq!(sent.headers["accept"], "application/vnd.amazon.eventstream");
}

#[tokio::test]
async fn tools_come_back_as_openai_tool_calls_streamed_or_not() {
    let mock = MockServer::start(signed_mock(None)).await.unwrap();
    let adapter = adapter(&mock, &keys().secret_access_key, None, Some(MODEL));
    let with_tools = |stream: bool| {
        json!({"model": "claude", "stream": stream, "messages": [{"role": "user", "content": "weather in Paris?"}],
               "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})
    };
    let ResponseBody::Chat(completion) = send(&adapter, with_tools(false)).await.unwrap().body else {
        panic!()
    };
    let completion: Value = serde_json::from_slice(completion.raw()).unwrap();
    let call = &completion["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"], json!({"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}));
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");

    let ResponseBody::ChatStream(stream) = send(&adapter, with_tools(true)).await.unwrap().body else {
        panic!()
    };
    let chunks: Vec<Value> =
        stream.map(|c| serde_json::from_slice(c.unwrap().raw()).unwrap()).collect().await;
    let calls: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(calls[0]["id"], "tooluse_mock_1");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    assert_eq!(arguments, "{\"location\":\"Paris\"}");
}

#[tokio::test]
async fn a_wrong_secret_or_token_is_refused_as_the_deployments_credentials() {
    let mock = MockServer::start(signed_mock(Some("right-token"))).await.unwrap();
    for (secret, token, kind) in [
        ("not-the-secret", Some("right-token"), "InvalidSignatureException"),
        (keys().secret_access_key.as_str(), Some("wrong-token"), "UnrecognizedClientException"),
        (keys().secret_access_key.as_str(), None, "UnrecognizedClientException"),
    ] {
        let error = send(&adapter(&mock, secret, token, Some(MODEL)), body(false)).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::ProviderAuthentication, "{error}");
        assert_eq!(error.upstream_status, Some(403));
        assert!(error.message.contains(kind), "{}", error.message);
        assert!(!error.message.contains("wJalrXUtnFEMI"), "no secret in {}", error.message);
    }
    assert!(
        send(&adapter(&mock, &keys().secret_access_key, Some("right-token"), Some(MODEL)), body(false))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bedrock_errors_map_to_the_classes_the_router_acts_on() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let adapter = adapter(&mock, "secret", None, Some(MODEL));
    let cases = [
        (Fault::RateLimited { retry_after_secs: 3 }, ErrorClass::RateLimited),
        (
            Fault::Status { status: 400, body: json!({"message": "Input is too long for requested model."}) },
            ErrorClass::ContextLengthExceeded,
        ),
        (
            Fault::Status {
                status: 400,
                body: json!({"message": "The provided model identifier is invalid."}),
            },
            ErrorClass::BadRequest,
        ),
        (
            Fault::Status {
                status: 403,
                body: json!({"message": "You don't have access to the model with the specified model ID."}),
            },
            ErrorClass::ProviderAuthentication,
        ),
        (
            Fault::Status {
                status: 503,
                body: json!({"message": "Bedrock is unable to process your request."}),
            },
            ErrorClass::Overloaded,
        ),
        (
            Fault::Status {
                status: 429,
                body: json!({"__type": "ModelNotReadyException", "message": "Model is not ready"}),
            },
            ErrorClass::Overloaded,
        ),
        (
            Fault::Status {
                status: 408,
                body: json!({"message": "Model has timed out in processing the request."}),
            },
            ErrorClass::Timeout,
        ),
        (Fault::Status { status: 404, body: json!({"message": "Model not found"}) }, ErrorClass::NotFound),
        (
            Fault::Status { status: 500, body: json!({"message": "Internal error"}) },
            ErrorClass::UpstreamServer,
        ),
    ];
    for (fault, class) in cases {
        mock.push_fault(fault.clone());
        let error = send(&adapter, body(false)).await.unwrap_err();
        assert_eq!(error.class, class, "{fault:?}: {error}");
        if class == ErrorClass::RateLimited {
            assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
        }
    }
}

#[tokio::test]
async fn embeddings_are_sent_elsewhere() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let request = LlmRequest::new(Operation::embeddings(
        serde_json::from_value(json!({"model": "titan", "input": "hi"})).unwrap(),
    ));
    let error = adapter(&mock, "secret", None, Some(MODEL)).oneshot(request).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::BadRequest);
    assert!(error.message.contains("embeddings"), "{}", error.message);
    assert_eq!(mock.stats().requests, 0);
}
