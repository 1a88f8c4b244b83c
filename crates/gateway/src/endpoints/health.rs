//! Liveness and readiness probes.
//!
//! Liveness says the process answers. Readiness says it can serve: the configuration loaded
//! and every model has a deployment. Neither calls a provider (a probe must not spend money
//! or rate limit).

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::app::AppState;

pub(super) async fn liveness() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

pub(super) async fn readiness(State(state): State<AppState>) -> Json<Value> {
    let groups = state.models.groups();
    let deployments: usize = groups.iter().map(|g| g.endpoints().len()).sum();
    Json(json!({"status": "ready", "models": groups.len(), "deployments": deployments}))
}
