//! [`RouteTable`]: every model name the gateway serves; [`Dispatch`]: the innermost routing
//! service, which sends an attempt to the group its model names.
//!
//! A name is exact (`gpt-4o-mini`) or a prefix ending in `*` (`groq/*`); exact names win, then
//! the longest prefix. An unknown model fails with [`ErrorClass::NotFound`], listing the
//! models that exist.

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::future::BoxFuture;
use switchyard_types::llm::{ErrorClass, LlmError, LlmRequest, LlmResponse};

use crate::{endpoint::Endpoint, group::ModelGroup};

/// Every model group, by name.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<Arc<str>, Arc<ModelGroup>>,
    /// Wildcard groups, longest prefix first.
    prefixed: Vec<Arc<ModelGroup>>,
    /// All groups in configuration order.
    ordered: Vec<Arc<ModelGroup>>,
    pub(crate) cooldowns: crate::group::CooldownSink,
}

// === impl RouteTable ===

impl RouteTable {
    /// A table of `groups`, in configuration order.
    pub fn new(groups: Vec<ModelGroup>) -> Self {
        let mut table = RouteTable::default();
        for mut group in groups {
            group.cooldowns = Arc::clone(&table.cooldowns);
            let group = Arc::new(group);
            if group.prefix.is_some() {
                table.prefixed.push(Arc::clone(&group));
            } else {
                table.exact.insert(Arc::clone(&group.name), Arc::clone(&group));
            }
            table.ordered.push(group);
        }
        table.prefixed.sort_by_key(|g| std::cmp::Reverse(g.prefix.as_ref().map_or(0, String::len)));
        table
    }

    /// The group serving `model`, and for a wildcard the part of `model` it matched.
    pub fn resolve<'m>(&self, model: &'m str) -> Option<(&Arc<ModelGroup>, Option<&'m str>)> {
        if let Some(group) = self.exact.get(model) {
            return Some((group, None));
        }
        self.prefixed.iter().find_map(|group| {
            let rest = model.strip_prefix(group.prefix.as_deref()?)?;
            (!rest.is_empty()).then_some((group, Some(rest)))
        })
    }

    /// All groups, in configuration order.
    pub fn groups(&self) -> &[Arc<ModelGroup>] {
        &self.ordered
    }

    /// Every deployment of every group.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.ordered.iter().flat_map(|g| g.endpoints.iter())
    }

    /// The routing service over this table.
    pub fn dispatch(self: &Arc<Self>) -> Dispatch {
        Dispatch { table: Arc::clone(self) }
    }

    fn unknown_model(&self, model: &str) -> LlmError {
        const SHOWN: usize = 20;
        let names: Vec<&str> = self.ordered.iter().map(|g| g.name()).collect();
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
}

/// Sends each attempt to a deployment of the group its model names.
#[derive(Debug, Clone)]
pub struct Dispatch {
    table: Arc<RouteTable>,
}

impl tower::Service<LlmRequest> for Dispatch {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let model = request.model();
        match self.table.resolve(model) {
            Some((group, matched)) => {
                let matched = matched.map(str::to_owned);
                let group = Arc::clone(group);
                group.call(request, matched.as_deref())
            }
            None => {
                let error = self.table.unknown_model(model);
                Box::pin(std::future::ready(Err(error)))
            }
        }
    }
}
