//! Routing and the other endpoints: path variants (OpenAI, prefix-less, Azure), models,
//! embeddings, errors, API keys, `/__stats`, the OTLP trace sink, and request recording.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use switchyard_testkit::{Fault, MockConfig, Stats};

use crate::{call, chat_request, get, json_body, post, start};

#[tokio::test]
async fn models_lists_the_mock_model() {
    let server = start(MockConfig::default()).await;
    let body = json_body(call(&server, get("/v1/models")).await).await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "mock-gpt");
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["owned_by"], "switchyard-testkit");
}

#[tokio::test]
async fn azure_paths_are_served_and_recorded_with_their_query() {
    let server = start(MockConfig { api_key: Some("azure-key".into()), ..MockConfig::default() }).await;
    let mut body = chat_request(json!({}));
    body.as_object_mut().unwrap().remove("model");
    let mut request = post("/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", &body);
    request.headers_mut().insert("api-key", "azure-key".parse().unwrap());
    let response = call(&server, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["model"], "prod-4o", "the deployment names the model");

    let recorded = server.requests();
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, "/openai/deployments/prod-4o/chat/completions");
    assert_eq!(recorded[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(recorded[0].headers["api-key"], "azure-key");
    assert_eq!(recorded[0].body, body);
}

#[tokio::test]
async fn unknown_paths_and_bad_bodies_get_openai_errors() {
    let server = start(MockConfig::default()).await;
    let response = call(&server, post("/v1/completions/legacy", &json!({}))).await;
    assert_eq!(response.status(), 404);
    let body = json_body(response).await;
    assert_eq!(body["error"]["message"], "Invalid URL (POST /v1/completions/legacy)");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let mut request = post("/v1/chat/completions", &json!({}));
    *request.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(b"{not json"));
    let response = call(&server, request).await;
    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("parse the JSON body"), "{body}");
    assert_eq!(server.requests()[1].body, Value::Null, "a body that is not JSON is recorded as null");

    let response = call(&server, post("/v1/chat/completions", &json!({"model": "m"}))).await;
    assert_eq!(response.status(), 400);
    assert!(json_body(response).await["error"]["message"].as_str().unwrap().contains("messages"));
}

#[tokio::test]
async fn api_key_is_required_as_bearer_or_api_key_header() {
    let server = start(MockConfig { api_key: Some("sk-mock".into()), ..MockConfig::default() }).await;
    let with = |header: Option<(&'static str, &'static str)>| {
        let mut request = post("/v1/chat/completions", &chat_request(json!({})));
        if let Some((name, value)) = header {
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        request
    };

    for header in [None, Some(("authorization", "Bearer sk-wrong")), Some(("api-key", "sk-wrong"))] {
        let response = call(&server, with(header)).await;
        assert_eq!(response.status(), 401, "{header:?}");
        let body = json_body(response).await;
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert_eq!(body["error"]["param"], Value::Null);
        assert!(!body["error"]["message"].as_str().unwrap().contains("sk-wrong"), "keys are not echoed");
    }
    for header in [("authorization", "Bearer sk-mock"), ("api-key", "sk-mock")] {
        assert_eq!(call(&server, with(Some(header))).await.status(), 200, "{header:?}");
    }
    assert_eq!(call(&server, get("/__stats")).await.status(), 200, "the stats need no key");
    assert_eq!(server.stats().chat_completions, 2, "rejected requests are not answered");
}

#[tokio::test]
async fn embeddings_are_deterministic_unit_vectors() {
    let server = start(MockConfig::default()).await;
    let request =
        json!({"model": "text-embedding-3-small", "input": ["hello", "world", "hello"], "dimensions": 4});
    let body = json_body(call(&server, post("/v1/embeddings", &request)).await).await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["usage"], json!({"prompt_tokens": 6, "total_tokens": 6}));
    let vectors: Vec<Vec<f64>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            item["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
        })
        .collect();
    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0].len(), 4);
    assert_eq!(vectors[0], vectors[2], "the same text, the same vector");
    assert_ne!(vectors[0], vectors[1]);
    let norm: f64 = vectors[1].iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit length: {norm}");

    let single =
        json_body(call(&server, post("/v1/embeddings", &json!({"model": "m", "input": "hello"}))).await)
            .await;
    assert_eq!(single["data"].as_array().unwrap().len(), 1);
    assert_eq!(single["data"][0]["embedding"].as_array().unwrap().len(), 8, "8 dimensions by default");
    assert_eq!(server.stats().embeddings, 2);
}

