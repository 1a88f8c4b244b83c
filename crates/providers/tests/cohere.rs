//! The Cohere adapter, data first: recorded payloads in Cohere's v2 wire format (from its API
//! reference and guides) under `tests/fixtures/cohere/`, translated and compared with the
//! checked-in expectation.
//!
//! - `request/NAME.openai.json` (the canonical request) → `request/NAME.cohere.json`;
//! - `response/NAME.cohere.json` (Cohere's answer) → `response/NAME.openai.json`;
//! - `stream/NAME.sse` (the bytes Cohere streams) → `stream/NAME.chunks.json`;
//! - `embed/*`: embeddings both ways; `errors.json`: error answers → classes.
//!
//! `created` is the time of translation; it is checked to be now-ish and compared as 0.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{fs, path::PathBuf, time::Duration};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, stream};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use switchyard_providers::{
    client::{ClientSettings, build_client},
    cohere::{self, Cohere, CohereChunks, CohereSettings},
};
use switchyard_testkit::{Fault, MockConfig, MockServer};
use switchyard_types::{
    llm::{ErrorClass, LlmError, LlmRequest, Operation, ResponseBody, UpstreamHeaders},
    openai::{ChatCompletionRequest, EmbeddingsRequest},
};
use tower::ServiceExt;

const MODEL: &str = "command-a-03-2025";
const LABEL: &str = "cohere/command-a-03-2025";

fn fixtures(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cohere").join(dir)
}

fn read_json(path: &PathBuf) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture names in `dir` whose files end in `suffix`, sorted.
fn cases(dir: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures(dir))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(suffix).map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// `created` is the translation's clock: now-ish, then compared as 0.
fn without_clock(mut value: Value) -> Value {
    let created = value["created"].as_u64().unwrap_or_default();
    assert!(created > 1_700_000_000, "created is a Unix time: {value}");
    value["created"] = json!(0);
    value
}

fn chat(body: Value) -> ChatCompletionRequest {
    serde_json::from_value(body).unwrap()
}

// === requests ===

#[test]
fn requests_translate_to_coheres_v2_body() {
    let names = cases("request", ".openai.json");
    assert!(names.len() >= 10, "every request fixture is found: {names:?}");
    for name in names {
        let request = chat(read_json(&fixtures("request").join(format!("{name}.openai.json"))));
        let expected = read_json(&fixtures("request").join(format!("{name}.cohere.json")));
        let sent = cohere::chat_request_body(&request, MODEL).unwrap_or_else(|e| panic!("{name}: {e}"));
        let sent: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(sent, expected, "request fixture `{name}`");
    }
}

#[test]
fn what_cohere_cannot_express_is_refused_before_sending_with_the_field_named() {
    let user = json!([{"role": "user", "content": "hi"}]);
    let refused = [
        (json!({"messages": user, "n": 2}), "n"),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]}),
            "messages",
        ),
        (json!({"messages": [{"role": "function", "name": "f", "content": "42"}]}), "messages"),
        (
            json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "messages",
        ),
        (json!({"messages": [{"role": "tool", "content": "42"}]}), "messages"),
        (json!({"messages": user, "tools": [{"type": "web_search_preview"}]}), "tools"),
        (
            json!({"messages": user, "tools": [{"type": "function", "function": {"name": "a"}}],
                   "tool_choice": {"type": "function", "function": {"name": "b"}}}),
            "tool_choice",
        ),
        (json!({"messages": user, "tool_choice": "sometimes"}), "tool_choice"),
        (json!({"messages": user, "response_format": {"type": "grammar"}}), "response_format"),
        (json!({"messages": user, "stop": 7}), "stop"),
        (json!({"messages": user, "max_tokens": -1}), "max_tokens"),
    ];
    for (mut body, param) in refused {
        body["model"] = json!("m");
        let error = cohere::chat_request_body(&chat(body.clone()), MODEL).expect_err(&body.to_string());
        assert_eq!(error.class, ErrorClass::BadRequest, "{body}");
        assert_eq!(error.param.as_deref(), Some(param), "{body}: {}", error.message);
        assert!(error.message.len() > 20, "the message says what to do: {}", error.message);
    }
}

