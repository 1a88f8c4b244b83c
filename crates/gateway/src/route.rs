//! The routing step of the stack: model name → model group → one deployment.
//!
//! This is the minimal policy (round-robin over a model's deployments, no retries or
//! fallbacks); `switchyard-router` replaces it with real policies and failure handling.
//! An unknown model fails with [`ErrorClass::NotFound`], listing the models that exist.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::future::BoxFuture;
use switchyard_types::llm::{ErrorClass, LlmError, LlmRequest, LlmResponse};
use tower::ServiceExt;

use crate::models::ModelTable;

/// Sends each request to the next deployment of the model it names.
#[derive(Clone)]
pub struct ModelRouter {
    table: Arc<ModelTable>,
}

impl ModelRouter {
    /// A router over `table`.
    pub fn new(table: Arc<ModelTable>) -> Self {
        Self { table }
    }
}

impl tower::Service<LlmRequest> for ModelRouter {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: LlmRequest) -> Self::Future {
        let Some((group, matched)) = self.table.resolve(request.model()) else {
            let error = unknown_model(&self.table, request.model());
            return Box::pin(async move { Err(error) });
        };
        let Some(deployment) = group.pick() else {
            let error =
                LlmError::new(ErrorClass::Internal, format!("model `{}` has no deployments", group.name));
            return Box::pin(async move { Err(error) });
        };
        if deployment.forwards_model
            && let Some(rest) = matched
        {
            let rest = rest.to_owned();
            request.set_model(&rest);
        }
        let service = deployment.service.clone();
        Box::pin(service.oneshot(request))
    }
}

fn unknown_model(table: &ModelTable, model: &str) -> LlmError {
    const SHOWN: usize = 20;
    let names: Vec<&str> = table.groups().iter().map(|g| g.name.as_str()).collect();
    let mut list = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more (GET /v1/models lists them all)", names.len() - SHOWN));
    }
    LlmError::new(
        ErrorClass::NotFound,
        format!("The model `{model}` does not exist on this gateway. Available models: {list}."),
    )
    .with_param("model")
}
