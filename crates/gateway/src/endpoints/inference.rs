//! `POST /v1/chat/completions`, `POST /v1/embeddings` and Anthropic's `POST /v1/messages`:
//! decode, call the stack, encode in the client's dialect (errors included).
//!
//! A Messages request carries its `anthropic-version` and `anthropic-beta` headers down the
//! stack ([`ClientHeaders`]): an Anthropic deployment sends them on, any other ignores them.
//!
//! Besides the body, a request may carry routing instructions:
//! - `x-switchyard-timeout-ms`: a deadline for the whole request, retries included;
//! - `x-switchyard-ttft-timeout-ms`: for a stream, the longest wait for its first chunk on
//!   each attempt;
//! - `"models": [..]` in a chat body: the client's own fallback models, in order, when the
//!   configuration allows it (`router.allow_client_fallbacks`); the list is taken out of the
//!   body before it goes upstream. Otherwise the field is passed through untouched.
//!
//! A virtual key may only call the models it (and its team) allows: another model is a 403
//! that lists the ones it may call. Its limits are then checked by the admission layer, and
//! every answer that had limits to check says where they stand (`x-ratelimit-*`, OpenAI's
//! header names: the tightest requests-per-minute and tokens-per-minute limit). A complete
//! answer says what it cost (`x-switchyard-cost-usd`, when its deployment has a price); a
//! stream's cost is in its spend record, since its headers leave before its usage is known.
//!
//! Every answer that reached routing, success or error, says how many attempts it took
//! (`x-switchyard-attempts`) and how long the gateway itself spent on it
//! (`x-switchyard-overhead-ms`: until the answer, or a stream's first chunk, was ready, less
//! provider time and waits between attempts); a request refused before (unreadable body, bad
//! header) has neither. Each routed request has a server span (OpenTelemetry GenAI
//! conventions) and is settled ([`crate::settle`]) when its answer ends.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    response::Response,
};
use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_accounting::admission::{AdmissionSlot, RequestSize, ResolvedModel};
use switchyard_router::{Attempts, fallback::ClientFallbacks, timeout::RequestTimeouts};
use switchyard_types::{
    anthropic::{ClientHeaders, MessagesRequest},
    llm::{ChunkStream, ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody},
    openai::ChatCompletionRequest,
};
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::Instrument;

use crate::{
    app::AppState,
    auth::Caller,
    decode::{parse_json, read_body},
    encode::{anthropic_response, openai_response},
    headers,
    respond::{Dialect, error_response_in},
    settle::{self, Prompt, Settle, Spend},
};

/// The longest list of client fallbacks accepted.
const MAX_CLIENT_FALLBACKS: usize = 10;

pub(super) async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    let allow = state.allow_client_fallbacks;
    serve(
        &state,
        request,
        Dialect::OpenAi,
        "chat completion request",
        move |mut chat: ChatCompletionRequest| {
            let fallbacks = if allow { client_fallbacks(&mut chat)? } else { None };
            Ok((Operation::chat(chat), fallbacks))
        },
    )
    .await
}

pub(super) async fn embeddings(State(state): State<AppState>, request: Request) -> Response {
    serve(&state, request, Dialect::OpenAi, "embeddings request", |body| {
        Ok((Operation::embeddings(body), None))
    })
    .await
}

pub(super) async fn messages(State(state): State<AppState>, request: Request) -> Response {
    serve(&state, request, Dialect::Anthropic, "Messages request", |body: MessagesRequest| {
        if body.max_tokens.is_none() {
            return Err(LlmError::new(
                ErrorClass::BadRequest,
                "max_tokens: Field required. Send the most tokens the answer may take, e.g. \"max_tokens\": 1024.",
            )
            .with_param("max_tokens"));
        }
        Ok((Operation::messages(body), None))
    })
    .await
}

type Prepared = Result<(Operation, Option<ClientFallbacks>), LlmError>;