#[test]
fn tool_choice_none_without_tools_is_left_out() {
    let request =
        chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "none"}));
    let sent: Value = serde_json::from_slice(&cohere::chat_request_body(&request, MODEL).unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": false})
    );
}

// === responses ===

#[test]
fn answers_translate_to_openai_completions() {
    let names = cases("response", ".cohere.json");
    assert!(names.len() >= 6, "every response fixture is found: {names:?}");
    for name in names {
        let body = fs::read(fixtures("response").join(format!("{name}.cohere.json"))).unwrap();
        let expected = read_json(&fixtures("response").join(format!("{name}.openai.json")));
        let completion =
            cohere::chat_completion(&body, MODEL, LABEL).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual = without_clock(serde_json::from_slice(completion.raw()).unwrap());
        assert_eq!(actual, expected, "response fixture `{name}`");
        // The facts the gateway bills and routes by are read from the translated bytes.
        assert_eq!(completion.usage().map(|u| u.total()), expected["usage"]["total_tokens"].as_u64());
        assert!(completion.has_finish_reason());
    }
}

#[test]
fn a_generation_that_failed_or_timed_out_is_an_error_not_an_answer() {
    for (reason, class) in [("ERROR", ErrorClass::UpstreamServer), ("TIMEOUT", ErrorClass::Timeout)] {
        let body = json!({"id": "x", "finish_reason": reason,
                          "message": {"role": "assistant", "content": [{"type": "text", "text": "half"}]}});
        let error = cohere::chat_completion(body.to_string().as_bytes(), MODEL, LABEL).unwrap_err();
        assert_eq!(error.class, class, "{reason}");
        assert!(error.message.contains(LABEL), "{}", error.message);
    }
    let error = cohere::chat_completion(b"<html>bad gateway</html>", MODEL, LABEL).unwrap_err();
    assert_eq!(error.class, ErrorClass::UpstreamServer);
}

// === streams ===

/// Translates a recorded stream fed in pieces of `piece` bytes.
async fn translate_stream(raw: &[u8], piece: usize) -> Vec<Result<Value, LlmError>> {
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        raw.chunks(piece).map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    CohereChunks::new(stream::iter(pieces), MODEL.into(), LABEL.into())
        .map(|chunk| chunk.map(|c| serde_json::from_slice(c.raw()).unwrap()))
        .collect()
        .await
}

#[tokio::test]
async fn streams_translate_to_openai_chunks_however_the_bytes_are_split() {
    let names = cases("stream", ".sse");
    assert!(names.len() >= 4, "every stream fixture is found: {names:?}");
    for name in names {
        let raw = fs::read(fixtures("stream").join(format!("{name}.sse"))).unwrap();
        let expected = read_json(&fixtures("stream").join(format!("{name}.chunks.json")));
        for piece in [raw.len(), 64, 7, 1] {
            let chunks: Vec<Value> = translate_stream(&raw, piece)
                .await
                .into_iter()
                .map(|c| without_clock(c.unwrap_or_else(|e| panic!("{name}: {e}"))))
                .collect();
            assert_eq!(Value::Array(chunks), expected, "stream fixture `{name}` in pieces of {piece} bytes");
        }
    }
}

#[tokio::test]
async fn a_chunk_is_yielded_as_soon_as_its_event_is_complete() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let bytes = stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut chunks = CohereChunks::new(bytes, MODEL.into(), LABEL.into());
    tx.send(Ok(Bytes::from_static(b"event: message-start\ndata: {\"id\":\"m1\",\"type\":\"message-start\"}\n\nevent: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Hel"))).unwrap();
    let first = chunks.next().await.unwrap().unwrap();
    assert!(std::str::from_utf8(first.raw()).unwrap().contains("\"role\":\"assistant\""));
    assert!(chunks.next().now_or_never().is_none(), "half an event yields nothing yet");
    tx.send(Ok(Bytes::from_static(b"lo\"}}}}\n\n"))).unwrap();
    let second = chunks.next().await.unwrap().unwrap();
    assert!(std::str::from_utf8(second.raw()).unwrap().contains("\"content\":\"Hello\""));
}

