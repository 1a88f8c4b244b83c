//! `GET /v1/models` and `GET /v1/models/{id}`: the names clients may send.
//!
//! A wildcard model (`groq/*`) is listed under its pattern; retrieving a concrete name it
//! matches (`groq/llama-3.1-8b-instant`) answers for that name. A virtual key sees the models
//! it may call.

use axum::{
    Extension, Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use switchyard_types::{
    llm::{ErrorClass, LlmError},
    openai::{Model, ModelList},
};

use crate::{app::AppState, auth::Caller, models::owned_by, respond::error_response};

pub(super) async fn list(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Json<ModelList> {
    let identity = caller.as_ref().and_then(|c| c.identity());
    let data = state
        .models
        .groups()
        .iter()
        .filter(|g| identity.is_none_or(|i| i.allows_model(g.name())))
        .map(|g| Model {
            id: g.name().to_owned(),
            object: "model".into(),
            created: state.started_at,
            owned_by: owned_by(g).to_owned(),
        })
        .collect();
    Json(ModelList { object: "list".into(), data })
}

pub(super) async fn retrieve(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.models.resolve(&id) {
        Some((group, _)) => Json(Model {
            id,
            object: "model".into(),
            created: state.started_at,
            owned_by: owned_by(group).to_owned(),
        })
        .into_response(),
        None => error_response(
            &LlmError::new(
                ErrorClass::NotFound,
                format!("The model `{id}` does not exist on this gateway. GET /v1/models lists the models it serves."),
            )
            .with_param("model"),
        ),
    }
}
