//! `POST /v1/messages/count_tokens`: how many input tokens a Messages request would take.
//!
//! The count is Switchyard's own, made with the tokenizer the accounting crate uses
//! (tiktoken's `o200k_base`, [`tokens::count_messages_prompt`]): the system prompt, each
//! message's text, tool use and tool result blocks, and the tool definitions. Anthropic's own
//! tokenizer is not public, so for Claude models the figure is an estimate (and images and
//! documents are not counted); it costs no provider call, is the same whichever deployment
//! would serve the model, and is answered in Anthropic's shape, `{"input_tokens": N}`.
//!
//! The model must exist and the key must be allowed to call it, as for `/v1/messages`.

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use switchyard_accounting::tokens;
use switchyard_types::{
    anthropic::{MessagesRequest, TokenCount},
    llm::{ErrorClass, LlmError},
};

use crate::{
    app::AppState,
    auth::Caller,
    decode::{parse_json, read_body},
    respond::{Dialect, error_response_in},
};

pub(super) async fn count_tokens(State(state): State<AppState>, request: Request) -> Response {
    match count(&state, request).await {
        Ok(count) => axum::Json(count).into_response(),
        Err(error) => error_response_in(Dialect::Anthropic, &error),
    }
}

async fn count(state: &AppState, request: Request) -> Result<TokenCount, LlmError> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, state.max_body_bytes).await?;
    let messages: MessagesRequest = parse_json(&bytes, "count_tokens request")?;
    let Some((group, _)) = state.models.resolve(&messages.model) else {
        return Err(LlmError::new(
            ErrorClass::NotFound,
            format!(
                "model: there is no model `{}` on this gateway; GET /v1/models lists them.",
                messages.model
            ),
        )
        .with_param("model"));
    };
    if let Some(identity) = parts.extensions.get::<Caller>().and_then(Caller::identity)
        && !identity.allows_model(group.name())
    {
        return Err(LlmError::new(
            ErrorClass::Forbidden,
            format!("This key ({}) may not call the model `{}`.", identity.key.id, group.name()),
        ));
    }
    // Tokenising a long prompt is CPU work: off the runtime's threads.
    let input_tokens = tokio::task::spawn_blocking(move || tokens::count_messages_prompt(&messages))
        .await
        .map_err(|e| LlmError::new(ErrorClass::Internal, format!("counting the tokens failed: {e}")))?;
    Ok(TokenCount { input_tokens })
}
