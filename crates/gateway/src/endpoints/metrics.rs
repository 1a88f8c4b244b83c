//! `GET /metrics`: the Prometheus metrics, in the OpenMetrics text format.
//!
//! Behind the master key unless `telemetry.metrics.require_key: false`; absent when
//! `telemetry.metrics.enabled: false`.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use http::header;
use switchyard_telemetry::metrics::CONTENT_TYPE;

use crate::app::AppState;

pub(super) async fn scrape(State(state): State<AppState>) -> Response {
    match &state.telemetry.metrics {
        Some(metrics) => {
            ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode(Some(&state.models))).into_response()
        }
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}
