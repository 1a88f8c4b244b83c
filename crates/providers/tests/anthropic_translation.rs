//! Translation between the OpenAI and Anthropic dialects, data first: each input is a payload
//! in its provider's published wire format (`tests/fixtures/anthropic/`), each expected output a
//! checked-in JSON file next to it. `SWITCHYARD_BLESS=1 cargo test` rewrites the expected files
//! from what the code produces now; review the diff before committing it.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use switchyard_providers::{
    anthropic::SseEvents,
    openai::SseChunks,
    translate::{chat_to_messages, messages_to_chat},
};
use switchyard_types::{
    anthropic::{Message, MessagesRequest},
    json::Json,
    openai::{ChatCompletion, ChatCompletionRequest},
};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/anthropic").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Compares `actual` with the expected file, or rewrites the file when blessing.
fn expect(name: &str, actual: &Value) {
    let file = path(name);
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        std::fs::write(&file, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(&read(name))
        .unwrap_or_else(|e| panic!("{name} is missing or not JSON ({e}); run with SWITCHYARD_BLESS=1"));
    assert_eq!(actual, &expected, "{name} differs:\n{}", serde_json::to_string_pretty(actual).unwrap());
}

/// Clears what changes from run to run (the time a translated answer was made).
fn steady(mut value: Value) -> Value {
    if let Some(created) = value.get_mut("created") {
        *created = 0.into();
    }
    value
}

/// `text` split into pieces of `size` bytes, as a network would deliver it.
fn pieces(
    text: &str,
    size: usize,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Unpin + use<> {
    let bytes = text.as_bytes().chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect::<Vec<_>>();
    futures_util::stream::iter(bytes)
}

#[test]
fn an_openai_request_becomes_a_messages_body() {
    let chat: ChatCompletionRequest = serde_json::from_str(&read("chat_request.json")).unwrap();
    let body = chat_to_messages::request(&chat, "claude-sonnet-4-5", 4096).unwrap();
    expect("chat_request.anthropic.json", &body);
}

#[test]
fn what_anthropic_cannot_do_is_refused_naming_the_field() {
    let mut chat: ChatCompletionRequest = serde_json::from_str(&read("chat_request.json")).unwrap();
    chat.extra.insert("n".into(), 2.into());
    let error = chat_to_messages::request(&chat, "claude", 4096).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("n"));

    let audio: ChatCompletionRequest = serde_json::from_value(serde_json::json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}))
    .unwrap();
    let error = chat_to_messages::request(&audio, "claude", 4096).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("messages[0].content[0].type"));
}

#[test]
fn a_missing_max_tokens_is_filled_and_reasoning_effort_becomes_a_thinking_budget() {
    let chat: ChatCompletionRequest = serde_json::from_value(serde_json::json!({"model": "m",
        "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high", "max_tokens": 1000}))
    .unwrap();
    let body = chat_to_messages::request(&chat, "claude", 4096).unwrap();
    assert_eq!(body["thinking"], serde_json::json!({"type": "enabled", "budget_tokens": 4096}));
    assert_eq!(body["max_tokens"], 5096, "the budget must stay below max_tokens");
    let plain: ChatCompletionRequest = serde_json::from_value(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    assert_eq!(chat_to_messages::request(&plain, "claude", 777).unwrap()["max_tokens"], 777);
}

#[test]
fn a_message_becomes_a_chat_completion() {
    let message: Json<Message> = Json::from_bytes(read("message.json").into()).unwrap();
    let completion = chat_to_messages::completion(&message).unwrap();
    let usage = completion.usage().unwrap();
    assert_eq!((usage.input, usage.cached_input, usage.cache_creation), (472 + 1024 + 2048, 2048, 1024));
    expect("message.openai.json", &steady(serde_json::from_slice(completion.raw()).unwrap()));
}

#[tokio::test]
async fn an_event_stream_becomes_chunks_as_events_arrive() {
    let events = SseEvents::new(pieces(&read("stream.sse"), 7), Arc::from("anthropic/claude"));
    let chunks = chat_to_messages::Chunks::new(Box::pin(events));
    let chunks: Vec<Value> =
        chunks.map(|c| steady(serde_json::from_slice(c.unwrap().raw()).unwrap())).collect().await;
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["prompt_tokens"], 572, "input and cache read");
    assert_eq!(last["usage"]["completion_tokens"], 89, "the output of message_delta");
    expect("stream.openai.json", &Value::Array(chunks));
}

#[tokio::test]
async fn a_stream_that_ends_before_message_stop_is_an_error() {
    let text = read("stream.sse");
    let cut = &text[..text.find("event: message_delta").unwrap()];
    let events = SseEvents::new(pieces(cut, 64), Arc::from("anthropic/claude"));
    let items: Vec<_> = events.collect().await;
    let error = items.last().unwrap().as_ref().unwrap_err();
    assert!(error.message.contains("before the answer was complete"), "{}", error.message);
}

#[tokio::test]
async fn an_error_event_mid_stream_is_an_overloaded_error() {
    let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[]}}\n\n\
                event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let items: Vec<_> = SseEvents::new(pieces(text, 5), Arc::from("anthropic/claude")).collect().await;
    assert_eq!(items.len(), 2);
    let error = items[1].as_ref().unwrap_err();
    assert_eq!(error.class, switchyard_types::llm::ErrorClass::Overloaded);
}

#[test]
fn a_messages_request_becomes_a_chat_request() {
    let messages: MessagesRequest = serde_json::from_str(&read("messages_request.json")).unwrap();
    let chat = messages_to_chat::request(&messages, "gpt-4o-mini").unwrap();
    expect("messages_request.openai.json", &serde_json::to_value(&chat).unwrap());
}

#[test]
fn anthropic_server_tools_are_refused_elsewhere() {
    let messages: MessagesRequest =
        serde_json::from_value(serde_json::json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "search"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]}))
        .unwrap();
    let error = messages_to_chat::request(&messages, "gpt").unwrap_err();
    assert_eq!(error.param.as_deref(), Some("tools"));
    assert!(error.message.contains("web_search_20250305"), "{}", error.message);
}

#[test]
fn a_chat_completion_becomes_a_message() {
    let completion: Json<ChatCompletion> = Json::from_bytes(read("completion.json").into()).unwrap();
    let message = messages_to_chat::message(&completion).unwrap();
    expect("completion.anthropic.json", &serde_json::from_slice(message.raw()).unwrap());
}

#[tokio::test]
async fn chunks_become_anthropic_events_in_anthropics_order() {
    let chunks = SseChunks::new(pieces(&read("chunks.sse"), 11), Arc::from("openai/gpt"));
    let events = messages_to_chat::Events::new(Box::pin(chunks));
    let events: Vec<Value> =
        events.map(|e| serde_json::from_slice(e.unwrap().raw()).unwrap()).collect().await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    expect("chunks.anthropic.json", &Value::Array(events));
}