#[tokio::test]
async fn base64_embeddings_carry_the_same_floats() {
    let server = start(MockConfig::default()).await;
    let floats =
        json_body(call(&server, post("/embeddings", &json!({"model": "m", "input": "abc"}))).await).await;
    let request = json!({"model": "m", "input": "abc", "encoding_format": "base64"});
    let encoded = json_body(call(&server, post("/embeddings", &request)).await).await;
    let decoded = decode_base64(encoded["data"][0]["embedding"].as_str().unwrap());
    let values: Vec<f32> =
        decoded.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    // JSON carries each f32 in its shortest decimal form, which reads back to the same f32.
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(values, expected);
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextets: Vec<u32> = text
        .bytes()
        .filter(|&b| b != b'=')
        .map(|b| ALPHABET.iter().position(|&a| a == b).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for group in sextets.chunks(4) {
        let n = group.iter().enumerate().fold(0, |n, (i, s)| n | (s << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    out
}

#[tokio::test]
async fn stats_endpoint_reports_the_counters_without_counting_itself() {
    let server = start(MockConfig::default()).await;
    call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    let reported = json_body(call(&server, get("/__stats")).await).await;
    let stats = server.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(reported, serde_json::to_value(&stats).unwrap());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn otlp_trace_exports_are_accepted_counted_and_discarded() {
    // A key and a queued fault: neither applies to an export, which comes on the exporter's
    // schedule and must not take the fault a test meant for the next chat request.
    let server = start(MockConfig { api_key: Some("sk-mock".into()), ..MockConfig::default() }).await;
    server.push_fault(Fault::Status { status: 500, body: json!({"error": "scripted"}) });

    // What OpenTelemetry's exporters send by default: protobuf. The answer is an empty
    // ExportTraceServiceResponse in protobuf, which is zero bytes.
    let spans = Bytes::from_static(b"\x0a\x05\x12\x03\x12\x01\x00");
    let request = http::Request::post("/v1/traces")
        .header("host", "localhost")
        .header("content-type", "application/x-protobuf")
        .body(Full::new(spans.clone()))
        .unwrap();
    let response = call(&server, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    assert!(response.into_body().collect().await.unwrap().to_bytes().is_empty());

    // OTLP/JSON gets `{}`, the same empty response in JSON; a collector path prefix is fine.
    let export = json!({"resourceSpans": []});
    let response = call(&server, post("/otlp/v1/traces", &export)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(json_body(response).await, json!({}));

    let stats = server.stats();
    let json_len = serde_json::to_vec(&export).unwrap().len() as u64;
    assert_eq!((stats.otlp_exports, stats.otlp_bytes), (2, spans.len() as u64 + json_len));
    assert_eq!((stats.requests, stats.faults), (0, 0), "exports are not requests to the provider");
    assert!(server.requests().is_empty(), "exports are not recorded");

    // The fault is still queued for the chat request it was meant for.
    let with_key = |mut request: http::Request<Full<Bytes>>| {
        request.headers_mut().insert("authorization", "Bearer sk-mock".parse().unwrap());
        request
    };
    assert_eq!(
        call(&server, with_key(post("/v1/chat/completions", &chat_request(json!({}))))).await.status(),
        500
    );
    // Only POST is an export.
    assert_eq!(call(&server, with_key(get("/v1/traces"))).await.status(), 404);
    assert_eq!(server.stats().otlp_exports, 2);
}

#[tokio::test]
async fn clear_forgets_requests_but_not_counters() {
    let server = start(MockConfig::default()).await;
    call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    call(&server, get("/v1/models")).await;
    assert_eq!(
        server.requests().iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/v1/chat/completions", "/v1/models"]
    );
    server.clear();
    assert!(server.requests().is_empty());
    assert_eq!(server.stats().requests, 2);
}

#[tokio::test]
async fn recording_can_be_switched_off() {
    let server = start(MockConfig { record_requests: false, ..MockConfig::default() }).await;
    call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert!(server.requests().is_empty());
    assert_eq!(
        server.stats(),
        Stats {
            requests: 1,
            chat_completions: 1,
            connections: 1,
            prompt_tokens: 8,
            completion_tokens: 20,
            ..Stats::default()
        }
    );
}
