//! The Anthropic dialect: Messages (whole and streamed; text, tool use, extended thinking, the
//! usage of prompt caching), token counting, and the error envelope, shaped as Anthropic's API
//! sends them today.
//!
//! Routes, by path suffix (so `/v1/messages`, `/anthropic/v1/messages` and a base URL ending
//! in `/v1` followed by `/v1/messages` all work):
//! - `POST .../messages`: a `Message`, or with `"stream": true` its server-sent events
//!   ([`stream`]);
//! - `POST .../messages/count_tokens`: `{"input_tokens": N}`, the same estimate as a message's.
//!
//! Both require the `anthropic-version` header (any value), and when
//! [`MockConfig::api_key`](crate::MockConfig::api_key) is set, the key in `x-api-key` (or in
//! `Authorization: Bearer`, as OAuth clients send it); faults queued for these paths answer in
//! Anthropic's shapes. Every answer, error or not, carries a `request-id` header
//! (`req_mock_N`), which error bodies repeat as `request_id`. Requests are validated as the API
//! validates them (`model`, `max_tokens`, non-empty `messages` starting with a user turn, the
//! thinking budget), with its messages.
//!
//! The answers are synthetic and deterministic:
//! - with `thinking` enabled (or adaptive), a `thinking` block first: `Mock reasoning about the
//!   request.`, signed with a fixed `signature`;
//! - with `tools`, unless `tool_choice` is `none` or the last message ends with a `tool_result`
//!   block: a `tool_use` block calling the tool `tool_choice` names, else the first tool, id
//!   `toolu_mock_N`, input `{"location":"Paris"}`, `stop_reason` `tool_use`;
//! - else text `tok0 tok1 ...`, [`MockConfig::chunks`](crate::MockConfig::chunks) tokens, fewer
//!   when `max_tokens` (which thinking counts against) is lower (`stop_reason` `max_tokens`), cut
//!   before the earliest match of a `stop_sequences` entry (`stop_reason` `stop_sequence`,
//!   `stop_sequence` set), else `end_turn`;
//! - the id is `msg_mock_N`, N counting the server's answers;
//! - input tokens: characters of text (tool names and descriptions, the system prompt, message
//!   text and tool results) / 4 + 1; when blocks carry `cache_control`, split into
//!   `input_tokens`, `cache_creation_input_tokens` (the first request with a prefix) and
//!   `cache_read_input_tokens` (later ones) by the rule of `request::Prompt::usage`;
//! - output tokens: one per thinking piece (3), text token, or tool input fragment (3).
//!
//! Triggers, for tests of error mapping:
//! - a request body containing `CONTEXT_TOO_LONG` answers 400 `invalid_request_error`
//!   `prompt is too long: N tokens > 200000 maximum` (N = 200000 + the estimate), and
//!   `count_tokens` counts it N;
//! - [`Fault::Overloaded`](crate::Fault::Overloaded) answers 529 `overloaded_error`;
//!   [`Fault::ErrorMidStream`](crate::Fault::ErrorMidStream) sends an `event: error`
//!   (`overloaded_error`) in place of the stream's event number `after_events` (counted from
//!   0), or, on a request that is not streamed, answers 529 as `Overloaded` does;
//! - [`Fault::RateLimited`](crate::Fault::RateLimited) answers 429 `rate_limit_error` with
//!   `retry-after` and `anthropic-ratelimit-requests-{limit,remaining,reset}` (remaining 0).

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;

use self::request::{Answer, MessagesView, Plan, Prompt};
use self::response::{ContentBlock, ErrorBody, ErrorEnvelope, Message, ToolInput, Usage};
use self::stream::MessageEvents;
use crate::body::MockBody;
use crate::server::Shared;
use crate::service::{Cx, json_response};

