//! The request path of a mock server: record, apply a queued or random fault, authenticate, route
//! to the dialect's handler.
//!
//! Routing is by path suffix, so one server answers OpenAI (`/v1/chat/completions`), prefix-less
//! (`/chat/completions`) and Azure (`/openai/deployments/{name}/chat/completions?api-version=...`)
//! clients alike, Anthropic's (`.../v1/messages`, `.../v1/messages/count_tokens`), Gemini's
//! (`.../models/{model}:generateContent`, AI Studio's and Vertex AI's, and the OAuth token
//! endpoint `POST /token`: see [`gemini`]), and Cohere's v2 (`/v2/chat`, `/v2/embed`), whose rate
//! limits and key failures are answered in Cohere's error shape. `GET /__stats` answers the
//! counters as JSON for tools outside the process (the
//! benchmark); it is not counted, recorded, faulted or authenticated.
//!
//! `POST .../v1/traces` makes the mock an OTLP/HTTP trace sink, so that a gateway under test or
//! benchmark can export its spans somewhere real: the body is read, counted
//! ([`Stats::otlp_exports`](crate::Stats::otlp_exports)) and discarded, and the answer is an
//! empty `ExportTraceServiceResponse` in the request's encoding, as the OTLP specification asks
//! (an empty body for protobuf, `{}` for JSON). Exports come on the exporter's schedule, not the
//! test's, so like `/__stats` they are kept out of the request count, the recording, the faults
//! and the key check.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::Fault;
use crate::anthropic;
use crate::bedrock;
use crate::body::{EventSource, MockBody, SseStream, StreamHooks};
use crate::gemini;
use crate::server::{ConnSignal, Shared};
use crate::stats::bump;
use crate::{cohere, openai};

/// The path of the counters endpoint.
const STATS_PATH: &str = "/__stats";
/// The path (suffix) of OTLP/HTTP trace exports.
const OTLP_TRACES_SUFFIX: &str = "/v1/traces";
/// The content type of OTLP/HTTP in protobuf, the exporters' default.
const PROTOBUF: &str = "application/x-protobuf";

/// What a handler needs to answer one request.
pub(crate) struct Cx<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    conn: &'a Arc<ConnSignal>,
    /// Set by [`Fault::ResetMidStream`]: cut the answer after this many events.
    reset_after: Option<usize>,
    /// Set by [`Fault::ErrorMidStream`]: a streaming handler sends its dialect's error event in
    /// place of the event with this index (from 0), and ends the stream there; a handler asked
    /// for a whole answer answers as [`Fault::Overloaded`] would.
    pub(crate) error_after: Option<usize>,
}

// === impl Cx ===

impl Cx<'_> {
    /// A streamed body over `source`, paced and hooked as the server is configured.
    pub(crate) fn stream(&self, source: Box<dyn EventSource>) -> MockBody {
        let config = &self.shared.config;
        MockBody::Stream(Box::new(SseStream::new(
            source,
            StreamHooks {
                counters: Arc::clone(&self.shared.counters),
                conn: Arc::clone(self.conn),
                ttft: config.ttft,
                chunk_delay: config.chunk_delay,
                close_after_stream: config.close_after_stream,
                reset_after: self.reset_after,
            },
        )))
    }
}

