//! The built-in `mock` provider: answers locally, calls nothing, costs nothing.
//!
//! It exists so that `switchyard serve` on a fresh machine, with no provider account, answers
//! a chat completion end to end (streamed or not) through the whole stack. Every answer says
//! plainly that it comes from the mock. It is not a test double for provider behaviour: for
//! delays and faults use `switchyard-testkit`.
//!
//! A stream always ends with a usage chunk (empty `choices`, the whole request's `usage`), as
//! an OpenAI-dialect provider does when asked with `stream_options.include_usage`, because
//! the gateway bills a stream from it. The gateway drops that chunk before a client that did
//! not ask for it.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use futures_core::future::BoxFuture;
use serde_json::{Map, Value, json};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody},
    openai::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingsResponse, Usage},
};

/// The built-in local mock deployment.
#[derive(Debug, Clone)]
pub struct MockProvider {
    label: Arc<str>,
}

impl MockProvider {
    /// A mock deployment shown as `label` in headers and logs.
    pub fn new(label: impl Into<Arc<str>>) -> Self {
        Self { label: label.into() }
    }
}

impl Default for MockProvider {
    fn default() -> Self {
        Self::new("mock")
    }
}

impl tower::Service<LlmRequest> for MockProvider {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let served_by = Some(Arc::clone(&self.label));
        let answer = answer(&request, &self.label).map(|body| LlmResponse { body, served_by });
        Box::pin(async move { answer })
    }
}

fn answer(request: &LlmRequest, label: &str) -> Result<ResponseBody, LlmError> {
    let encoding = |e: serde_json::Error| {
        LlmError::new(ErrorClass::Internal, format!("the mock could not encode its answer: {e}"))
    };
    encode(request).map_err(encoding)?.ok_or_else(|| crate::messages_over_chat::chat_only(label))
}

/// The answer to a chat or embeddings request; `None` for any other (the mock speaks the
/// OpenAI dialect only).
fn encode(request: &LlmRequest) -> Result<Option<ResponseBody>, serde_json::Error> {
    let model = request.model();
    Ok(Some(match &request.op {
        Operation::Chat(chat) if chat.is_stream() => {
            let chunks =
                stream_chunks(chat, model).iter().map(Json::from_typed).collect::<Result<Vec<_>, _>>()?;
            ResponseBody::ChatStream(Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok))))
        }
        Operation::Chat(chat) => ResponseBody::Chat(Json::from_typed(&complete(chat, model))?),
        Operation::Messages(_) => return Ok(None),
        Operation::Embeddings(embeddings) => {
            let inputs: Vec<String> = match &embeddings.input {
                Value::Array(items) => items.iter().map(Value::to_string).collect(),
                other => vec![other.to_string()],
            };
            let prompt_tokens = inputs.iter().map(|t| estimate_tokens(t)).sum();
            ResponseBody::Embeddings(Json::from_typed(&EmbeddingsResponse {
                object: "list".into(),
                data: inputs
                    .iter()
                    .enumerate()
                    .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": pseudo_embedding(text)}))
                    .collect(),
                model: model.to_owned(),
                usage: Some(usage(prompt_tokens, 0)),
                extra: Map::new(),
            })?)
        }
    }))
}

fn reply_text(chat: &ChatCompletionRequest) -> String {
    let last_user = chat
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content())
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let echoed: String = last_user.chars().take(200).collect();
    format!(
        "This is Switchyard's built-in mock model: no provider was called. You said: {echoed:?}. \
         Configure a provider key (for example OPENAI_API_KEY) or a config file to reach a real model."
    )
}

fn prompt_tokens(chat: &ChatCompletionRequest) -> u64 {
    chat.messages.iter().filter_map(|m| m.content()).map(|c| estimate_tokens(&c.to_string())).sum::<u64>()
        + 3 * chat.messages.len() as u64
}