async fn serve<T: DeserializeOwned>(
    state: &AppState,
    request: Request,
    dialect: Dialect,
    what: &str,
    prepare: impl FnOnce(T) -> Prepared,
) -> Response {
    let error_response = |error: &LlmError| error_response_in(dialect, error);
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let mut size = 0;
    let prepared = match read_body(&parts.headers, body, state.max_body_bytes).await {
        Ok(bytes) => {
            size = bytes.len();
            parse_json::<T>(&bytes, what).and_then(prepare)
        }
        Err(error) => Err(error),
    };
    let timeouts = request_timeouts(&parts.headers);
    let (mut request, timeouts) = match (prepared, timeouts) {
        (Ok((operation, fallbacks)), Ok(timeouts)) => {
            // The stack starts with empty extensions, not the HTTP request's: retries clone
            // them for every attempt, and nothing below reads the HTTP ones.
            let mut request = LlmRequest::new(operation);
            if let Some(fallbacks) = fallbacks {
                request.extensions.insert(fallbacks);
            }
            if dialect == Dialect::Anthropic {
                request.extensions.insert(ClientHeaders {
                    version: parts.headers.get("anthropic-version").cloned(),
                    beta: parts.headers.get("anthropic-beta").cloned(),
                });
            }
            (request, timeouts)
        }
        (Err(error), _) | (_, Err(error)) => return error_response(&error),
    };
    if let Some(timeouts) = timeouts {
        request.extensions.insert(timeouts);
    }
    let attempts = Attempts::of(&mut request);
    let operation = request.op.name();
    let model = state.models.resolve(request.model()).map(|(group, _)| Arc::clone(group.shared_name()));
    let identity = parts.extensions.get::<Caller>().and_then(Caller::identity).cloned();
    if let Some(identity) = &identity {
        // The client's own fallbacks are models it asks for too.
        let fallbacks =
            request.extensions.get::<ClientFallbacks>().map(|f| f.0.as_slice()).unwrap_or_default();
        let asked = model.iter().map(|m| m.to_string()).chain(
            fallbacks
                .iter()
                .filter_map(|name| state.models.resolve(name).map(|(group, _)| group.name().to_owned())),
        );
        for asked in asked {
            if !identity.allows_model(&asked) {
                return error_response(&forbidden_model(identity, &asked));
            }
        }
    }
    let (end_user, prompt, wants_usage) = match &request.op {
        Operation::Chat(chat) => (
            chat.user.clone(),
            Some(Prompt::Chat(Arc::clone(chat))),
            chat.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true),
        ),
        // Anthropic streams always carry their usage.
        Operation::Messages(messages) => {
            (messages.user_id().map(str::to_owned), Some(Prompt::Messages(Arc::clone(messages))), true)
        }
        Operation::Embeddings(embeddings) => {
            (embeddings.extra.get("user").and_then(Value::as_str).map(str::to_owned), None, true)
        }
    };
    let slot = AdmissionSlot::of(&mut request);
    request.extensions.insert(RequestSize(size));
    if let Some(model) = &model {
        request.extensions.insert(ResolvedModel(Arc::clone(model)));
    }
    if let Some(identity) = &identity {
        request.extensions.insert(Arc::clone(identity));
    }
    let spend = Spend {
        accounts: Arc::clone(&state.accounts),
        identity,
        end_user,
        requested: request.model().to_owned(),
        slot: slot.clone(),
        prompt,
    };
    let span = tracing::info_span!(
        target: switchyard_router::SPAN_TARGET,
        "request",
        otel.name = %format_args!("{operation} {}", request.model()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = operation,
        gen_ai.request.model = request.model(),
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        switchyard.deployment = tracing::field::Empty,
        switchyard.attempts = tracing::field::Empty,
        gen_ai.input.messages = tracing::field::Empty,
        gen_ai.output.messages = tracing::field::Empty,
    );
    // Prompts may hold personal data: on spans only when the operator asked for it.
    if switchyard_telemetry::trace::capture_content() && !span.is_disabled() {
        let messages = match &request.op {
            Operation::Chat(chat) => serde_json::to_string(&chat.messages).ok(),
            Operation::Messages(messages) => serde_json::to_string(&messages.messages).ok(),
            Operation::Embeddings(_) => None,
        };
        if let Some(messages) = messages {
            span.record("gen_ai.input.messages", messages);
        }
    }
    switchyard_telemetry::trace::set_parent(&span, &parts.headers);
    let settle = Settle::new(
        &state.telemetry,
        started,
        operation,
        model,
        request.is_stream(),
        attempts.clone(),
        parts.headers.get(headers::REQUEST_ID).cloned(),
        span.clone(),
        spend,
    );
    let result = state.stack.clone().oneshot(request).instrument(span).await;
    let answered = Instant::now();
    let overhead = settle.overhead(answered);
    let mut cost = None;
    let mut response = match result {
        Ok(LlmResponse { body, served_by }) => {
            let body = match body {
                ResponseBody::ChatStream(chunks) => {
                    let chunks = settle.watch(chunks, answered);
                    ResponseBody::ChatStream(if wants_usage { chunks } else { without_usage_report(chunks) })
                }
                ResponseBody::Chat(completion) => {
                    cost = settle::finish_json(settle, &completion, answered);
                    ResponseBody::Chat(completion)
                }
                ResponseBody::Embeddings(embeddings) => {
                    cost = settle::finish_json(settle, &embeddings, answered);
                    ResponseBody::Embeddings(embeddings)
                }
                ResponseBody::MessageStream(events) => {
                    ResponseBody::MessageStream(settle.watch(events, answered))
                }
                ResponseBody::Message(message) => {
                    cost = settle::finish_json(settle, &message, answered);
                    ResponseBody::Message(message)
                }
            };
            let response = LlmResponse { body, served_by };
            match dialect {
                Dialect::OpenAi => openai_response(response).await,
                Dialect::Anthropic => anthropic_response(response).await,
            }
        }
        Err(error) => {
            tracing::debug!(class = %error.class, error = %error.message, "request failed");
            settle::finish_error(settle, &error, answered);
            error_response(&error)
        }
    };
    let sent = response.headers_mut();
    // Zero says no deployment was tried (every one was at capacity, or the model is unknown).
    sent.insert(headers::ATTEMPTS, HeaderValue::from(attempts.count()));
    if let Ok(value) = HeaderValue::try_from(format!("{:.3}", overhead.as_secs_f64() * 1e3)) {
        sent.insert(headers::OVERHEAD, value);
    }
    if let Some(cost) = cost
        && let Ok(value) = HeaderValue::try_from(format!("{cost:.9}"))
    {
        sent.insert(headers::COST, value);
    }
    slot.with(|decision| headers::rate_limits(sent, &decision.standings, decision.refusal.as_ref()));
    response
}