#[tokio::test]
async fn a_stream_that_breaks_off_fails_or_ends_without_message_end_is_an_error() {
    let text = fs::read(fixtures("stream").join("text.sse")).unwrap();
    let cut = text.len() - 200;
    let items = translate_stream(&text[..cut], 64).await;
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.class, ErrorClass::UpstreamServer);
    assert!(last.message.contains("before the answer was complete"), "{}", last.message);
    assert!(items[..items.len() - 1].iter().all(Result::is_ok), "what arrived before the cut went out");

    let failed = b"event: message-start\ndata: {\"id\":\"m\",\"type\":\"message-start\"}\n\nevent: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\",\"error\":\"the model crashed\"}}\n\n";
    let items = translate_stream(failed, 1000).await;
    let error = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(error.class, ErrorClass::UpstreamServer);
    assert!(error.message.contains("the model crashed"), "{}", error.message);
    assert!(
        items.iter().all(|i| i.as_ref().map_or(true, |c| c["choices"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["finish_reason"].is_null()))),),
        "no finish chunk for a failed generation"
    );

    let timeout =
        b"event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"TIMEOUT\"}}\n\n";
    assert_eq!(
        translate_stream(timeout, 1000).await.last().unwrap().as_ref().unwrap_err().class,
        ErrorClass::Timeout
    );

    let garbage = b"event: content-delta\ndata: {not json\n\n";
    let error = translate_stream(garbage, 1000).await.pop().unwrap().unwrap_err();
    assert!(error.message.contains("not a Cohere v2 stream event"), "{}", error.message);

    let error_object = b"data: {\"message\":\"internal server error\"}\n\n";
    let error = translate_stream(error_object, 1000).await.pop().unwrap().unwrap_err();
    assert!(error.message.contains("internal server error"), "{}", error.message);
}

// === embeddings ===

#[test]
fn embeddings_translate_both_ways() {
    for name in cases("embed", ".openai.json").into_iter().filter(|n| !n.starts_with("answer")) {
        let request: EmbeddingsRequest =
            serde_json::from_value(read_json(&fixtures("embed").join(format!("{name}.openai.json"))))
                .unwrap();
        let expected = read_json(&fixtures("embed").join(format!("{name}.cohere.json")));
        let sent: Value =
            serde_json::from_slice(&cohere::embed_request_body(&request, "embed-v4.0").unwrap()).unwrap();
        assert_eq!(sent, expected, "embed fixture `{name}`");
    }
    let answer = fs::read(fixtures("embed").join("answer.cohere.json")).unwrap();
    for (format, expected) in [("float", "answer.openai.json"), ("base64", "answer.base64.openai.json")] {
        let request: EmbeddingsRequest = serde_json::from_value(
            json!({"model": "e", "input": ["hello", "goodbye"], "encoding_format": format}),
        )
        .unwrap();
        let list = cohere::embeddings(&answer, &request, "embed-v4.0", LABEL).unwrap();
        let actual: Value = serde_json::from_slice(list.raw()).unwrap();
        assert_eq!(actual, read_json(&fixtures("embed").join(expected)), "{format}");
        assert_eq!(list.usage().map(|u| u.input), Some(2));
    }
    let tokens: EmbeddingsRequest =
        serde_json::from_value(json!({"model": "e", "input": [[1, 2, 3]]})).unwrap();
    let error = cohere::embed_request_body(&tokens, "embed-v4.0").unwrap_err();
    assert_eq!((error.class, error.param.as_deref()), (ErrorClass::BadRequest, Some("input")));
}

// === errors ===

#[test]
fn error_answers_are_classified_and_keep_coheres_message_without_the_key() {
    let cases = read_json(&fixtures("").join("errors.json"));
    for case in cases.as_array().unwrap() {
        let status = StatusCode::from_u16(case["status"].as_u64().unwrap() as u16).unwrap();
        let mut headers = HeaderMap::new();
        if let Some(retry) = case["retry_after"].as_str() {
            headers.insert("retry-after", HeaderValue::from_str(retry).unwrap());
        }
        let body = case["body"].to_string();
        let key = case["redacted"].as_str();
        let error = cohere::classify_error(status, &headers, body.as_bytes(), key, LABEL);
        assert_eq!(error.class.as_str(), case["class"], "{case}");
        assert_eq!(error.upstream_status, Some(status.as_u16()));
        assert_eq!(error.retry_after, case["retry_after_secs"].as_u64().map(Duration::from_secs), "{case}");
        match key {
            Some(key) => assert!(
                !error.message.contains(key) && error.message.contains("<redacted>"),
                "{}",
                error.message
            ),
            None => assert!(
                error.message.contains(case["body"]["message"].as_str().unwrap()),
                "{}",
                error.message
            ),
        }
    }
}

