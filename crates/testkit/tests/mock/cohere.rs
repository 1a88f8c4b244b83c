//! Cohere v2: whole chat answers, the typed event stream, tool calls, embed, and errors in
//! Cohere's shape on Cohere's paths.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use switchyard_testkit::{Fault, MockConfig};
use switchyard_types::sse::SseDecoder;
use tokio::time::Instant;

use crate::{CHAT_PROMPT_TOKENS, call, chat_request, json_body, post, start, wait_for};

fn chat(extra: Value) -> Value {
    let mut body = chat_request(extra);
    body["model"] = json!("command-a-03-2025");
    body
}

/// The prompt estimate of [`chat_request`]'s messages, which Cohere's shape shares.
const PROMPT_TOKENS: u64 = CHAT_PROMPT_TOKENS;
/// What the mock adds for Cohere's chat template.
const TEMPLATE_TOKENS: u64 = 7;

fn weather_tool() -> Value {
    json!({"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]})
}

/// Every event of a stream: its `event:` name, its data parsed, and when it arrived.
async fn events(response: hyper::Response<Incoming>, start: Instant) -> Vec<(String, Value, Duration)> {
    let mut body = response.into_body();
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        let mut decoded = Vec::new();
        decoder.feed(&data, &mut decoded);
        for event in decoded {
            out.push((
                event.event.unwrap_or_default(),
                serde_json::from_str(&event.data).unwrap(),
                start.elapsed(),
            ));
        }
    }
    assert!(!decoder.finish(), "the stream ended inside an event");
    out
}

#[tokio::test]
async fn a_whole_answer_has_cohere_v2s_shape() {
    let server = start(MockConfig { chunks: 3, ..MockConfig::default() }).await;
    let response = call(&server, post("/v2/chat", &chat(json!({"temperature": 0.3, "p": 0.9})))).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
    assert_eq!(body["finish_reason"], "COMPLETE");
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": [{"type": "text", "text": "tok0 tok1 tok2 "}]})
    );
    assert_eq!(
        body["usage"],
        json!({"billed_units": {"input_tokens": PROMPT_TOKENS, "output_tokens": 3},
               "tokens": {"input_tokens": PROMPT_TOKENS + TEMPLATE_TOKENS, "output_tokens": 3}})
    );
    let stats = server.stats();
    assert_eq!(
        (stats.chat_completions, stats.prompt_tokens, stats.completion_tokens),
        (1, PROMPT_TOKENS + TEMPLATE_TOKENS, 3)
    );

    let capped = json_body(call(&server, post("/v2/chat", &chat(json!({"max_tokens": 2})))).await).await;
    assert_eq!(capped["finish_reason"], "MAX_TOKENS");
    assert_eq!(capped["message"]["content"][0]["text"], "tok0 tok1 ");
}

#[tokio::test]
async fn a_stream_is_the_full_typed_event_sequence_paced_like_tokens() {
    let server = start(MockConfig {
        chunks: 3,
        ttft: Duration::from_millis(50),
        chunk_delay: Duration::from_millis(30),
        ..MockConfig::default()
    })
    .await;
    let started = Instant::now();
    let response = call(&server, post("/v2/chat", &chat(json!({"stream": true})))).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(response, started).await;
    let names: Vec<&str> = events.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message-start",
            "content-start",
            "content-delta",
            "content-delta",
            "content-delta",
            "content-end",
            "message-end"
        ]
    );
    for (name, data, _) in &events {
        assert_eq!(data["type"], name.as_str(), "the data names its own type");
    }
    assert_eq!(events[0].1["delta"]["message"]["role"], "assistant");
    let text: String =
        events.iter().filter_map(|(_, d, _)| d["delta"]["message"]["content"]["text"].as_str()).collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    let end = &events[6].1["delta"];
    assert_eq!(end["finish_reason"], "COMPLETE");
    assert_eq!(end["usage"]["tokens"]["output_tokens"], 3);
    assert!(events[0].2 >= Duration::from_millis(50), "time to first token");
    assert!(events[4].2 >= events[2].2 + Duration::from_millis(60), "deltas are paced");
    wait_for(&server, |s| s.streams_completed == 1 && s.completion_tokens == 3).await;
}

