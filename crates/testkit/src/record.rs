//! [`RecordedRequest`]: a copy of each request a mock server received, for tests to inspect.

use std::sync::{Mutex, PoisonError};

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path, without the query: `/v1/chat/completions`.
    pub path: String,
    /// The query string without the `?`, when there was one (Azure's `api-version=...`).
    pub query: Option<String>,
    /// Every header, as sent.
    pub headers: http::HeaderMap,
    /// The body parsed as JSON; `Null` when it is empty or not JSON.
    pub body: serde_json::Value,
}

/// The requests recorded so far, when recording is on.
#[derive(Debug)]
pub(crate) struct Recorder {
    enabled: bool,
    requests: Mutex<Vec<RecordedRequest>>,
}

// === impl Recorder ===

impl Recorder {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled, requests: Mutex::new(Vec::new()) }
    }

    /// Records a request. The body is parsed here a second time (the handlers parse it into
    /// borrowed views of their own), which costs nothing when recording is off.
    pub(crate) fn record(&self, parts: &http::request::Parts, body: &[u8]) {
        if !self.enabled {
            return;
        }
        let request = RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        };
        self.lock().push(request);
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// The lock is never held across an await or a panic-prone call, so a poisoned lock still
    /// guards consistent data: take it.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
