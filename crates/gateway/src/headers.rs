//! The HTTP headers that are Switchyard's own: what a client may send to steer a request, and
//! what every answer says about how it was served.

use http::{HeaderMap, HeaderValue};
use switchyard_accounting::{
    meter::{MeterKind, Refusal, Standing},
    model::now_ms,
};

/// Response: the deployment that served the request (`provider/model`).
pub const DEPLOYMENT: &str = "x-switchyard-deployment";
/// Response: how many attempts the request took (retries and fallbacks included).
pub const ATTEMPTS: &str = "x-switchyard-attempts";
/// Request: a deadline for the whole request, retries included, in milliseconds.
pub const TIMEOUT: &str = "x-switchyard-timeout-ms";
/// Request: for a stream, the longest wait for its first chunk per attempt, in milliseconds.
pub const TTFT_TIMEOUT: &str = "x-switchyard-ttft-timeout-ms";
/// Response: the gateway's own time on the request, in milliseconds (see `settle`).
pub const OVERHEAD: &str = "x-switchyard-overhead-ms";
/// Both: the request's id, the client's or generated.
pub const REQUEST_ID: &str = "x-request-id";
/// Response: what a complete answer cost, in US dollars, when its deployment has a price.
pub const COST: &str = "x-switchyard-cost-usd";

/// Sets OpenAI's `x-ratelimit-*` headers from where the request's limits stand (the tightest
/// requests-per-minute and tokens-per-minute limits), or from the limit that refused it; and
/// `x-should-retry: false` when a budget refused it, so that SDKs do not retry in vain.
pub fn rate_limits(sent: &mut HeaderMap, standings: &[Standing], refusal: Option<&Refusal>) {
    let now = now_ms();
    for (kind, noun) in [(MeterKind::Requests, "requests"), (MeterKind::Tokens, "tokens")] {
        let refused = refusal.filter(|r| r.kind == kind).map(|r| (r.limit, r.used, r.resets_at_ms));
        let tightest = standings
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| (s.limit, s.used, s.resets_at_ms))
            .min_by_key(|(limit, used, _)| limit - used);
        let Some((limit, used, resets_at)) = refused.or(tightest) else { continue };
        let remaining = (limit - used).max(0);
        let reset = resets_at.map_or(0, |at| u64::try_from(at - now).unwrap_or(0));
        let pairs = [
            (format!("x-ratelimit-limit-{noun}"), limit.to_string()),
            (format!("x-ratelimit-remaining-{noun}"), remaining.to_string()),
            (format!("x-ratelimit-reset-{noun}"), format!("{}s", reset.div_ceil(1000))),
        ];
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(name), HeaderValue::try_from(value)) {
                sent.insert(name, value);
            }
        }
    }
    if refusal.is_some_and(|r| matches!(r.kind, MeterKind::Budget(_))) {
        sent.insert("x-should-retry", HeaderValue::from_static("false"));
    }
}