/// Answers one request. Never fails: every problem is an HTTP answer.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnSignal>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    if conn.closing() {
        // The server is closing this connection (close_after_stream): like llama.cpp's, it
        // leaves a request that arrived meanwhile unanswered, and the close ends it.
        return std::future::pending().await;
    }
    let (parts, body) = request.into_parts();
    if parts.method == Method::GET && parts.uri.path() == STATS_PATH {
        return Ok(stats(&shared));
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The client stopped sending mid-body; whatever we answer is unlikely to be read.
        Err(_) => {
            return Ok(openai::error(StatusCode::BAD_REQUEST, "Could not read the request body.", None));
        }
    };
    if parts.method == Method::POST && parts.uri.path().ends_with(OTLP_TRACES_SUFFIX) {
        shared.counters.add_otlp_export(body.len());
        return Ok(otlp_accepted(&parts.headers));
    }
    bump(&shared.counters.requests);
    shared.recorder.record(&parts, &body);

    // Faults and key checks on another dialect's paths answer in that dialect's shapes.
    let bedrock_path = bedrock::is_path(parts.uri.path());
    let anthropic_path = anthropic::owns(parts.uri.path());
    let google = gemini::is_gemini_path(parts.uri.path()) || parts.uri.path() == gemini::TOKEN_PATH;
    let mut reset_after = None;
    let mut error_after = None;
    // A queued fault first: a test that scripted one expects it on the next request, whatever
    // the dice say. The dice are only rolled for requests the queue leaves alone.
    let fault = match shared.faults.pop() {
        Some(fault) => Some((fault, false)),
        None => shared.random_faults.draw().map(|fault| (fault, true)),
    };
    match fault {
        Some((fault, random)) => {
            shared.counters.add_fault(&fault, random);
            match fault {
                Fault::Status { status, body } if bedrock_path => {
                    return Ok(bedrock::status_fault(status, &body));
                }
                Fault::Status { status, body } => return Ok(status_fault(status, &body)),
                Fault::RateLimited { retry_after_secs } if anthropic_path => {
                    return Ok(anthropic::rate_limited(&shared, retry_after_secs));
                }
                Fault::RateLimited { retry_after_secs } if cohere::owns(parts.uri.path()) => {
                    return Ok(cohere::rate_limited(retry_after_secs));
                }
                Fault::RateLimited { retry_after_secs } if bedrock_path => {
                    return Ok(bedrock::throttled(retry_after_secs));
                }
                Fault::RateLimited { retry_after_secs } if google => {
                    return Ok(gemini::rate_limited(retry_after_secs));
                }
                Fault::RateLimited { retry_after_secs } => return Ok(rate_limited(retry_after_secs)),
                Fault::ErrorMidStream { after_events } if streams(&parts.method, parts.uri.path()) => {
                    error_after = Some(after_events);
                }
                Fault::Overloaded | Fault::ErrorMidStream { .. } if anthropic_path => {
                    return Ok(anthropic::overloaded(&shared));
                }
                Fault::Overloaded | Fault::ErrorMidStream { .. } => return Ok(openai::overloaded()),
                Fault::Hang => std::future::pending::<()>().await,
                Fault::ResetBeforeHeaders => {
                    conn.reset();
                    std::future::pending::<()>().await;
                }
                Fault::ResetMidStream { after_chunks } => reset_after = Some(after_chunks),
            }
        }
        None if bedrock_path => {
            if let Some(keys) = &shared.config.aws
                && let Err(refused) = bedrock::authenticate(keys, &parts, &body)
            {
                return Ok(*refused);
            }
        }
        None => {
            if let Some(key) = &shared.config.api_key {
                // Each dialect looks for the key where its clients send it.
                let refused = if anthropic_path {
                    anthropic::refuse_key(&shared, key, &parts.headers)
                } else if google {
                    gemini::refusal(&shared.google, key, &parts)
                } else if cohere::owns(parts.uri.path()) {
                    authenticate(key, &parts.headers).err().map(|_| cohere::unauthorized())
                } else {
                    authenticate(key, &parts.headers).err().map(|message| {
                        openai::error(StatusCode::UNAUTHORIZED, message, Some("invalid_api_key"))
                    })
                };
                if let Some(response) = refused {
                    return Ok(response);
                }
            }
        }
    }

    let cx = Cx { shared: &shared, conn: &conn, reset_after, error_after };
    let path = parts.uri.path();
    let response = match parts.method {
        Method::POST if path.ends_with("/v2/chat") => delayed(&cx, cohere::chat(&cx, &body)).await,
        Method::POST if path.ends_with("/v2/embed") => delayed(&cx, cohere::embed(&cx, &body)).await,
        Method::POST if gemini::is_gemini_path(path) => {
            delayed(&cx, gemini::handle(&cx, path, parts.uri.query(), &body)).await
        }
        Method::POST if path == gemini::TOKEN_PATH => gemini::token(&cx, &body),
        Method::POST if path.ends_with("/chat/completions") => {
            delayed(&cx, openai::chat(&cx, path, &body)).await
        }
        Method::POST if bedrock_path => delayed(&cx, bedrock::converse(&cx, path, &body)).await,
        Method::POST if path.ends_with("/embeddings") => {
            delayed(&cx, openai::embeddings(&cx, path, &body)).await
        }
        Method::POST if path.ends_with(anthropic::MESSAGES_SUFFIX) => {
            delayed(&cx, anthropic::messages(&cx, &parts.headers, &body)).await
        }
        Method::POST if path.ends_with(anthropic::COUNT_TOKENS_SUFFIX) => {
            anthropic::count_tokens(&cx, &parts.headers, &body)
        }
        _ if anthropic_path => anthropic::not_found(&shared, &parts.method, path),
        Method::GET if path.ends_with("/models") => openai::models(),
        _ => openai::not_found(&parts.method, path),
    };
    Ok(match reset_after {
        Some(_) => response.map(|body| body.truncate(&conn)),
        None => response,
    })
}

