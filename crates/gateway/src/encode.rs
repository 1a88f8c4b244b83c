//! Encode: an [`LlmResponse`] becomes the HTTP response the client's dialect expects.
//!
//! A complete answer is one JSON body. A stream becomes server-sent events, one event per
//! chunk: `data: <chunk>` ending with `data: [DONE]` for OpenAI clients, `event: <type>` and
//! `data: <event>` for Anthropic clients (no terminator: `message_stop` ends it). An answer in
//! the other dialect than the client's (a custom stack without the providers' translation
//! layer) is translated here. Each event is written the moment the chunk arrives (the body yields it as its own frame,
//! and hyper flushes whenever the next chunk is not ready yet). The stream waits for its first
//! chunk before sending headers, so a failure before any output still gets a proper status
//! (and, with the router, a failover); a failure after that ends the stream with an error
//! event, never with a silent truncation. Dropping the body (the client went away) drops the
//! upstream stream, which closes the upstream request.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header};
use switchyard_providers::translate::{chat_to_messages, messages_to_chat};
use switchyard_types::{
    json::Json,
    llm::{DocStream, ErrorClass, LlmError, LlmResponse, ResponseBody},
    sse,
};

use crate::{
    headers,
    respond::{Dialect, anthropic_envelope, envelope, error_response, error_response_in},
};

/// Encodes a response for an OpenAI-dialect client.
pub async fn openai_response(response: LlmResponse) -> Response {
    let mut http = match response.body {
        ResponseBody::Chat(completion) => json(completion.into_raw()),
        ResponseBody::Embeddings(embeddings) => json(embeddings.into_raw()),
        ResponseBody::ChatStream(chunks) => stream(Dialect::OpenAi, chunks).await,
        ResponseBody::Message(message) => match chat_to_messages::completion(&message) {
            Ok(completion) => json(completion.into_raw()),
            Err(error) => error_response(&error),
        },
        ResponseBody::MessageStream(events) => {
            stream(Dialect::OpenAi, Box::pin(chat_to_messages::Chunks::new(events))).await
        }
    };
    name_deployment(&mut http, response.served_by);
    http
}

/// Encodes a response for an Anthropic-dialect client.
pub async fn anthropic_response(response: LlmResponse) -> Response {
    let mut http = match response.body {
        ResponseBody::Message(message) => json(message.into_raw()),
        ResponseBody::MessageStream(events) => stream(Dialect::Anthropic, events).await,
        ResponseBody::Chat(completion) => match messages_to_chat::message(&completion) {
            Ok(message) => json(message.into_raw()),
            Err(error) => error_response_in(Dialect::Anthropic, &error),
        },
        ResponseBody::ChatStream(chunks) => {
            stream(Dialect::Anthropic, Box::pin(messages_to_chat::Events::new(chunks))).await
        }
        ResponseBody::Embeddings(_) => error_response_in(
            Dialect::Anthropic,
            &LlmError::new(ErrorClass::Internal, "an embeddings answer reached the Messages endpoint"),
        ),
    };
    name_deployment(&mut http, response.served_by);
    http
}

fn name_deployment(http: &mut Response, served_by: Option<std::sync::Arc<str>>) {
    if let Some(label) = served_by
        && let Ok(value) = HeaderValue::from_str(&label)
    {
        http.headers_mut().insert(headers::DEPLOYMENT, value);
    }
}

/// The SSE response for a stream, once its first document arrived (or its error response).
async fn stream<T: 'static>(dialect: Dialect, mut rest: DocStream<T>) -> Response {
    match rest.next().await {
        Some(Ok(first)) => sse(dialect, first, rest),
        Some(Err(error)) => error_response_in(dialect, &error),
        None => error_response_in(
            dialect,
            &LlmError::new(
                ErrorClass::UpstreamServer,
                "The provider ended the stream before sending anything.",
            ),
        ),
    }
}

