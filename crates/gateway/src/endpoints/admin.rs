//! The admin API under `/admin`: virtual keys, teams, users and spend reports.
//!
//! Only an operator may call it: the master key, or anyone on loopback when no master key is
//! configured (the gateway then listens on loopback only). Bodies are JSON objects; unknown
//! fields are errors that name the field, so a typo never silently does nothing. Errors use the
//! OpenAI envelope, like the rest of the gateway. `GET /admin/openapi.json` describes every
//! route ([docs/accounting.md](../../../../docs/accounting.md) explains them).
//!
//! A change made here applies on this replica at once (its key cache is emptied), and on other
//! replicas within `accounting.key_cache_ttl_ms`.

use axum::{
    Json,
    extract::{Path, Query, Request, State, rejection::QueryRejection},
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use switchyard_accounting::{
    model::{KeyRecord, now_ms},
    period::parse_utc,
    store::{
        GroupBy, KeyFilter, KeyPatch, NewKey, NewTeam, NewUser, ReportQuery, StoreError, TeamPatch, UserPatch,
    },
};
use switchyard_types::llm::{ErrorClass, LlmError};

use crate::{
    app::AppState,
    decode::{parse_json, read_body},
    respond::error_response,
};

/// The OpenAPI document of this API.
const OPENAPI: &str = include_str!("admin/openapi.json");

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// === keys ===

/// A key with its secret: the only answer that ever carries it.
#[derive(Serialize)]
struct WithSecret {
    /// The secret; store it now, it is not shown again.
    key: String,
    #[serde(flatten)]
    record: KeyRecord,
}

/// `POST /admin/keys`: a [`NewKey`], which may give `expires_in_seconds` (a lifetime from
/// now) instead of `expires_at`.
pub(super) async fn create_key(State(state): State<AppState>, request: Request) -> Response {
    let mut body: serde_json::Map<String, Value> = match body(&state, request, "key").await {
        Ok(body) => body,
        Err(error) => return error_response(&error),
    };
    let lifetime = match body.remove("expires_in_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => {
            return error_response(
                &LlmError::new(
                    ErrorClass::BadRequest,
                    "`expires_in_seconds` must be a whole number of seconds.",
                )
                .with_param("expires_in_seconds"),
            );
        }
    };
    let mut new: NewKey = match serde_json::from_value(Value::Object(body)) {
        Ok(new) => new,
        Err(error) => {
            return error_response(&LlmError::new(
                ErrorClass::BadRequest,
                format!(
                    "The key is not valid: {error}. The fields are name, team_id, user_id, models, limits, tags, metadata, expires_at and expires_in_seconds."
                ),
            ));
        }
    };
    if let Some(seconds) = lifetime {
        let ms = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        new.expires_at = Some(now_ms().saturating_add(ms));
    }
    answer(&state, state.accounts.store.create_key(new).await, StatusCode::CREATED, |(record, key)| {
        WithSecret { key, record }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyListQuery {
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    include_revoked: bool,
}

pub(super) async fn list_keys(
    State(state): State<AppState>,
    query: Result<Query<KeyListQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return error_response(&bad_query(&rejection, "team_id, user_id and include_revoked"));
        }
    };
    let filter =
        KeyFilter { team_id: query.team_id, user_id: query.user_id, include_revoked: query.include_revoked };
    read(state.accounts.store.list_keys(filter).await, list)
}

pub(super) async fn get_key(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    found(state.accounts.store.key(&id).await, "key", &id)
}

pub(super) async fn update_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let patch: KeyPatch = match body(&state, request, "key change").await {
        Ok(patch) => patch,
        Err(error) => return error_response(&error),
    };
    answer(&state, state.accounts.store.update_key(&id, patch).await, StatusCode::OK, |k| k)
}

pub(super) async fn revoke_key(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    answer(&state, state.accounts.store.revoke_key(&id).await, StatusCode::OK, |k| k)
}

pub(super) async fn rotate_key(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    answer(&state, state.accounts.store.rotate_key(&id).await, StatusCode::OK, |(record, key)| WithSecret {
        key,
        record,
    })
}

// === teams ===

pub(super) async fn create_team(State(state): State<AppState>, request: Request) -> Response {
    let new: NewTeam = match body(&state, request, "team").await {
        Ok(new) => new,
        Err(error) => return error_response(&error),
    };
    answer(&state, state.accounts.store.create_team(new).await, StatusCode::CREATED, |t| t)
}

pub(super) async fn list_teams(State(state): State<AppState>) -> Response {
    read(state.accounts.store.list_teams().await, list)
}

pub(super) async fn get_team(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    found(state.accounts.store.team(&id).await, "team", &id)
}

pub(super) async fn update_team(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let patch: TeamPatch = match body(&state, request, "team change").await {
        Ok(patch) => patch,
        Err(error) => return error_response(&error),
    };
    answer(&state, state.accounts.store.update_team(&id, patch).await, StatusCode::OK, |t| t)
}

pub(super) async fn delete_team(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    answer(&state, state.accounts.store.delete_team(&id).await, StatusCode::OK, |()| json!({"deleted": id}))
}

// === users ===

pub(super) async fn create_user(State(state): State<AppState>, request: Request) -> Response {
    let new: NewUser = match body(&state, request, "user").await {
        Ok(new) => new,
        Err(error) => return error_response(&error),
    };
    answer(&state, state.accounts.store.create_user(new).await, StatusCode::CREATED, |u| u)
}

