//! [`MessagesOverChatLayer`]: serves Anthropic Messages requests with an adapter that speaks
//! only the OpenAI dialect (the OpenAI-compatible, Gemini, Bedrock, Cohere and mock adapters).
//!
//! A `Messages` request is translated to a chat request ([`translate::messages_to_chat`])
//! naming the routed model, sent through the inner adapter (which translates further to its
//! provider's dialect, if it is not OpenAI's), and its answer is translated back: a chat
//! completion to a message, a chunk stream to an event stream, chunk by chunk. Chat and
//! embeddings requests pass through untouched. The request's extensions (request id, deadline,
//! upstream headers) go with the translated request.
//!
//! Failure behaviour: a Messages request the chat dialect cannot express (Anthropic's server
//! tools, content blocks only Anthropic reads) fails with a `BadRequest` naming the field,
//! before anything is sent. Errors of the inner adapter pass through unchanged.
//!
//! ```
//! use switchyard_providers::{messages_over_chat::MessagesOverChatLayer, mock::MockProvider};
//! use tower::Layer;
//!
//! let deployment = MessagesOverChatLayer::new().layer(MockProvider::default());
//! # let _ = deployment;
//! ```
//!
//! [`translate::messages_to_chat`]: crate::translate::messages_to_chat

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use switchyard_types::llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody};

use crate::translate::messages_to_chat;

/// Builds [`MessagesOverChat`] services.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagesOverChatLayer {
    _private: (),
}

impl MessagesOverChatLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tower::Layer<S> for MessagesOverChatLayer {
    type Service = MessagesOverChat<S>;

    fn layer(&self, inner: S) -> MessagesOverChat<S> {
        MessagesOverChat { inner }
    }
}

/// An OpenAI-dialect adapter that also serves Anthropic Messages requests.
#[derive(Debug, Clone)]
pub struct MessagesOverChat<S> {
    inner: S,
}

// === impl MessagesOverChat ===

impl<S> MessagesOverChat<S> {
    /// The inner adapter.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner adapter, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner adapter, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> tower::Service<LlmRequest> for MessagesOverChat<S>
where
    S: tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let chat = match &request.op {
            Operation::Messages(messages) => messages_to_chat::request(messages, request.model()),
            _ => return ResponseFuture { state: State::Passing { future: self.inner.call(request) } },
        };
        match chat {
            Ok(chat) => {
                let mut translated = LlmRequest::new(Operation::chat(chat));
                translated.extensions = request.extensions;
                ResponseFuture { state: State::Translating { future: self.inner.call(translated) } }
            }
            Err(error) => ResponseFuture { state: State::Refused { error: Some(error) } },
        }
    }
}

pin_project! {
    /// The answer of [`MessagesOverChat`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Passing { #[pin] future: F },
        Translating { #[pin] future: F },
        Refused { error: Option<LlmError> },
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<LlmResponse, LlmError>>,
{
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Passing { future } => future.poll(cx),
            StateProj::Translating { future } => {
                let response = std::task::ready!(future.poll(cx))?;
                Poll::Ready(to_messages(response))
            }
            StateProj::Refused { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                LlmError::new(ErrorClass::Internal, "a refused request was polled again")
            }))),
        }
    }
}

/// The error of an OpenAI-dialect adapter asked to send a Messages request itself: a
/// configuration fault of whoever built the stack without this layer.
pub(crate) fn chat_only(label: &str) -> LlmError {
    LlmError::new(
        ErrorClass::Internal,
        format!(
            "{label} speaks the OpenAI dialect only: serve Anthropic Messages requests through MessagesOverChatLayer"
        ),
    )
}

/// The Messages answer for an OpenAI-dialect one.
fn to_messages(response: LlmResponse) -> Result<LlmResponse, LlmError> {
    let body = match response.body {
        ResponseBody::Chat(completion) => ResponseBody::Message(messages_to_chat::message(&completion)?),
        ResponseBody::ChatStream(chunks) => {
            ResponseBody::MessageStream(Box::pin(messages_to_chat::Events::new(chunks)))
        }
        body => body,
    };
    Ok(LlmResponse { body, ..response })
}