/// The path suffix of Messages.
pub(crate) const MESSAGES_SUFFIX: &str = "/messages";
/// The path suffix of token counting.
pub(crate) const COUNT_TOKENS_SUFFIX: &str = "/messages/count_tokens";
/// The header every request must carry.
const VERSION_HEADER: &str = "anthropic-version";
/// The header of every answer that names the request.
const REQUEST_ID_HEADER: &str = "request-id";
/// A request body containing this is refused as too long for the context window.
const CONTEXT_TOO_LONG: &[u8] = b"CONTEXT_TOO_LONG";
/// The context window the too-long message names (Claude's standard one).
const CONTEXT_WINDOW: u64 = 200_000;
const INVALID_REQUEST: &str = "invalid_request_error";
/// The type and message of an overloaded API, answered with status 529.
const OVERLOADED: (&str, &str) = ("overloaded_error", "Overloaded");
/// Anthropic's status for an overloaded API (not an IANA status; `http` accepts it).
const OVERLOADED_STATUS: u16 = 529;
/// The thinking of an answer, as its stream sends it: one piece a token.
const THINKING_PIECES: [&str; 3] = ["Mock reasoning", " about the", " request."];
/// The whole thinking: the concatenation of [`THINKING_PIECES`].
const THINKING: &str = "Mock reasoning about the request.";
/// The signature of every thinking block: constant, so that tests can check it came back
/// untouched in the next turn.
const THINKING_SIGNATURE: &str = "c3dpdGNoeWFyZC1tb2NrLXRoaW5raW5nLXNpZ25hdHVyZQ==";
/// The tool input, in the fragments a stream sends it in (the API opens with an empty one); their
/// concatenation parses to the input of a whole answer.
const TOOL_INPUT_FRAGMENTS: [&str; 3] = ["", "{\"location\":", " \"Paris\"}"];
const TOOL_INPUT: ToolInput = ToolInput::Fixed { location: "Paris" };

// === routes ===

/// Whether `path` is one of this dialect's: faults, the key check and errors there take
/// Anthropic's shapes.
pub(crate) fn owns(path: &str) -> bool {
    path.ends_with(MESSAGES_SUFFIX) || path.ends_with(COUNT_TOKENS_SUFFIX)
}

/// `POST .../messages`.
pub(crate) fn messages(cx: &Cx<'_>, headers: &HeaderMap, body: &[u8]) -> Response<MockBody> {
    let shared = cx.shared;
    let n = shared.next_id();
    let request = match parse(headers, body, true) {
        Ok(request) => request,
        Err(message) => return error(n, StatusCode::BAD_REQUEST, INVALID_REQUEST, &message),
    };
    let prompt = Prompt::of(&request);
    if memchr::memmem::find(body, CONTEXT_TOO_LONG).is_some() {
        let tokens = CONTEXT_WINDOW + prompt.tokens();
        let message = format!("prompt is too long: {tokens} tokens > {CONTEXT_WINDOW} maximum");
        return error(n, StatusCode::BAD_REQUEST, INVALID_REQUEST, &message);
    }
    let streamed = request.stream.unwrap_or(false);
    if cx.error_after.is_some() && !streamed {
        return overloaded_answer(n);
    }
    let input = prompt.usage(&shared.prompt_cache);
    let plan = request::plan(&request, shared.config.chunks);
    let model = request.model.as_deref().unwrap_or_default();
    let id = format!("msg_mock_{n}");
    let tool_id = format!("toolu_mock_{n}");

    if streamed {
        let events = MessageEvents::new(id, tool_id, model.to_owned(), plan, input, cx.error_after);
        let mut response = Response::new(cx.stream(Box::new(events)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        insert_request_id(headers, n);
        return response;
    }

    let output_tokens = plan.output_tokens();
    let mut message = Message::new(&id, model, Usage::new(input, output_tokens));
    let (stop_reason, stop_sequence) = content(&plan, &tool_id, &mut message.content);
    message.stop_reason = Some(stop_reason);
    message.stop_sequence = stop_sequence;
    shared.counters.add_usage(input.total(), output_tokens);
    answer(n, &message)
}

/// `POST .../messages/count_tokens`.
pub(crate) fn count_tokens(cx: &Cx<'_>, headers: &HeaderMap, body: &[u8]) -> Response<MockBody> {
    #[derive(Serialize)]
    struct Count {
        input_tokens: u64,
    }

    let n = cx.shared.next_id();
    let request = match parse(headers, body, false) {
        Ok(request) => request,
        Err(message) => return error(n, StatusCode::BAD_REQUEST, INVALID_REQUEST, &message),
    };
    let mut input_tokens = Prompt::of(&request).tokens();
    if memchr::memmem::find(body, CONTEXT_TOO_LONG).is_some() {
        input_tokens += CONTEXT_WINDOW;
    }
    answer(n, &Count { input_tokens })
}

/// Any other method on this dialect's paths.
pub(crate) fn not_found(shared: &Shared, method: &Method, path: &str) -> Response<MockBody> {
    let message = format!("Not Found: {method} {path}");
    error(shared.next_id(), StatusCode::NOT_FOUND, "not_found_error", &message)
}

// === errors and faults ===

/// Checks the key as the API does: `x-api-key`, or `Authorization: Bearer` (OAuth tokens).
/// Answers the refusal, a 401 `authentication_error` in the API's words, when it is not there.
pub(crate) fn refuse_key(shared: &Shared, key: &str, headers: &HeaderMap) -> Option<Response<MockBody>> {
    let api_key = headers.get("x-api-key").map(|value| value.as_bytes().trim_ascii());
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    if api_key.is_some_and(|k| k == key.as_bytes()) || bearer.is_some_and(|k| k == key.as_bytes()) {
        return None;
    }
    let message = if api_key.is_none() && bearer.is_none() {
        "x-api-key header is required"
    } else {
        "invalid x-api-key"
    };
    Some(error(shared.next_id(), StatusCode::UNAUTHORIZED, "authentication_error", message))
}

/// [`Fault::RateLimited`](crate::Fault::RateLimited) on this dialect's paths: 429
/// `rate_limit_error`, with `retry-after` and the `anthropic-ratelimit-requests-*` headers.
pub(crate) fn rate_limited(shared: &Shared, retry_after_secs: u64) -> Response<MockBody> {
    let message = "Number of requests has exceeded your per-minute rate limit \
                   (https://docs.anthropic.com/en/api/rate-limits); see the response headers for \
                   current usage. Please try again later.";
    let mut response = error(shared.next_id(), StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message);
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    headers.insert("anthropic-ratelimit-requests-limit", HeaderValue::from_static("1"));
    headers.insert("anthropic-ratelimit-requests-remaining", HeaderValue::from_static("0"));
    let reset = unix_now().saturating_add(retry_after_secs);
    if let Ok(reset) = HeaderValue::try_from(rfc3339(reset)) {
        headers.insert("anthropic-ratelimit-requests-reset", reset);
    }
    response
}

/// [`Fault::Overloaded`](crate::Fault::Overloaded) on this dialect's paths: 529
/// `overloaded_error`.
pub(crate) fn overloaded(shared: &Shared) -> Response<MockBody> {
    overloaded_answer(shared.next_id())
}

fn overloaded_answer(n: u64) -> Response<MockBody> {
    let status = StatusCode::from_u16(OVERLOADED_STATUS).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    error(n, status, OVERLOADED.0, OVERLOADED.1)
}

/// An error in Anthropic's envelope, named `req_mock_{n}` in the body and the headers.
fn error(n: u64, status: StatusCode, kind: &str, message: &str) -> Response<MockBody> {
    let request_id = format!("req_mock_{n}");
    let envelope =
        ErrorEnvelope { kind: "error", error: ErrorBody { kind, message }, request_id: &request_id };
    let json = serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = json_response(status, json);
    insert_request_id(response.headers_mut(), n);
    response
}

// === helpers ===

/// Checks the version header, parses and validates the body; otherwise the message of the
/// `invalid_request_error` to answer.
fn parse<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    needs_max_tokens: bool,
) -> Result<MessagesView<'a>, String> {
    if !headers.contains_key(VERSION_HEADER) {
        return Err("anthropic-version: header is required".into());
    }
    let request: MessagesView<'_> = serde_json::from_slice(body).map_err(|err| {
        if err.is_data() {
            err.to_string()
        } else {
            format!("There was an issue with your request body: it is not valid JSON ({err}).")
        }
    })?;
    request::validate(&request, needs_max_tokens)?;
    Ok(request)
}

