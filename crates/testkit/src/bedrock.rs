//! The AWS Bedrock dialect: Converse (`POST .../model/{modelId}/converse`) and ConverseStream
//! (`.../converse-stream`, AWS's binary event stream), SigV4 checking, and Bedrock's error
//! shape (status, `x-amzn-errortype`, `{"message"}`).
//!
//! The answers are synthetic like the OpenAI dialect's:
//! - text: `tok0 tok1 ...`, [`MockConfig::chunks`](crate::MockConfig::chunks) tokens, fewer
//!   when `inferenceConfig.maxTokens` is lower (then `stopReason` is `max_tokens`);
//! - with `toolConfig.tools`, unless the last turn holds a `toolResult`: a `toolUse` of the
//!   first tool, id `tooluse_mock_1`, input `{"location":"Paris"}`, `stopReason` `tool_use`;
//! - usage: `inputTokens` = characters of text / 4 + 1, `outputTokens` = the pieces sent.
//!
//! A stream is `messageStart`, a `contentBlockStart` for a tool call, one `contentBlockDelta`
//! per token (or argument fragment), `contentBlockStop`, `messageStop` and `metadata`, each in
//! its own frame, encoded by `aws-smithy-eventstream` (the AWS SDK's codec) with the headers
//! Bedrock sends (`:event-type`, `:content-type`, `:message-type`) and, like Bedrock, a `p`
//! member of padding in every payload. Frames are paced by the shared stream engine.
//!
//! With [`MockConfig::aws`](crate::MockConfig::aws) set, every request must carry a SigV4
//! signature by those credentials: the mock recomputes it with `aws-sigv4` over the request
//! it received (the headers named in `SignedHeaders`, the body, the `x-amz-date`) and answers
//! 403 as Bedrock does when it does not match: `UnrecognizedClientException` for an unknown
//! access key or session token, `InvalidSignatureException` for a wrong signature or one more
//! than five minutes old, `MissingAuthenticationTokenException` without one.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
use bytes::BytesMut;
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::body::{EventSource, MockBody, Pace, Written};
use crate::config::AwsKeys;
use crate::service::{Cx, json_response};
use crate::stats::{Counters, bump};
use crate::synth;

const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";
const TOOL_USE_ID: &str = "tooluse_mock_1";
/// The tool input, in the fragments a stream sends it in; their concatenation is the input.
const TOOL_INPUT_FRAGMENTS: [&str; 5] = ["{\"", "location", "\":\"", "Paris", "\"}"];
/// Bedrock pads every event payload with a `p` member of varying length, so that payload
/// sizes say nothing of the text; a fixed one does for the mock.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0";
/// How old a signature may be: AWS refuses a request signed more than five minutes away.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Whether `path` is a Converse route (`.../model/{id}/converse` or `.../converse-stream`).
pub(crate) fn is_path(path: &str) -> bool {
    path.contains("/model/") && (path.ends_with("/converse") || path.ends_with("/converse-stream"))
}

// === requests ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseView {
    #[serde(default)]
    messages: Vec<TurnView>,
    #[serde(default)]
    system: Vec<BlockView>,
    #[serde(default)]
    inference_config: Option<InferenceView>,
    #[serde(default)]
    tool_config: Option<ToolConfigView>,
}

