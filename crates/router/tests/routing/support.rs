//! Shared fakes for the routing tests: scripted deployments, requests, responses and stacks.

use std::{
    collections::HashMap,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::{FutureExt, future::BoxFuture, stream};
use serde_json::{Value, json};
use switchyard_router::{
    Dispatch, Endpoint, EndpointSettings, GroupSettings, ModelGroup, Policy, RouteTable,
    fallback::{Fallback, FallbackLayer, Fallbacks},
    retry::{Retry, RetryConfig, RetryLayer},
};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody},
    openai::ChatCompletionChunk,
};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt, service_fn, util::BoxCloneSyncService};

/// What a fake deployment answers to one call.
pub(crate) type Answer = BoxFuture<'static, Result<LlmResponse, LlmError>>;

/// One chunk item of a streamed answer.
pub(crate) type Item = Result<Json<ChatCompletionChunk>, LlmError>;

/// The whole stack the gateway builds: fallbacks over retries over routing.
pub(crate) type Stack = Fallback<Retry<Dispatch>>;

// === requests ===

/// A non-streamed chat request for `model`.
pub(crate) fn chat(model: &str) -> LlmRequest {
    request(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
}

/// A streamed chat request for `model`.
pub(crate) fn stream_chat(model: &str) -> LlmRequest {
    request(json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": true}))
}

fn request(body: Value) -> LlmRequest {
    LlmRequest::new(Operation::chat(serde_json::from_value(body).expect("a valid chat request")))
}

// === responses ===

/// A complete chat answer from `label` that used `tokens` tokens.
pub(crate) fn completion(label: &str, tokens: u64) -> LlmResponse {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": label,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
    });
    let json = Json::from_bytes(Bytes::from(body.to_string())).expect("a valid completion");
    LlmResponse { body: ResponseBody::Chat(json), served_by: Some(label.into()) }
}

/// A stream chunk carrying `text`.
pub(crate) fn chunk(text: &str) -> Item {
    document(json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    }))
}

/// The last chunk of a stream that asked for usage: `tokens` in all.
pub(crate) fn usage_chunk(tokens: u64) -> Item {
    document(json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
    }))
}

fn document(value: Value) -> Item {
    Ok(Json::from_bytes(Bytes::from(value.to_string())).expect("a valid chunk"))
}

/// The text of a chunk item, or the error class of an error item.
pub(crate) fn text(item: &Item) -> String {
    match item {
        Ok(chunk) => {
            let value: Value = serde_json::from_slice(chunk.raw()).expect("a JSON chunk");
            value["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_owned()
        }
        Err(error) => format!("error: {}", error.class),
    }
}

/// A streamed answer from `label` that yields `items` and ends.
pub(crate) fn streamed(label: &str, items: Vec<Item>) -> LlmResponse {
    LlmResponse {
        body: ResponseBody::ChatStream(Box::pin(stream::iter(items))),
        served_by: Some(label.into()),
    }
}

/// A streamed answer from `label` that yields `items` and then never ends.
pub(crate) fn streamed_forever(label: &str, items: Vec<Item>) -> LlmResponse {
    use futures_util::StreamExt;
    LlmResponse {
        body: ResponseBody::ChatStream(Box::pin(stream::iter(items).chain(stream::pending()))),
        served_by: Some(label.into()),
    }
}

/// A failure of `class`.
pub(crate) fn failure(class: ErrorClass) -> LlmError {
    LlmError::new(class, format!("scripted {class}."))
}

/// Who served a response.
pub(crate) fn served_by(response: &LlmResponse) -> &str {
    response.served_by.as_deref().expect("the fakes name themselves")
}

// === deployments ===

/// A deployment that answers by script and remembers what it was sent.
#[derive(Clone)]
pub(crate) struct Fake {
    label: Arc<str>,
    calls: Arc<AtomicUsize>,
    models: Arc<Mutex<Vec<String>>>,
    service: BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>,
}

impl Fake {
    /// A deployment labelled `label` whose `n`-th call (from 0) gets `answer(n)`.
    pub(crate) fn new(label: &str, answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let models = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (counter, seen) = (Arc::clone(&calls), Arc::clone(&models));
        let service = service_fn(move |request: LlmRequest| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            seen.lock().expect("not poisoned").push(request.model().to_owned());
            answer(n)
        });
        Self { label: label.into(), calls, models, service: BoxCloneSyncService::new(service) }
    }

    /// Always answers at once.
    pub(crate) fn ok(label: &str) -> Self {
        let name = label.to_owned();
        Self::new(label, move |_| std::future::ready(Ok(completion(&name, 2))).boxed())
    }

    /// Always fails with `class`.
    pub(crate) fn failing(label: &str, class: ErrorClass) -> Self {
        Self::new(label, move |_| std::future::ready(Err(failure(class))).boxed())
    }

    /// Answers after `delay` (tokio time).
    pub(crate) fn slow(label: &str, delay: Duration) -> Self {
        let name = label.to_owned();
        Self::new(label, move |_| {
            let name = name.clone();
            async move {
                tokio::time::sleep(delay).await;
                Ok(completion(&name, 2))
            }
            .boxed()
        })
    }

    /// Never answers.
    pub(crate) fn pending(label: &str) -> Self {
        Self::new(label, |_| std::future::pending().boxed())
    }

    /// This deployment as a group member with `settings`.
    pub(crate) fn endpoint(&self, settings: EndpointSettings) -> Endpoint {
        Endpoint::new(Arc::clone(&self.label), format!("key/{}", self.label), self.service.clone(), settings)
    }

    /// The deployment's service, to wrap in layers.
    pub(crate) fn service(&self) -> BoxCloneSyncService<LlmRequest, LlmResponse, LlmError> {
        self.service.clone()
    }

    /// Calls received so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The model each call named, in order.
    pub(crate) fn models(&self) -> Vec<String> {
        self.models.lock().expect("not poisoned").clone()
    }
}