pub(super) async fn list_users(State(state): State<AppState>) -> Response {
    read(state.accounts.store.list_users().await, list)
}

pub(super) async fn get_user(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    found(state.accounts.store.user(&id).await, "user", &id)
}

pub(super) async fn update_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let patch: UserPatch = match body(&state, request, "user change").await {
        Ok(patch) => patch,
        Err(error) => return error_response(&error),
    };
    answer(&state, state.accounts.store.update_user(&id, patch).await, StatusCode::OK, |u| u)
}

pub(super) async fn delete_user(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    answer(&state, state.accounts.store.delete_user(&id).await, StatusCode::OK, |()| json!({"deleted": id}))
}

// === spend ===

/// `GET /admin/spend`'s query: `group_by=key,model`, `from`/`to` as `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM:SSZ` or Unix milliseconds (`to` is exclusive), and filters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpendQuery {
    #[serde(default)]
    group_by: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

pub(super) async fn spend(
    State(state): State<AppState>,
    query: Result<Query<SpendQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return error_response(&bad_query(
                &rejection,
                "group_by, from, to, key_id, team_id, user_id and model",
            ));
        }
    };
    match report_query(query) {
        Ok(query) => read(state.accounts.store.spend_report(query).await, list),
        Err(error) => error_response(&error),
    }
}

/// Turns the query string into a report query, or says which parameter is wrong.
fn report_query(query: SpendQuery) -> Result<ReportQuery, LlmError> {
    let time = |name: &str, value: Option<String>| -> Result<Option<i64>, LlmError> {
        value
            .map(|v| {
                parse_utc(&v).ok_or_else(|| {
                    LlmError::new(
                        ErrorClass::BadRequest,
                        format!("`{name}` must be a date (2026-12-01), a UTC time (2026-12-01T08:00:00Z) or Unix milliseconds; got `{v}`."),
                    )
                    .with_param(name)
                })
            })
            .transpose()
    };
    let group_by = match query.group_by.as_deref() {
        None | Some("") => vec![GroupBy::Key],
        Some(list) => list.split(',').map(|g| group(g.trim())).collect::<Result<_, _>>()?,
    };
    Ok(ReportQuery {
        from_ms: time("from", query.from)?,
        to_ms: time("to", query.to)?,
        group_by,
        key_id: query.key_id,
        team_id: query.team_id,
        user_id: query.user_id,
        model: query.model,
    })
}

/// One grouping dimension by its name.
fn group(name: &str) -> Result<GroupBy, LlmError> {
    GroupBy::parse(name).ok_or_else(|| {
        LlmError::new(
            ErrorClass::BadRequest,
            format!("`group_by` takes key, team, user, end_user, model, deployment and day, separated by commas; `{name}` is none of them."),
        )
        .with_param("group_by")
    })
}

// === helpers ===

/// A query string that does not parse, in the error envelope.
fn bad_query(rejection: &QueryRejection, known: &str) -> LlmError {
    LlmError::new(
        ErrorClass::BadRequest,
        format!("The query string is not valid ({}). Its parameters are {known}.", rejection.body_text()),
    )
}

/// Reads and parses a JSON body of the admin API.
async fn body<T: DeserializeOwned>(state: &AppState, request: Request, what: &str) -> Result<T, LlmError> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, state.max_body_bytes).await?;
    if bytes.is_empty() {
        return parse_json(b"{}", what);
    }
    parse_json(&bytes, what)
}

/// `{"object": "list", "data": [...]}`, like OpenAI's lists.
fn list<T: Serialize>(items: Vec<T>) -> Value {
    json!({"object": "list", "data": items})
}

/// The answer to a change: `shape` of its value with `status`, or its error. A change empties
/// the key cache, so that this replica applies it to the next request.
fn answer<T, U: Serialize>(
    state: &AppState,
    result: Result<T, StoreError>,
    status: StatusCode,
    shape: impl FnOnce(T) -> U,
) -> Response {
    match result {
        Ok(value) => {
            state.accounts.keys.forget_all();
            (status, Json(shape(value))).into_response()
        }
        Err(error) => error_response(&store_error(error)),
    }
}

/// The answer to a read: `shape` of its value, or its error.
fn read<T, U: Serialize>(result: Result<T, StoreError>, shape: impl FnOnce(T) -> U) -> Response {
    match result {
        Ok(value) => Json(shape(value)).into_response(),
        Err(error) => error_response(&store_error(error)),
    }
}

/// The answer to a lookup by id.
fn found<T: Serialize>(result: Result<Option<T>, StoreError>, kind: &'static str, id: &str) -> Response {
    match result {
        Ok(Some(value)) => Json(value).into_response(),
        Ok(None) => error_response(&store_error(StoreError::NotFound { kind, id: id.to_owned() })),
        Err(error) => error_response(&store_error(error)),
    }
}

/// A store failure as the client's error.
fn store_error(error: StoreError) -> LlmError {
    let class = match &error {
        StoreError::NotFound { .. } => ErrorClass::NotFound,
        StoreError::Conflict { .. } => ErrorClass::Conflict,
        StoreError::Invalid { .. } => ErrorClass::BadRequest,
        _ => {
            tracing::warn!(%error, "admin API: the store failed");
            ErrorClass::Overloaded
        }
    };
    LlmError::new(class, error.to_string())
}