#[derive(Debug, Deserialize)]
struct TurnView {
    #[serde(default)]
    content: Vec<BlockView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockView {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_result: Option<ToolResultView>,
}

#[derive(Debug, Deserialize)]
struct ToolResultView {
    #[serde(default)]
    content: Vec<BlockView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InferenceView {
    #[serde(default)]
    max_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ToolConfigView {
    #[serde(default)]
    tools: Vec<ToolView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolView {
    #[serde(default)]
    tool_spec: Option<ToolSpecView>,
}

#[derive(Debug, Deserialize)]
struct ToolSpecView {
    name: String,
}

/// What a request is answered with.
#[derive(Debug, Clone)]
enum Answer {
    Text { tokens: usize, stop_reason: &'static str },
    ToolUse { name: String },
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenUsage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
}

/// The frames of one streamed answer.
#[derive(Debug)]
struct ConverseEvents {
    answer: Answer,
    usage: TokenUsage,
    step: usize,
    piece: String,
}

// === handlers ===

/// `POST .../model/{modelId}/converse` and `.../converse-stream`.
pub(crate) fn converse(cx: &Cx<'_>, path: &str, body: &[u8]) -> Response<MockBody> {
    let counters = &cx.shared.counters;
    bump(&counters.chat_completions);
    let request: ConverseView = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &format!("Malformed input request: {err}"),
            );
        }
    };
    if request.messages.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
        );
    }
    let chars: usize = request
        .system
        .iter()
        .chain(request.messages.iter().flat_map(|t| &t.content))
        .map(BlockView::chars)
        .sum();
    let after_tool_result =
        request.messages.last().is_some_and(|t| t.content.iter().any(|b| b.tool_result.is_some()));
    let tool = request.tool_config.iter().flat_map(|c| &c.tools).find_map(|t| t.tool_spec.as_ref());
    let answer = match tool {
        Some(spec) if !after_tool_result => Answer::ToolUse { name: spec.name.clone() },
        _ => {
            let chunks = cx.shared.config.chunks;
            let cap =
                request.inference_config.and_then(|c| c.max_tokens).and_then(|c| usize::try_from(c).ok());
            match cap.filter(|&cap| cap < chunks) {
                Some(cap) => Answer::Text { tokens: cap, stop_reason: "max_tokens" },
                None => Answer::Text { tokens: chunks, stop_reason: "end_turn" },
            }
        }
    };
    let input_tokens = synth::prompt_tokens(chars);
    let output_tokens = answer.pieces() as u64;
    let usage = TokenUsage { input_tokens, output_tokens, total_tokens: input_tokens + output_tokens };
    let request_id = format!("mock-request-{}", cx.shared.next_id());

    if path.ends_with("/converse-stream") {
        let events = ConverseEvents { answer, usage, step: 0, piece: String::new() };
        let mut response = Response::new(cx.stream(Box::new(events)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
        insert_request_id(headers, &request_id);
        return response;
    }

    let content = match &answer {
        Answer::Text { tokens, .. } => json!([{"text": synth::text(*tokens)}]),
        Answer::ToolUse { name } => {
            json!([{"toolUse": {"toolUseId": TOOL_USE_ID, "name": name, "input": {"location": "Paris"}}}])
        }
    };
    let body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": answer.stop_reason(),
        "usage": usage,
        "metrics": {"latencyMs": 1},
    });
    counters.add_usage(usage.input_tokens, usage.output_tokens);
    let mut response = json_response(StatusCode::OK, body.to_string());
    insert_request_id(response.headers_mut(), &request_id);
    response
}

