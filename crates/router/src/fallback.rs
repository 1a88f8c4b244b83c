//! [`FallbackLayer`]: when a model cannot serve a request, other models try.
//!
//! Each model may name, in order:
//! - `fallbacks`: models to try when it failed for a reason of its deployments' making
//!   ([`crate::fails_over`]), after its retries;
//! - `context_window_fallbacks`: models to try when the prompt did not fit
//!   ([`ErrorClass::ContextLengthExceeded`]), typically larger-context models;
//! - `content_policy_fallbacks`: models to try when the provider refused the content
//!   ([`ErrorClass::ContentPolicy`]).
//!
//! A request may carry its own ordered list ([`ClientFallbacks`], from the body's `models`
//! when the gateway allows it); it replaces the model's lists for every failure of those
//! kinds. Each fallback model is routed like the first, with its own retries. Other failures
//! (the client's own mistakes, an unknown model) go straight back. When every model failed,
//! the last error goes back, naming the models tried.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::future::BoxFuture;
use switchyard_types::llm::{ErrorClass, LlmError, LlmRequest, LlmResponse};
use tower::ServiceExt;

use crate::fails_over;

/// A model's fallback lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// For failures of its deployments.
    pub general: Vec<String>,
    /// For prompts too long for it.
    pub context_window: Vec<String>,
    /// For content its provider refused.
    pub content_policy: Vec<String>,
}

impl Fallbacks {
    fn for_class(&self, class: ErrorClass) -> &[String] {
        match class {
            ErrorClass::ContextLengthExceeded => &self.context_window,
            ErrorClass::ContentPolicy => &self.content_policy,
            class if fails_over(class) => &self.general,
            _ => &[],
        }
    }
}

/// The client's own fallback models, in order, for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFallbacks(pub Vec<String>);

/// Tries fallback models; see the module documentation.
#[derive(Debug, Clone)]
pub struct FallbackLayer {
    table: Arc<HashMap<String, Arc<Fallbacks>>>,
}

impl FallbackLayer {
    /// Fallbacks per model name.
    pub fn new(table: HashMap<String, Fallbacks>) -> Self {
        // Shared per model, so that a request takes a reference count, not a copy of the lists.
        Self { table: Arc::new(table.into_iter().map(|(model, lists)| (model, Arc::new(lists))).collect()) }
    }
}

impl<S> tower::Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback { inner, table: Arc::clone(&self.table) }
    }
}

/// A service that tries fallback models; see [`FallbackLayer`].
#[derive(Debug, Clone)]
pub struct Fallback<S> {
    inner: S,
    table: Arc<HashMap<String, Arc<Fallbacks>>>,
}

impl<S> Fallback<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> tower::Service<LlmRequest> for Fallback<S>
where
    S: tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let client = request.extensions.get::<ClientFallbacks>().map(|c| c.0.clone());
        let configured = self.table.get(request.model()).cloned();
        if client.is_none() && configured.is_none() {
            return Box::pin(self.inner.clone().oneshot(request));
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let first = request.model().to_owned();
            let mut error = match inner.clone().oneshot(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let list: Vec<String> = match &client {
                Some(models) if fails_over(error.class) || is_content(error.class) => models.clone(),
                Some(_) => Vec::new(),
                None => configured.as_ref().map(|f| f.for_class(error.class).to_vec()).unwrap_or_default(),
            };
            let mut tried = vec![first];
            for model in list {
                if tried.contains(&model) {
                    continue;
                }
                tracing::info!(from = %tried[tried.len() - 1], to = %model, class = %error.class, "falling back");
                let mut attempt = request.clone();
                attempt.set_model(&model);
                tried.push(model);
                match inner.clone().oneshot(attempt).await {
                    Ok(response) => return Ok(response),
                    // An unknown fallback model is skipped; its error would hide the real one.
                    Err(next) if next.class == ErrorClass::NotFound => {}
                    Err(next) => error = next,
                }
            }
            if tried.len() > 1 {
                error.message =
                    format!("{} (models tried: {}.)", error.message.trim_end_matches('.'), tried.join(", "));
            }
            Err(error)
        })
    }
}

fn is_content(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::ContextLengthExceeded | ErrorClass::ContentPolicy)
}
