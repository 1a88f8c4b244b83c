//! [`RequestRecord`]: everything observability needs to know about one finished request.

use std::{sync::Arc, time::Duration};

use switchyard_router::attempts::Attempt;
use switchyard_types::llm::ErrorClass;
pub use switchyard_types::llm::Usage;

/// One finished request, as the gateway saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// `chat` or `embeddings` (the GenAI conventions' operation names).
    pub operation: &'static str,
    /// The configured model name the client's model resolved to (`None`: no such model).
    pub model: Option<Arc<str>>,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// The HTTP status the client received.
    pub status: u16,
    /// Why it failed, when it did (for a stream, also a failure after the first chunk).
    pub error: Option<ErrorClass>,
    /// Every routing attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Tokens the provider reported.
    pub usage: Option<Usage>,
    /// What the request cost, in dollars, when the deployment has a price.
    pub cost_usd: Option<f64>,
    /// From the request's arrival to the end of the answer (a stream's last chunk).
    pub duration: Duration,
    /// For streams: from the arrival to the first chunk leaving.
    pub time_to_first_token: Option<Duration>,
    /// The gateway's own time: until the answer (or its first chunk) left, less the time the
    /// providers took and the time spent waiting between attempts.
    pub overhead: Option<Duration>,
}

impl RequestRecord {
    /// The attempt that served the answer, if any did.
    pub fn served(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|a| a.failure.is_none())
    }
}