// === the adapter against the testkit's Cohere mock ===

fn adapter(mock: &MockServer, key: &str) -> Cohere {
    let client = build_client(&ClientSettings::default()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-team", HeaderValue::from_static("search"));
    Cohere::new(
        client,
        CohereSettings {
            label: LABEL.into(),
            // A trailing `/v2`, as some clients configure it, is accepted.
            api_base: format!("http://{}/v2/", mock.addr()),
            api_key: Some(key.into()),
            model: Some(MODEL.into()),
            headers,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_adapter_sends_to_v2_chat_with_bearer_auth_and_the_headers_layers_ask_for() {
    let mock =
        MockServer::start(MockConfig { api_key: Some("co-key".into()), chunks: 3, ..MockConfig::default() })
            .await
            .unwrap();
    let mut request = LlmRequest::new(Operation::chat(chat(
        json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]}),
    )));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut asked = HeaderMap::new();
    asked.insert("traceparent", HeaderValue::from_static(traceparent));
    request.extensions.insert(UpstreamHeaders(asked));
    let response = adapter(&mock, "co-key").oneshot(request).await.unwrap();
    let ResponseBody::Chat(completion) = response.body else { panic!("a whole answer") };
    let completion: Value = serde_json::from_slice(completion.raw()).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
    assert_eq!(completion["model"], MODEL);
    assert_eq!(&*response.served_by.unwrap(), LABEL);

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(sent.headers["authorization"], "Bearer co-key");
    assert_eq!(sent.headers["traceparent"], traceparent);
    assert_eq!(sent.headers["x-team"], "search");
    assert_eq!(sent.headers["x-client-name"], "switchyard");
    assert_eq!(
        sent.body,
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": false})
    );
}

#[tokio::test]
async fn a_streamed_chat_ends_with_the_usage_chunk_and_a_rejected_key_is_ours() {
    let mock =
        MockServer::start(MockConfig { api_key: Some("co-key".into()), chunks: 4, ..MockConfig::default() })
            .await
            .unwrap();
    let body =
        chat(json!({"model": "alias", "stream": true, "messages": [{"role": "user", "content": "count"}]}));
    let response =
        adapter(&mock, "co-key").oneshot(LlmRequest::new(Operation::chat(body.clone()))).await.unwrap();
    let ResponseBody::ChatStream(chunks) = response.body else { panic!("a stream") };
    let chunks: Vec<_> = chunks.map(Result::unwrap).collect().await;
    assert_eq!(mock.requests().pop().unwrap().headers["accept"], "text/event-stream");
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            serde_json::from_slice::<Value>(c.raw()).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 ");
    let last = chunks.last().unwrap();
    assert!(last.is_usage_only());
    assert_eq!(last.usage().map(|u| u.input), Some(mock.stats().prompt_tokens));

    let error = adapter(&mock, "wrong-key-0123456789")
        .oneshot(LlmRequest::new(Operation::chat(body)))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::ProviderAuthentication);
    assert!(error.message.contains("invalid api token"), "{}", error.message);

    mock.push_fault(Fault::RateLimited { retry_after_secs: 2 });
    let embed: EmbeddingsRequest = serde_json::from_value(json!({"model": "e", "input": "hi"})).unwrap();
    let error = adapter(&mock, "co-key")
        .oneshot(LlmRequest::new(Operation::embeddings(embed.clone())))
        .await
        .unwrap_err();
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, Some(Duration::from_secs(2))));
    let response =
        adapter(&mock, "co-key").oneshot(LlmRequest::new(Operation::embeddings(embed))).await.unwrap();
    let ResponseBody::Embeddings(list) = response.body else { panic!("embeddings") };
    assert_eq!(
        serde_json::from_slice::<Value>(list.raw()).unwrap()["data"][0]["embedding"].as_array().map(Vec::len),
        Some(8)
    );
    assert_eq!(mock.requests().pop().unwrap().path, "/v2/embed");
}
