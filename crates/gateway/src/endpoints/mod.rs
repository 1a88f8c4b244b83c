//! The HTTP endpoints, each in its own module, and the table of routes.

mod admin;
mod count_tokens;
mod health;
mod inference;
mod metrics;
mod models;

use axum::{
    Router,
    routing::{get, post},
};

use crate::app::AppState;

/// Routes that need the client's key.
pub(crate) fn api() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(inference::chat_completions))
        .route("/chat/completions", post(inference::chat_completions))
        .route("/v1/embeddings", post(inference::embeddings))
        .route("/v1/messages", post(inference::messages))
        .route("/v1/messages/count_tokens", post(count_tokens::count_tokens))
        .route("/embeddings", post(inference::embeddings))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{*id}", get(models::retrieve))
        .route("/models/{*id}", get(models::retrieve))
}

/// Routes open to probes without a key.
pub(crate) fn probes() -> Router<AppState> {
    Router::new()
        .route("/health/liveness", get(health::liveness))
        .route("/health/readiness", get(health::readiness))
        .route("/health", get(health::readiness))
}

/// `GET /metrics`, placed by the application behind the key or beside the probes.
pub(crate) fn metrics() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics::scrape))
}

/// The admin API, placed by the application behind the operator check.
pub(crate) fn admin() -> Router<AppState> {
    Router::new()
        .route("/admin/openapi.json", get(admin::openapi))
        .route("/admin/keys", post(admin::create_key).get(admin::list_keys))
        .route("/admin/keys/{id}", get(admin::get_key).patch(admin::update_key))
        .route("/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route("/admin/keys/{id}/rotate", post(admin::rotate_key))
        .route("/admin/teams", post(admin::create_team).get(admin::list_teams))
        .route("/admin/teams/{id}", get(admin::get_team).patch(admin::update_team).delete(admin::delete_team))
        .route("/admin/users", post(admin::create_user).get(admin::list_users))
        .route("/admin/users/{id}", get(admin::get_user).patch(admin::update_user).delete(admin::delete_user))
        .route("/admin/spend", get(admin::spend))
}