/// An error in Bedrock's shape: the status, `x-amzn-errortype` and `{"message"}`.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<MockBody> {
    let mut response = json_response(status, json!({"message": message}).to_string());
    if let Ok(value) =
        HeaderValue::try_from(format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
    {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

/// [`Fault::RateLimited`](crate::Fault::RateLimited) on a Bedrock path: a 429
/// `ThrottlingException`. Bedrock itself sends no `Retry-After`; the fault asks for one, so
/// the mock adds it.
pub(crate) fn throttled(retry_after_secs: u64) -> Response<MockBody> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// [`Fault::Status`](crate::Fault::Status) on a Bedrock path: the body as scripted, with the
/// `x-amzn-errortype` its `__type` names, else the exception Bedrock answers that status with.
pub(crate) fn status_fault(status: u16, body: &Value) -> Response<MockBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = body.get("__type").and_then(Value::as_str).unwrap_or(match status.as_u16() {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    });
    let mut response = json_response(status, body.to_string());
    if let Ok(value) = HeaderValue::try_from(kind) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

fn insert_request_id(headers: &mut http::HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::try_from(id) {
        headers.insert("x-amzn-requestid", value);
    }
}

// === SigV4 ===

/// Checks the request's SigV4 signature against `keys`; the error is Bedrock's answer.
pub(crate) fn authenticate(
    keys: &AwsKeys,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<(), Box<Response<MockBody>>> {
    let forbidden = |kind: &str, message: &str| Box::new(error(StatusCode::FORBIDDEN, kind, message));
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = header("authorization") else {
        return Err(forbidden("MissingAuthenticationTokenException", "Missing Authentication Token"));
    };
    let incomplete = || {
        forbidden(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        )
    };
    let fields = authorization.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(incomplete)?;
    let field =
        |name: &str| fields.split(',').map(str::trim).find_map(|f| f.strip_prefix(name)?.strip_prefix('='));
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (field("Credential"), field("SignedHeaders"), field("Signature"))
    else {
        return Err(incomplete());
    };
    // AKID/20240101/us-east-1/bedrock/aws4_request
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(incomplete());
    };
    let unrecognized =
        || forbidden("UnrecognizedClientException", "The security token included in the request is invalid.");
    if *key_id != keys.access_key_id {
        return Err(unrecognized());
    }
    let token = header("x-amz-security-token");
    if keys.session_token.is_some() && token != keys.session_token.as_deref() {
        return Err(unrecognized());
    }
    if *service != "bedrock" {
        return Err(forbidden(
            "InvalidSignatureException",
            &format!(
                "Credential should be scoped to correct service: 'bedrock'. (it is scoped to '{service}')"
            ),
        ));
    }
    let time = header("x-amz-date").and_then(parse_amz_date).ok_or_else(|| {
        forbidden(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    let skew = SystemTime::now().duration_since(time).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(forbidden(
            "InvalidSignatureException",
            "Signature expired: the request was signed more than 5 minutes from now.",
        ));
    }
    let expected =
        recompute(parts, body, signed_headers, key_id, region, token, time, &keys.secret_access_key);
    if expected.as_deref() != Some(signature) {
        return Err(forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

/// The signature the request should carry, computed as its sender should have.
#[allow(clippy::too_many_arguments, reason = "each is one piece of the signed request")]
fn recompute(
    parts: &http::request::Parts,
    body: &[u8],
    signed_headers: &str,
    key_id: &str,
    region: &str,
    token: Option<&str>,
    time: SystemTime,
    secret: &str,
) -> Option<String> {
    let host = parts.headers.get(HOST)?.to_str().ok()?;
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{host}{path_and_query}");
    // The signer adds the date and the token itself, from the time and the credentials.
    let headers =
        signed_headers.split(';').filter(|name| !matches!(*name, "x-amz-date" | "x-amz-security-token"));
    let headers: Vec<(&str, &str)> =
        headers.map(|name| Some((name, parts.headers.get(name)?.to_str().ok()?))).collect::<Option<_>>()?;
    let identity =
        Credentials::new(key_id, secret, token.map(str::to_owned), None, "switchyard-testkit").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let request =
        SignableRequest::new("POST", Cow::Owned(url), headers.into_iter(), SignableBody::Bytes(body)).ok()?;
    let (_, signature) = sign(request, &params).ok()?.into_parts();
    Some(signature)
}

/// `20240101T120000Z`.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    if value.len() != 16 || value.as_bytes()[8] != b'T' || !value.ends_with('Z') {
        return None;
    }
    let number = |at: std::ops::Range<usize>| value.get(at)?.parse::<u16>().ok();
    let month = time::Month::try_from(u8::try_from(number(4..6)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::from(number(0..4)?), month, u8::try_from(number(6..8)?).ok()?)
            .ok()?;
    let [hour, minute, second] =
        [number(9..11)?, number(11..13)?, number(13..15)?].map(|n| u8::try_from(n).unwrap_or(u8::MAX));
    let time = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc().into())
}

// === impl BlockView ===

impl BlockView {
    fn chars(&self) -> usize {
        let own = self.text.as_deref().map_or(0, |t| t.chars().count());
        own + self.tool_result.iter().flat_map(|r| &r.content).map(BlockView::chars).sum::<usize>()
    }
}

// === impl Answer ===

impl Answer {
    fn pieces(&self) -> usize {
        match self {
            Self::Text { tokens, .. } => *tokens,
            Self::ToolUse { .. } => TOOL_INPUT_FRAGMENTS.len(),
        }
    }

    fn stop_reason(&self) -> &'static str {
        match self {
            Self::Text { stop_reason, .. } => stop_reason,
            Self::ToolUse { .. } => "tool_use",
        }
    }
}

// === impl ConverseEvents ===

/// Appends one event frame: `event_type`'s `payload`, padded as Bedrock pads it.
fn write_event(buf: &mut BytesMut, event_type: &'static str, mut payload: Value) {
    payload["p"] = Value::from(&PADDING[..(payload.to_string().len() % PADDING.len()).max(4)]);
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":event-type", FrameValue::String(event_type.into())))
        .add_header(Header::new(":content-type", FrameValue::String("application/json".into())))
        .add_header(Header::new(":message-type", FrameValue::String("event".into())));
    // Only oversized frames (16 MiB) fail to encode; the mock's are a few hundred bytes.
    let _ = write_message_to(&message, buf);
}

impl EventSource for ConverseEvents {
    fn write_next(&mut self, buf: &mut BytesMut, counters: &Counters) -> Option<Written> {
        let pieces = self.answer.pieces();
        let is_tool = matches!(self.answer, Answer::ToolUse { .. });
        // Steps: 0 messageStart, [1 contentBlockStart for a tool], then one delta per
        // piece, contentBlockStop, messageStop, metadata.
        let first_delta = if is_tool { 2 } else { 1 };
        let step = self.step;
        self.step += 1;
        let written = |pace| Some(Written { pace, last: false });
        match step {
            0 => {
                write_event(buf, "messageStart", json!({"role": "assistant"}));
                written(Pace::Ttft)
            }
            1 if is_tool => {
                let Answer::ToolUse { name } = &self.answer else { return None };
                let start = json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}});
                write_event(buf, "contentBlockStart", start);
                written(Pace::Now)
            }
            s if s >= first_delta && s < first_delta + pieces => {
                let i = s - first_delta;
                let delta = if is_tool {
                    json!({"toolUse": {"input": TOOL_INPUT_FRAGMENTS[i]}})
                } else {
                    self.piece.clear();
                    synth::push_token(&mut self.piece, i);
                    json!({"text": self.piece})
                };
                write_event(buf, "contentBlockDelta", json!({"contentBlockIndex": 0, "delta": delta}));
                written(if i == 0 { Pace::Now } else { Pace::Chunk })
            }
            s if s == first_delta + pieces => {
                write_event(buf, "contentBlockStop", json!({"contentBlockIndex": 0}));
                written(Pace::Now)
            }
            s if s == first_delta + pieces + 1 => {
                write_event(buf, "messageStop", json!({"stopReason": self.answer.stop_reason()}));
                written(Pace::Now)
            }
            s if s == first_delta + pieces + 2 => {
                write_event(buf, "metadata", json!({"usage": self.usage, "metrics": {"latencyMs": 1}}));
                counters.add_usage(self.usage.input_tokens, self.usage.output_tokens);
                Some(Written { pace: Pace::Now, last: true })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    #[test]
    fn recognises_converse_paths() {
        assert!(is_path("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"));
        assert!(is_path("/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"));
        assert!(!is_path("/v1/chat/completions"));
        assert!(!is_path("/model/x/invoke"));
    }

    #[test]
    fn parses_the_amz_date() {
        let time = parse_amz_date("20240101T000001Z").unwrap();
        assert_eq!(time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_704_067_201);
        assert!(parse_amz_date("2024-01-01").is_none());
    }
}