/// Whether the route of `path` can stream, so that [`Fault::ErrorMidStream`] has a stream to
/// break; elsewhere it answers as [`Fault::Overloaded`].
fn streams(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path.ends_with("/chat/completions") || path.ends_with(anthropic::MESSAGES_SUFFIX))
}

/// Holds a whole (non-streamed) answer back for the configured delay; streams are paced by
/// their own hooks and go out at once.
async fn delayed(cx: &Cx<'_>, response: Response<MockBody>) -> Response<MockBody> {
    let delay = cx.shared.config.delay;
    if !delay.is_zero() && !response.body().is_stream() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Accepts OpenAI's `Authorization: Bearer <key>` and Azure's `api-key: <key>`; otherwise says
/// what is wrong.
fn authenticate(key: &str, headers: &HeaderMap) -> Result<(), &'static str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    let api_key = headers.get("api-key").map(HeaderValue::as_bytes);
    if bearer.is_some_and(|k| k == key.as_bytes()) || api_key.is_some_and(|k| k == key.as_bytes()) {
        Ok(())
    } else if bearer.is_none() && api_key.is_none() {
        Err("You didn't provide an API key. You need to provide your API key in an Authorization \
             header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    } else {
        Err("Incorrect API key provided. You can find your API key in the mock's configuration.")
    }
}

fn stats(shared: &Shared) -> Response<MockBody> {
    match serde_json::to_vec(&shared.counters.snapshot()) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(_) => openai::error(StatusCode::INTERNAL_SERVER_ERROR, "Could not encode the stats.", None),
    }
}

/// A full success for an OTLP export: an empty `ExportTraceServiceResponse` (no partial
/// success), encoded as the request was.
fn otlp_accepted(request: &HeaderMap) -> Response<MockBody> {
    let protobuf = request.get(CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(PROTOBUF.as_bytes()));
    if protobuf {
        // The empty protobuf message is zero bytes.
        let mut response = Response::new(MockBody::full(Bytes::new()));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        response
    } else {
        json_response(StatusCode::OK, &b"{}"[..])
    }
}

fn status_fault(status: u16, body: &serde_json::Value) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_vec(body) {
        Ok(json) => json_response(status, json),
        Err(_) => {
            openai::error(StatusCode::INTERNAL_SERVER_ERROR, "Could not encode the scripted body.", None)
        }
    }
}

fn rate_limited(retry_after_secs: u64) -> Response<MockBody> {
    let message = format!(
        "Rate limit reached for mock-gpt on requests per min (RPM): Limit 1, Used 1, Requested 1. \
         Please try again in {retry_after_secs}s."
    );
    let mut response = openai::error_of_type(
        StatusCode::TOO_MANY_REQUESTS,
        &message,
        "rate_limit_error",
        Some("rate_limit_exceeded"),
    );
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    headers.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
    if let Ok(reset) = HeaderValue::try_from(format!("{retry_after_secs}s")) {
        headers.insert("x-ratelimit-reset-requests", reset);
    }
    response
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, json: impl Into<Bytes>) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(json));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