/// Fills the content of a whole answer; answers its stop reason and stop sequence.
fn content<'a>(
    plan: &'a Plan,
    tool_id: &'a str,
    content: &mut Vec<ContentBlock<'a>>,
) -> (&'a str, Option<&'a str>) {
    if plan.thinking {
        content.push(ContentBlock::Thinking { thinking: THINKING, signature: THINKING_SIGNATURE });
    }
    match &plan.answer {
        Answer::Text { text, stop_reason, stop_sequence } => {
            content.push(ContentBlock::Text { text });
            (*stop_reason, stop_sequence.as_deref())
        }
        Answer::ToolUse { name } => {
            content.push(ContentBlock::ToolUse { id: tool_id, name, input: TOOL_INPUT });
            ("tool_use", None)
        }
    }
}

/// A 200 with `value` as JSON and the request id.
fn answer(n: u64, value: &impl Serialize) -> Response<MockBody> {
    match serde_json::to_vec(value) {
        Ok(json) => {
            let mut response = json_response(StatusCode::OK, json);
            insert_request_id(response.headers_mut(), n);
            response
        }
        Err(_) => error(n, StatusCode::INTERNAL_SERVER_ERROR, "api_error", "Could not encode the answer."),
    }
}

fn insert_request_id(headers: &mut HeaderMap, n: u64) {
    if let Ok(value) = HeaderValue::try_from(format!("req_mock_{n}")) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `unix` seconds as an RFC 3339 UTC time, as the `anthropic-ratelimit-*-reset` headers give it.
/// (The accounting crate has its own calendar code; the testkit does not depend on it.)
fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil-from-days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}
