//! `POST /v1/chat/completions` and `POST /v1/embeddings`: decode, call the stack, encode.

use axum::{
    extract::{Request, State},
    response::Response,
};
use serde::de::DeserializeOwned;
use switchyard_types::llm::{LlmRequest, Operation};
use tower::ServiceExt;

use crate::{
    app::AppState,
    decode::{parse_json, read_body},
    encode::openai_response,
    respond::error_response,
};

pub(super) async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    serve(&state, request, "chat completion request", Operation::chat).await
}

pub(super) async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    serve(&state, request, "embeddings request", Operation::embeddings).await
}

async fn serve<T: DeserializeOwned>(
    state: &AppState,
    request: Request,
    what: &str,
    operation: fn(T) -> Operation,
) -> Response {
    let (parts, body) = request.into_parts();
    let decoded = match read_body(&parts.headers, body, state.max_body_bytes).await {
        Ok(bytes) => parse_json::<T>(&bytes, what),
        Err(error) => Err(error),
    };
    let mut request = match decoded {
        Ok(body) => LlmRequest::new(operation(body)),
        Err(error) => return error_response(&error),
    };
    request.extensions = parts.extensions;
    match state.stack.clone().oneshot(request).await {
        Ok(response) => openai_response(response).await,
        Err(error) => {
            tracing::debug!(class = %error.class, error = %error.message, "request failed");
            error_response(&error)
        }
    }
}