fn json(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn sse<T: 'static>(dialect: Dialect, first: Json<T>, rest: DocStream<T>) -> Response {
    let body = SseBody { dialect, first: Some(first), rest, finished: false };
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies in front of us not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Documents as SSE frames (then `data: [DONE]` for OpenAI clients); an error becomes an
/// error event and ends the stream.
struct SseBody<T> {
    dialect: Dialect,
    first: Option<Json<T>>,
    rest: DocStream<T>,
    finished: bool,
}

impl<T> SseBody<T> {
    fn frame(&self, raw: &[u8]) -> Bytes {
        match self.dialect {
            Dialect::OpenAi => chunk_frame(raw),
            Dialect::Anthropic => event_frame(raw),
        }
    }
}

impl<T> Stream for SseBody<T> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(self.frame(first.raw()))));
        }
        match self.rest.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(self.frame(chunk.raw())))),
            Poll::Ready(Some(Err(error))) => {
                self.finished = true;
                tracing::warn!(error = %error, "stream failed after it started; ending it with an error event");
                Poll::Ready(Some(Ok(error_frame(self.dialect, &error))))
            }
            Poll::Ready(None) => {
                self.finished = true;
                match self.dialect {
                    Dialect::OpenAi => Poll::Ready(Some(Ok(Bytes::from_static(b"data: [DONE]\n\n")))),
                    Dialect::Anthropic => Poll::Ready(None),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `data: <chunk>\n\n`, the chunk's bytes as the provider sent them.
fn chunk_frame(raw: &[u8]) -> Bytes {
    if memchr::memchr2(b'\n', b'\r', raw).is_some() {
        // A provider that pretty-printed its JSON: one data line per line keeps SSE framing.
        let mut buf = BytesMut::with_capacity(raw.len() + 32);
        sse::encode(&mut buf, None, &String::from_utf8_lossy(raw));
        return buf.freeze();
    }
    let mut buf = BytesMut::with_capacity(raw.len() + 8);
    buf.put_slice(b"data: ");
    buf.put_slice(raw);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// `event: <type>\ndata: <event>\n\n`, the event's bytes as the provider sent them.
fn event_frame(raw: &[u8]) -> Bytes {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let kind = serde_json::from_slice::<Kind<'_>>(raw)
        .map(|k| k.kind)
        .unwrap_or(std::borrow::Cow::Borrowed("message"));
    let mut buf = BytesMut::with_capacity(raw.len() + kind.len() + 16);
    sse::encode(&mut buf, Some(&kind), &String::from_utf8_lossy(raw));
    buf.freeze()
}

/// The error event that ends a stream: `data: {"error": ...}` as OpenAI sends it, or
/// `event: error` with Anthropic's envelope.
fn error_frame(dialect: Dialect, error: &LlmError) -> Bytes {
    let (event, json) = match dialect {
        Dialect::OpenAi => (None, serde_json::to_string(&envelope(error))),
        Dialect::Anthropic => (Some("error"), serde_json::to_string(&anthropic_envelope(error))),
    };
    let json = json.unwrap_or_else(|_| {
        r#"{"error":{"message":"the stream failed","type":"api_error","param":null,"code":null}}"#.to_owned()
    });
    let mut buf = BytesMut::with_capacity(json.len() + 24);
    sse::encode(&mut buf, event, &json);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;
    use switchyard_types::{llm::ChunkStream, openai::ChatCompletionChunk};

    fn chunk(content: &str) -> Json<ChatCompletionChunk> {
        let value = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
        Json::from_bytes(Bytes::from(value.to_string())).expect("chunk")
    }

    async fn body_text(response: Response) -> String {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn streams_end_with_done() {
        let chunks: ChunkStream = Box::pin(futures_util::stream::iter([Ok(chunk("a")), Ok(chunk("b"))]));
        let response = openai_response(LlmResponse {
            body: ResponseBody::ChatStream(chunks),
            served_by: Some("p/m".into()),
        })
        .await;
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(response.headers()[headers::DEPLOYMENT], "p/m");
        let text = body_text(response).await;
        assert_eq!(text.matches("data: {").count(), 2);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }

    #[tokio::test]
    async fn a_failure_before_the_first_chunk_is_an_http_error() {
        let chunks: ChunkStream =
            Box::pin(futures_util::stream::iter([Err(LlmError::new(ErrorClass::Timeout, "too slow"))]));
        let response =
            openai_response(LlmResponse { body: ResponseBody::ChatStream(chunks), served_by: None }).await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test]
    async fn a_failure_mid_stream_is_an_error_event_without_done() {
        let chunks: ChunkStream = Box::pin(futures_util::stream::iter([
            Ok(chunk("a")),
            Err(LlmError::new(ErrorClass::UpstreamServer, "connection reset")),
        ]));
        let response =
            openai_response(LlmResponse { body: ResponseBody::ChatStream(chunks), served_by: None }).await;
        let text = body_text(response).await;
        assert!(text.contains(r#""error":{"message":"connection reset""#), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
    }

    #[tokio::test]
    async fn a_pretty_printed_chunk_keeps_sse_framing() {
        let pretty = Json::from_bytes(Bytes::from_static(b"{\n  \"choices\": []\n}")).expect("valid");
        let chunks: ChunkStream = Box::pin(futures_util::stream::iter([Ok(pretty)]));
        let response =
            openai_response(LlmResponse { body: ResponseBody::ChatStream(chunks), served_by: None }).await;
        let text = body_text(response).await;
        assert!(text.starts_with("data: {\ndata:   \"choices\": []\ndata: }\n\n"), "{text:?}");
    }
}
