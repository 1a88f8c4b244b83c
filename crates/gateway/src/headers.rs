//! The HTTP headers that are Switchyard's own: what a client may send to steer a request, and
//! what every answer says about how it was served.

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