/// A 403 for a key that may not call `model`, listing what it may call.
fn forbidden_model(identity: &switchyard_accounting::model::Identity, model: &str) -> LlmError {
    let mut allowed: Vec<&str> = identity.key.models.iter().map(String::as_str).collect();
    if allowed.is_empty()
        && let Some(team) = &identity.team
    {
        allowed = team.models.iter().map(String::as_str).collect();
    }
    LlmError::new(
        ErrorClass::Forbidden,
        format!(
            "This key ({}) may not call the model `{model}`. It may call: {}. Ask an admin to add the model to the key.",
            identity.key.id,
            allowed.join(", ")
        ),
    )
    .with_param("model")
}

/// Leaves out the stream's usage report, which the gateway asked the provider for (to bill the
/// request) but the client did not.
fn without_usage_report(chunks: ChunkStream) -> ChunkStream {
    use futures_util::StreamExt;
    Box::pin(chunks.filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_usage_only()))))
}

/// The client's own limits, from the request headers.
fn request_timeouts(sent: &HeaderMap) -> Result<Option<RequestTimeouts>, LlmError> {
    let deadline = millis(sent, headers::TIMEOUT)?.map(|d| Instant::now() + d);
    let ttft = millis(sent, headers::TTFT_TIMEOUT)?;
    Ok((deadline.is_some() || ttft.is_some()).then_some(RequestTimeouts { deadline, ttft }))
}

fn millis(sent: &HeaderMap, name: &str) -> Result<Option<Duration>, LlmError> {
    let Some(value) = sent.get(name) else { return Ok(None) };
    match value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&ms| ms > 0) {
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
        None => Err(LlmError::new(
            ErrorClass::BadRequest,
            format!(
                "The header {name} must be a whole number of milliseconds greater than 0, such as 30000."
            ),
        )),
    }
}

/// Takes the client's fallback list (`models`) out of a chat body.
fn client_fallbacks(chat: &mut ChatCompletionRequest) -> Result<Option<ClientFallbacks>, LlmError> {
    let Some(models) = chat.extra.remove("models") else { return Ok(None) };
    let invalid = || {
        LlmError::new(
            ErrorClass::BadRequest,
            format!(
                "`models` must be an array of at most {MAX_CLIENT_FALLBACKS} model names to try in order after `model`."
            ),
        )
        .with_param("models")
    };
    let Value::Array(items) = models else { return Err(invalid()) };
    if items.len() > MAX_CLIENT_FALLBACKS {
        return Err(invalid());
    }
    let names = items
        .into_iter()
        .map(|item| match item {
            Value::String(name) if !name.is_empty() => Ok(name),
            _ => Err(invalid()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ClientFallbacks(names)))
}