/// About four characters a token: a rough count, honest enough for a mock.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        extra: Map::new(),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn complete(chat: &ChatCompletionRequest, model: &str) -> ChatCompletion {
    let text = reply_text(chat);
    let completion_tokens = estimate_tokens(&text);
    ChatCompletion {
        id: format!("chatcmpl-mock-{}", now()),
        object: "chat.completion".into(),
        created: now(),
        model: model.to_owned(),
        choices: vec![json!({
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        })],
        usage: Some(usage(prompt_tokens(chat), completion_tokens)),
        extra: Map::from_iter([("system_fingerprint".to_owned(), json!("switchyard-mock"))]),
    }
}

fn stream_chunks(chat: &ChatCompletionRequest, model: &str) -> Vec<ChatCompletionChunk> {
    let text = reply_text(chat);
    let id = format!("chatcmpl-mock-{}", now());
    let chunk = |choices: Vec<Value>, usage_value: Option<Usage>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created: now(),
        model: model.to_owned(),
        choices,
        usage: usage_value,
        extra: Map::new(),
    };
    let mut chunks = vec![chunk(
        vec![json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})],
        None,
    )];
    for word in text.split_inclusive(' ') {
        chunks
            .push(chunk(vec![json!({"index": 0, "delta": {"content": word}, "finish_reason": null})], None));
    }
    chunks.push(chunk(vec![json!({"index": 0, "delta": {}, "finish_reason": "stop"})], None));
    // Always, whatever the client asked: the stream is billed from it (see the module doc).
    chunks.push(chunk(vec![], Some(usage(prompt_tokens(chat), estimate_tokens(&text)))));
    chunks
}

/// A deterministic unit-free vector derived from the text (FNV-1a per dimension).
fn pseudo_embedding(text: &str) -> Vec<f32> {
    (0u64..8)
        .map(|dim| {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ dim;
            for byte in text.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            (hash % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    fn chat(stream: bool) -> LlmRequest {
        let body = json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}],
                          "stream": stream, "stream_options": {"include_usage": true}});
        LlmRequest::new(Operation::chat(serde_json::from_value(body).expect("valid request")))
    }

    async fn stream_of(body: Value) -> Vec<ChatCompletionChunk> {
        let request = LlmRequest::new(Operation::chat(serde_json::from_value(body).expect("valid request")));
        let response = MockProvider::default().oneshot(request).await.expect("mock answers");
        let ResponseBody::ChatStream(stream) = response.body else { panic!("expected a stream") };
        stream.map(|c| c.expect("chunk").parse().expect("a valid chunk")).collect().await
    }

    #[tokio::test]
    async fn a_stream_reports_its_usage_even_unasked() {
        for body in [
            json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}], "stream": true}),
            json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}], "stream": true,
                   "stream_options": {"include_usage": false}}),
        ] {
            let chunks = stream_of(body).await;
            let last = chunks.last().expect("chunks");
            let usage = last.usage.as_ref().expect("the last chunk carries the usage");
            assert!(last.choices.is_empty());
            assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
            assert_eq!(chunks.iter().filter(|c| c.usage.is_some()).count(), 1, "only the last one");
        }
    }

    #[tokio::test]
    async fn answers_complete_and_says_it_is_the_mock() {
        let response = MockProvider::default().oneshot(chat(false)).await.expect("mock answers");
        let ResponseBody::Chat(completion) = response.body else { panic!("expected a complete answer") };
        let completion = completion.parse().expect("a valid completion");
        let content = completion.choices[0]["message"]["content"].as_str().unwrap_or_default();
        assert!(content.contains("built-in mock") && content.contains("hello"), "{content}");
        let usage = completion.usage.expect("usage");
        assert_eq!(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    }

    #[tokio::test]
    async fn streams_words_then_finish_then_usage() {
        let response = MockProvider::default().oneshot(chat(true)).await.expect("mock answers");
        let ResponseBody::ChatStream(stream) = response.body else { panic!("expected a stream") };
        let chunks: Vec<_> =
            stream.map(|c| c.expect("chunk").parse().expect("a valid chunk")).collect().await;
        assert!(chunks.len() > 5);
        let last = chunks.last().expect("chunks");
        assert!(last.choices.is_empty() && last.usage.is_some());
        assert_eq!(chunks[chunks.len() - 2].choices[0]["finish_reason"], "stop");
    }
}