#[tokio::test]
async fn tools_are_called_unless_answered_or_forbidden() {
    let server = start(MockConfig::default()).await;
    let body = json_body(call(&server, post("/v2/chat", &chat(weather_tool()))).await).await;
    assert_eq!(body["finish_reason"], "TOOL_CALL");
    assert_eq!(body["message"]["tool_plan"], "I will look that up.");
    assert_eq!(
        body["message"]["tool_calls"],
        json!([{"id": "get_weather_mock1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}])
    );

    let mut tools = weather_tool();
    tools["tool_choice"] = json!("NONE");
    let none = json_body(call(&server, post("/v2/chat", &chat(tools.clone()))).await).await;
    assert_eq!(none["finish_reason"], "COMPLETE");

    tools["tool_choice"] = json!("required");
    let response = call(&server, post("/v2/chat", &chat(tools))).await;
    assert_eq!(response.status(), 400, "Cohere spells it REQUIRED");

    let mut answered = chat(weather_tool());
    answered["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "tool_plan": "I will look that up.", "tool_calls": body["message"]["tool_calls"]}),
        json!({"role": "tool", "tool_call_id": "get_weather_mock1", "content": "{\"temp_c\": 18}"}),
    ]);
    let text = json_body(call(&server, post("/v2/chat", &answered)).await).await;
    assert_eq!(text["finish_reason"], "COMPLETE");
}

#[tokio::test]
async fn a_tool_stream_plans_starts_the_call_and_streams_its_arguments() {
    let server = start(MockConfig::default()).await;
    let response =
        call(&server, post("/v2/chat", &chat(json!({"stream": true, "tools": weather_tool()["tools"]}))))
            .await;
    let events = events(response, Instant::now()).await;
    let start = events.iter().find(|(name, _, _)| name == "tool-call-start").unwrap();
    assert_eq!(start.1["delta"]["message"]["tool_calls"]["function"]["name"], "get_weather");
    let arguments: String = events
        .iter()
        .filter(|(name, _, _)| name == "tool-call-delta")
        .filter_map(|(_, d, _)| d["delta"]["message"]["tool_calls"]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"location\":\"Paris\"}");
    assert_eq!(events.last().unwrap().1["delta"]["finish_reason"], "TOOL_CALL");
}

#[tokio::test]
async fn fields_cohere_does_not_know_are_refused_in_its_shape() {
    let server = start(MockConfig::default()).await;
    for field in [
        json!({"top_p": 0.9}),
        json!({"stream_options": {"include_usage": true}}),
        json!({"max_completion_tokens": 5}),
    ] {
        let response = call(&server, post("/v2/chat", &chat(field.clone()))).await;
        assert_eq!(response.status(), 400, "{field}");
        let body = json_body(response).await;
        assert!(body["message"].as_str().unwrap().contains("unknown field"), "{body}");
        assert!(body.get("error").is_none(), "Cohere's shape, not OpenAI's");
    }
}

#[tokio::test]
async fn embed_answers_floats_by_type_and_needs_an_input_type() {
    let server = start(MockConfig::default()).await;
    let body = json!({"model": "embed-v4.0", "texts": ["one", "two"], "input_type": "search_document",
                      "embedding_types": ["float"], "output_dimension": 4});
    let answer = json_body(call(&server, post("/v2/embed", &body)).await).await;
    assert_eq!(answer["response_type"], "embeddings_by_type");
    let vectors = answer["embeddings"]["float"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].as_array().unwrap().len(), 4);
    assert_eq!(answer["meta"]["billed_units"]["input_tokens"], 2);
    assert_eq!(server.stats().embeddings, 1);

    let mut without = body.clone();
    without.as_object_mut().unwrap().remove("input_type");
    let response = call(&server, post("/v2/embed", &without)).await;
    assert_eq!(response.status(), 400);
    assert!(json_body(response).await["message"].as_str().unwrap().contains("input_type"));
}

#[tokio::test]
async fn key_failures_and_rate_limits_take_coheres_shape_on_its_paths() {
    let server = start(MockConfig { api_key: Some("co-key".into()), ..MockConfig::default() }).await;
    let response = call(&server, post("/v2/chat", &chat(json!({})))).await;
    assert_eq!(response.status(), 401);
    assert_eq!(json_body(response).await["message"], "invalid api token");

    let authorised = post("/v2/chat", &chat(json!({})));
    let (mut parts, body) = authorised.into_parts();
    parts.headers.insert("authorization", "Bearer co-key".parse().unwrap());
    assert_eq!(call(&server, hyper::Request::from_parts(parts, body)).await.status(), 200);

    server.push_fault(Fault::RateLimited { retry_after_secs: 3 });
    let response = call(&server, post("/v2/embed", &json!({}))).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    let body = json_body(response).await;
    assert!(body["message"].as_str().unwrap().contains("Trial key"), "{body}");

    server.push_fault(Fault::RateLimited { retry_after_secs: 3 });
    let openai = json_body(call(&server, post("/v1/chat/completions", &json!({}))).await).await;
    assert_eq!(openai["error"]["type"], "rate_limit_error", "OpenAI's paths keep OpenAI's shape");
}