/// Holds answers back until opened.
#[derive(Clone)]
pub(crate) struct Gate(Arc<Semaphore>);

impl Gate {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    /// Lets every waiting and future answer through.
    pub(crate) fn open(&self) {
        self.0.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    pub(crate) async fn wait(&self) {
        self.0.acquire().await.expect("never closed").forget();
    }
}

// === settings ===

pub(crate) fn weight(weight: u32) -> EndpointSettings {
    EndpointSettings { weight, ..EndpointSettings::default() }
}

/// Costs `per_million` dollars per million tokens in and out.
pub(crate) fn price(per_million: f64) -> EndpointSettings {
    let price = switchyard_router::Price { input: per_million, output: per_million };
    EndpointSettings { price: Some(price), ..EndpointSettings::default() }
}

// === tables and stacks ===

pub(crate) fn group(name: &str, policy: Policy, endpoints: Vec<Endpoint>) -> ModelGroup {
    ModelGroup::new(name, endpoints, GroupSettings { policy, ..GroupSettings::default() })
}

pub(crate) fn table(groups: Vec<ModelGroup>) -> Arc<RouteTable> {
    Arc::new(RouteTable::new(groups))
}

/// The table's deployment labelled `label`.
pub(crate) fn deployment<'t>(table: &'t RouteTable, label: &str) -> &'t Endpoint {
    table.endpoints().find(|e| &*e.label == label).expect("a deployment with that label")
}

/// One attempt through the routing step alone.
pub(crate) async fn send(table: &Arc<RouteTable>, request: LlmRequest) -> Result<LlmResponse, LlmError> {
    table.dispatch().oneshot(request).await
}

/// Retries without waiting, so that tests of other layers do not depend on the backoff.
pub(crate) fn retries(retries: u32) -> RetryConfig {
    RetryConfig {
        retries,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..RetryConfig::default()
    }
}

/// Fallbacks over retries over `table`.
pub(crate) fn stack(
    table: &Arc<RouteTable>,
    retry: RetryConfig,
    fallbacks: HashMap<String, Fallbacks>,
) -> Stack {
    let retried = RetryLayer::new(retry).layer(table.dispatch());
    FallbackLayer::new(fallbacks).layer(retried)
}

// === per-minute limits ===

fn calendar_minute() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() / 60
}

/// Runs `test` (which builds its own tables) until one run starts and ends in the same calendar
/// minute: `rpm` and `tpm` count calendar minutes, and a minute that turns mid-run resets them.
pub(crate) async fn within_one_minute<F, Fut>(test: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let minute = calendar_minute();
        let outcome = AssertUnwindSafe(test()).catch_unwind().await;
        if calendar_minute() == minute {
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
            return;
        }
    }
}
