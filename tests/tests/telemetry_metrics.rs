//! End to end: a scripted workload against mock providers adds up, to the request and the token,
//! in what `GET /metrics` shows a Prometheus scraper; who may scrape; and what never becomes a label.
//!
//! The scrape is read with `prometheus-parse`, an exposition parser written for Prometheus
//! scrapes, not with string matching, so that a malformed line fails the test as it would fail
//! a real scraper. Expected values come from the answers the client received (their headers and
//! the usage the mock reported in them), never from the gateway's own bookkeeping.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, sse_data, within_one_minute};
use switchyard_testkit::{Fault, MockConfig, MockServer};

/// What the client saw of one answer.
#[derive(Debug)]
struct Answer {
    /// The model the client asked for.
    model: String,
    stream: bool,
    status: u16,
    /// `x-switchyard-deployment` (empty when none served).
    deployment: String,
    /// `x-switchyard-attempts`.
    attempts: u64,
    /// `x-switchyard-overhead-ms`.
    overhead_ms: f64,
    /// From sending the request to the end of the answer, as the client saw it.
    took: Duration,
    /// Prompt and completion tokens, as the provider reported them in the answer.
    usage: Option<(u64, u64)>,
}

/// A scrape of `GET /metrics`, parsed.
struct Scrape {
    text: String,
    samples: Vec<prometheus_parse::Sample>,
}

// === impl Scrape ===

impl Scrape {
    async fn of(gateway: &Gateway) -> Self {
        let response = client().get(gateway.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with `# EOF`:\n{text}");
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let samples = prometheus_parse::Scrape::parse(lines).unwrap().samples;
        Self { text, samples }
    }

    /// Every sample of `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> {
        self.samples
            .iter()
            .filter(move |s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// The sum of the samples of `name` whose labels include `labels` (PromQL's `sum`); 0 when
    /// there is none, as a counter never incremented is absent.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(scalar).sum()
    }

    /// The one sample of `name` with `labels`.
    fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self.matching(name, labels).collect();
        assert_eq!(found.len(), 1, "one sample of {name} with {labels:?}, found {found:?}\n{}", self.text);
        scalar(found[0])
    }
}

fn scalar(sample: &prometheus_parse::Sample) -> f64 {
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{} is not a scalar: {sample:?}", sample.metric),
    }
}

/// Sends `body` to `path` and reads the whole answer, stream or not.
async fn send(http: &reqwest::Client, gateway: &Gateway, path: &str, body: Value) -> Answer {
    send_with(http.post(gateway.url(path)).json(&body), &body).await
}

async fn send_with(request: reqwest::RequestBuilder, body: &Value) -> Answer {
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    // Every answer that reached routing says what the gateway itself spent on it.
    let overhead = header("x-switchyard-overhead-ms");
    let overhead_ms: f64 =
        overhead.parse().unwrap_or_else(|_| panic!("x-switchyard-overhead-ms: `{overhead}`"));
    assert!(overhead_ms.is_finite() && overhead_ms >= 0.0, "x-switchyard-overhead-ms: {overhead_ms}");
    assert!(!header("x-request-id").is_empty(), "every answer carries its request id");
    let deployment = header("x-switchyard-deployment");
    let attempts = header("x-switchyard-attempts").parse().unwrap();
    let status = response.status().as_u16();
    let stream = body["stream"] == true;
    let usage = if stream && status == 200 {
        let events = sse_data(response).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
        events
            .iter()
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .find(|chunk| chunk["usage"].is_object())
            .map(|chunk| tokens(&chunk["usage"]))
    } else {
        let answer: Value = response.json().await.unwrap();
        answer["usage"].is_object().then(|| tokens(&answer["usage"]))
    };
    let model = body["model"].as_str().unwrap().to_owned();
    Answer { model, stream, status, deployment, attempts, overhead_ms, took: started.elapsed(), usage }
}

fn tokens(usage: &Value) -> (u64, u64) {
    // The mock reports no cached or reasoning tokens: those kinds must stay absent (below).
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0), 0);
    (usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap_or(0))
}

/// A chat body of a length and a completion size that vary with `i`, so that token sums are
/// not multiples of one request's.
fn chat(model: &str, i: usize, stream: Option<bool>) -> Value {
    let content = format!("prompt-marker {}", "word ".repeat(3 * i));
    let mut body =
        json!({"model": model, "max_tokens": 2 + i, "messages": [{"role": "user", "content": content}]});
    match stream {
        None => {}
        Some(include_usage) => {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": include_usage});
        }
    }
    body
}

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

fn server_error() -> Fault {
    Fault::Status {
        status: 500,
        body: json!({"error": {"message": "The engine crashed", "type": "server_error"}}),
    }
}

const REQUESTS: &str = "switchyard_requests_total";
const ATTEMPTS: &str = "switchyard_attempts_total";
const TOKENS: &str = "switchyard_tokens_total";
/// How long the slow providers take.
const SLOW: Duration = Duration::from_millis(250);

#[tokio::test]
async fn a_scripted_workload_adds_up_in_the_scrape() {
    // Two providers take their time, so that the gateway's overhead can be seen to leave it out.
    let flaky = MockServer::start(MockConfig { ttft: SLOW, ..MockConfig::default() }).await.unwrap();
    let embed = MockServer::start(MockConfig { delay: SLOW, ..MockConfig::default() }).await.unwrap();
    let (chat_up, primary, backup, limited, capped, cooled) =
        (mock().await, mock().await, mock().await, mock().await, mock().await, mock().await);
    let deployment = |name: &str, mock: &MockServer, extra: &str| {
        format!(
            "  - name: {name}\n    deployments:\n      - {{provider: vllm, model: {name}-up, api_base: '{}'{extra}}}\n",
            mock.url()
        )
    };
    let gateway = Gateway::start(&format!(
        "router:\n  retries: 1\n  backoff_base_ms: 10\nmodels:\n{}{}{}    fallbacks: [backup]\n{}{}{}    fallbacks: [backup]\n{}{}",
        deployment("chat", &chat_up, ", price: {input: 0.5, output: 1.5}"),
        deployment("flaky", &flaky, ""),
        deployment("primary", &primary, ""),
        deployment("backup", &backup, ""),
        deployment("limited", &limited, ", rpm: 2"),
        deployment("capped", &capped, ", rpm: 1"),
        deployment("cooled", &cooled, ""),
        deployment("embed", &embed, ""),
    ))
    .await;
    let http = client();
    let mut answers = Vec::new();

    // A deployment's rpm is reached: the third request is refused before any deployment is
    // tried. The calendar minute must not turn meanwhile (the refusal's Retry-After, the rest of
    // the minute, is then also too long for the gateway to wait out).
    within_one_minute(Duration::from_secs(15)).await;
    for i in 0..3 {
        answers.push(send(&http, &gateway, "/v1/chat/completions", chat("limited", i, None)).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(answers[2].attempts, 0);
    // A model at its rpm with a fallback: the second request goes straight to the fallback.
    for i in 0..2 {
        answers.push(send(&http, &gateway, "/v1/chat/completions", chat("capped", i, None)).await);
    }
    let served: Vec<(&str, u64)> = answers[3..].iter().map(|a| (a.deployment.as_str(), a.attempts)).collect();
    assert_eq!(served, [("vllm/capped-up", 1), ("vllm/backup-up", 1)]);

    // Successful chat requests: plain, streamed with usage, and one stream without usage (whose
    // tokens nobody reported, so none are counted). One carries an id and a user of its own.
    for i in 0..4 {
        answers.push(send(&http, &gateway, "/v1/chat/completions", chat("chat", i, None)).await);
    }
    for i in 4..7 {
        answers.push(send(&http, &gateway, "/v1/chat/completions", chat("chat", i, Some(true))).await);
    }
    answers.push(send(&http, &gateway, "/v1/chat/completions", chat("chat", 7, Some(false))).await);
    let mut personal = chat("chat", 8, None);
    personal["user"] = json!("user-should-not-be-a-label");
    let request = http
        .post(gateway.url("/v1/chat/completions"))
        .header("x-request-id", "id-should-not-be-a-label")
        .json(&personal);
    answers.push(send_with(request, &personal).await);
    let chat_served = answers.iter().filter(|a| a.model == "chat" && a.status == 200).count();
    assert_eq!(chat_served, 9);

    // A stream whose deployment fails once: retried on it after a backoff, then served.
    flaky.push_fault(server_error());
    answers.push(send(&http, &gateway, "/v1/chat/completions", chat("flaky", 9, Some(true))).await);
    // A model whose deployment fails both attempts: its fallback serves.
    primary.push_fault(server_error());
    primary.push_fault(server_error());
    answers.push(send(&http, &gateway, "/v1/chat/completions", chat("primary", 10, None)).await);
    // A 429 from a provider cools its deployment down at once, for the Retry-After it sent;
    // longer than the gateway waits for, so the client gets the 429.
    cooled.push_fault(Fault::RateLimited { retry_after_secs: 120 });
    answers.push(send(&http, &gateway, "/v1/chat/completions", chat("cooled", 11, None)).await);
    // Embeddings: another operation.
    let embeddings = json!({"model": "embed", "input": ["prompt-marker one two three", "four five"]});
    answers.push(send(&http, &gateway, "/v1/embeddings", embeddings).await);
    // Twenty models nobody configured: 404s, none of whose names may become a label.
    let unknown: Vec<String> = (0..20).map(|i| format!("unconfigured-model-{i:02}-x7q")).collect();
    for name in &unknown {
        answers.push(
            send(
                &http,
                &gateway,
                "/v1/chat/completions",
                json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await,
        );
    }

    let by_model = |model: &str| answers.iter().find(|a| a.model == model).unwrap();
    let status_of = |model: &str| by_model(model).status;
    assert_eq!((status_of("flaky"), status_of("primary"), status_of("cooled")), (200, 200, 429));
    let unconfigured = answers.iter().filter(|a| a.model.starts_with("unconfigured-model"));
    assert!(unconfigured.clone().all(|a| a.status == 404 && a.attempts == 0));
    assert_eq!(unconfigured.count(), 20);
    assert_eq!((by_model("flaky").attempts, by_model("primary").attempts), (2, 3));
    assert_eq!(by_model("primary").deployment, "vllm/backup-up");

    let scrape = Scrape::of(&gateway).await;

    // Requests, by model, serving deployment, provider and status.
    let chat_ok = [
        ("operation", "chat"),
        ("model", "chat"),
        ("deployment", "vllm/chat-up"),
        ("provider", "vllm"),
        ("status", "200"),
        ("error_class", ""),
    ];
    assert_eq!(scrape.one(REQUESTS, &chat_ok), chat_served as f64);
    assert_eq!(scrape.sum(REQUESTS, &[("model", "chat")]), chat_served as f64, "no chat request failed");
    assert_eq!(scrape.sum(REQUESTS, &[]), answers.len() as f64, "every request counted once");
    for status in [200, 404, 429] {
        let expected = answers.iter().filter(|a| a.status == status).count();
        assert_eq!(
            scrape.sum(REQUESTS, &[("status", &status.to_string())]),
            expected as f64,
            "status {status}"
        );
    }
    assert_eq!(
        scrape.one(
            REQUESTS,
            &[("status", "404"), ("error_class", "not_found"), ("model", ""), ("deployment", "")]
        ),
        20.0
    );
    assert_eq!(
        scrape.one(REQUESTS, &[("model", "primary"), ("deployment", "vllm/backup-up"), ("status", "200")]),
        1.0,
        "the requested model, and the deployment that served it"
    );
    assert_eq!(
        scrape.one(REQUESTS, &[("operation", "embeddings"), ("model", "embed"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        scrape.one(
            REQUESTS,
            &[("model", "cooled"), ("deployment", ""), ("status", "429"), ("error_class", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(
        scrape.one(
            REQUESTS,
            &[("model", "limited"), ("deployment", ""), ("status", "429"), ("error_class", "rate_limited")]
        ),
        1.0
    );

    // Refusals before any deployment was tried: the rpm, not the provider's 429.
    assert_eq!(
        scrape.one("switchyard_refused_total", &[("model", "limited"), ("reason", "deployment_capacity")]),
        1.0
    );
    assert_eq!(scrape.sum("switchyard_refused_total", &[]), 1.0, "a provider's 429 is not a refusal");

    // Attempts, retries and fallbacks.
    let attempts_sent: u64 = answers.iter().map(|a| a.attempts).sum();
    assert_eq!(scrape.sum(ATTEMPTS, &[]), attempts_sent as f64, "the attempts the headers reported");
    assert_eq!(
        scrape.one(ATTEMPTS, &[("deployment", "vllm/flaky-up"), ("outcome", "upstream_server_error")]),
        1.0
    );
    assert_eq!(scrape.one(ATTEMPTS, &[("deployment", "vllm/flaky-up"), ("outcome", "success")]), 1.0);
    assert_eq!(
        scrape.one(
            ATTEMPTS,
            &[
                ("model", "primary"),
                ("deployment", "vllm/primary-up"),
                ("provider", "vllm"),
                ("outcome", "upstream_server_error")
            ]
        ),
        2.0
    );
    assert_eq!(
        scrape
            .one(ATTEMPTS, &[("model", "backup"), ("deployment", "vllm/backup-up"), ("outcome", "success")]),
        2.0,
        "for primary and for capped"
    );
    assert_eq!(scrape.one(ATTEMPTS, &[("deployment", "vllm/cooled-up"), ("outcome", "rate_limited")]), 1.0);
    assert_eq!(
        scrape.one(ATTEMPTS, &[("deployment", "vllm/chat-up"), ("outcome", "success")]),
        chat_served as f64
    );
    assert_eq!(
        scrape.one("switchyard_retries_total", &[("model", "flaky"), ("deployment", "vllm/flaky-up")]),
        1.0
    );
    assert_eq!(
        scrape.one("switchyard_retries_total", &[("model", "primary"), ("deployment", "vllm/primary-up")]),
        1.0
    );
    assert_eq!(scrape.sum("switchyard_retries_total", &[]), 2.0);
    assert_eq!(
        scrape.one("switchyard_fallbacks_total", &[("model", "primary"), ("fallback", "backup")]),
        1.0
    );
    assert_eq!(
        scrape.one("switchyard_fallbacks_total", &[("model", "capped"), ("fallback", "backup")]),
        1.0,
        "a model at capacity that went straight to its fallback"
    );
    assert_eq!(scrape.sum("switchyard_fallbacks_total", &[]), 2.0);

    // Tokens: per serving deployment, the sum of the usage each answer carried; and in all, the
    // usage the mocks say they reported.
    let mut reported: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for answer in &answers {
        if let Some((input, output)) = answer.usage {
            let entry = reported.entry(answer.deployment.as_str()).or_default();
            entry.0 += input;
            entry.1 += output;
        }
    }
    assert_eq!(
        reported.len(),
        6,
        "chat, flaky, backup, limited, capped and embed reported usage: {reported:?}"
    );
    // Each deployment has its own mock, whose count of the usage it reported is the truth:
    // streams whose client did not ask for usage count too, since the gateway asked for it.
    let named = [
        ("chat", &chat_up),
        ("flaky", &flaky),
        ("primary", &primary),
        ("backup", &backup),
        ("limited", &limited),
        ("capped", &capped),
        ("cooled", &cooled),
        ("embed", &embed),
    ];
    for (name, mock) in named {
        let deployment = format!("vllm/{name}-up");
        let stats = mock.stats();
        assert_eq!(
            scrape.sum(TOKENS, &[("deployment", &deployment), ("kind", "input")]),
            stats.prompt_tokens as f64,
            "{deployment}"
        );
        assert_eq!(
            scrape.sum(TOKENS, &[("deployment", &deployment), ("kind", "output")]),
            stats.completion_tokens as f64,
            "{deployment}"
        );
    }
    let (seen_input, seen_output) = reported["vllm/chat-up"];
    assert!(
        seen_input + seen_output < chat_up.stats().prompt_tokens + chat_up.stats().completion_tokens,
        "the stream whose client asked for no usage is counted all the same"
    );
    assert_eq!(
        scrape.one(TOKENS, &[("model", "backup"), ("deployment", "vllm/backup-up"), ("kind", "input")]),
        reported["vllm/backup-up"].0 as f64,
        "tokens count for the model that served"
    );
    let mocks = [&chat_up, &flaky, &primary, &backup, &limited, &capped, &cooled, &embed];
    let (prompt, completion) =
        mocks.iter().fold((0, 0), |(p, c), m| (p + m.stats().prompt_tokens, c + m.stats().completion_tokens));
    assert_eq!(scrape.sum(TOKENS, &[("kind", "input")]), prompt as f64);
    assert_eq!(scrape.sum(TOKENS, &[("kind", "output")]), completion as f64);
    assert_eq!(
        scrape.sum(TOKENS, &[("kind", "cached_input")]) + scrape.sum(TOKENS, &[("kind", "reasoning")]),
        0.0
    );
    assert!(
        answers.iter().any(|a| a.model == "chat" && a.stream && a.usage.is_none()),
        "the stream that asked for no usage reported none"
    );

    // Cost: the chat deployment's price, per million tokens.
    let (input, output) = (chat_up.stats().prompt_tokens, chat_up.stats().completion_tokens);
    let expected_cost = (input as f64 * 0.5 + output as f64 * 1.5) / 1e6;
    let cost = scrape.one(
        "switchyard_cost_usd_total",
        &[("model", "chat"), ("deployment", "vllm/chat-up"), ("provider", "vllm")],
    );
    assert!((cost - expected_cost).abs() < 1e-12, "cost {cost}, expected {expected_cost}");
    assert_eq!(scrape.matching("switchyard_cost_usd_total", &[]).count(), 1, "only priced deployments cost");

    // Histograms: one observation per request (duration, overhead), per streamed answer (time
    // to first token), per attempt (upstream duration); each one's +Inf bucket is its count.
    let routed = answers.len() as f64;
    assert_eq!(scrape.one("switchyard_overhead_seconds_count", &[]), routed);
    assert_eq!(scrape.sum("switchyard_request_duration_seconds_count", &[]), routed);
    let chat_streams = answers.iter().filter(|a| a.model == "chat" && a.stream).count();
    assert_eq!(
        scrape.one("switchyard_request_duration_seconds_count", &[("model", "chat"), ("stream", "true")]),
        chat_streams as f64
    );
    assert_eq!(
        scrape.one("switchyard_request_duration_seconds_count", &[("model", "chat"), ("stream", "false")]),
        (chat_served - chat_streams) as f64
    );
    assert_eq!(scrape.one("switchyard_request_duration_seconds_count", &[("operation", "embeddings")]), 1.0);
    assert_eq!(
        scrape.one("switchyard_request_duration_seconds_count", &[("model", ""), ("stream", "false")]),
        20.0
    );
    let streams_served = answers.iter().filter(|a| a.stream && a.status == 200).count();
    assert_eq!(scrape.sum("switchyard_time_to_first_token_seconds_count", &[]), streams_served as f64);
    assert_eq!(
        scrape.one("switchyard_time_to_first_token_seconds_count", &[("deployment", "vllm/flaky-up")]),
        1.0
    );
    for attempts in scrape.matching(ATTEMPTS, &[]) {
        let labels: Vec<(&str, &str)> =
            attempts.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            scrape.one("switchyard_upstream_duration_seconds_count", &labels),
            scalar(attempts),
            "{labels:?}"
        );
    }
    let mut histograms = 0;
    for histogram in &scrape.samples {
        if let prometheus_parse::Value::Histogram(buckets) = &histogram.value {
            histograms += 1;
            let labels: Vec<(&str, &str)> =
                histogram.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = scrape.one(&format!("{}_count", histogram.metric), &labels);
            let infinite = buckets.iter().find(|b| b.less_than == f64::INFINITY).unwrap();
            assert_eq!(infinite.count, count, "{} {labels:?}", histogram.metric);
            assert!(scrape.one(&format!("{}_sum", histogram.metric), &labels) >= 0.0);
        }
    }
    assert!(histograms >= 10, "the histograms were parsed as histograms: {histograms}");

    // Overhead: the headers said what the histogram summed (to their rounding, half a
    // microsecond each), and a provider's time is not the gateway's.
    let headers_ms: f64 = answers.iter().map(|a| a.overhead_ms).sum();
    let histogram_ms = scrape.one("switchyard_overhead_seconds_sum", &[]) * 1e3;
    assert!(
        (headers_ms - histogram_ms).abs() <= answers.len() as f64 * 0.0005 + 1e-6,
        "x-switchyard-overhead-ms summed to {headers_ms} ms, switchyard_overhead_seconds_sum to {histogram_ms} ms"
    );
    for slow in ["flaky", "embed"] {
        let answer = by_model(slow);
        assert!(answer.took >= SLOW, "{answer:?}");
        assert!(
            answer.overhead_ms < SLOW.as_secs_f64() * 1e3 / 2.0,
            "{slow}: the provider's time counted: {answer:?}"
        );
    }
    let slowest = |name: &str, labels: &[(&str, &str)]| scrape.one(name, labels) >= SLOW.as_secs_f64();
    assert!(slowest("switchyard_upstream_duration_seconds_sum", &[("deployment", "vllm/embed-up")]));
    assert!(slowest("switchyard_request_duration_seconds_sum", &[("model", "embed")]));
    assert!(slowest("switchyard_time_to_first_token_seconds_sum", &[("deployment", "vllm/flaky-up")]));

    // Deployments: the one a 429 cooled is down, every other is up; nothing is in flight.
    assert_eq!(
        scrape.one("switchyard_deployment_up", &[("model", "cooled"), ("deployment", "vllm/cooled-up")]),
        0.0
    );
    assert!(scrape.one("switchyard_deployment_cooldowns_total", &[("deployment", "vllm/cooled-up")]) >= 1.0);
    assert_eq!(scrape.matching("switchyard_deployment_up", &[]).count(), 8, "one series per deployment");
    assert_eq!(scrape.sum("switchyard_deployment_up", &[]), 7.0, "the others are up");
    assert_eq!(
        scrape.sum("switchyard_deployment_cooldowns_total", &[]),
        1.0,
        "one failure of primary's two in a row is not enough"
    );
    assert_eq!(scrape.one("switchyard_in_flight_requests", &[]), 0.0);
    assert_eq!(scrape.sum("switchyard_deployment_in_flight_requests", &[]), 0.0);

    // Cardinality: nothing a client chose is a label, or anywhere in the scrape.
    for sample in &scrape.samples {
        for (name, value) in sample.labels.iter() {
            for model in &unknown {
                assert!(!value.contains(model.as_str()), "{} has {name}={value}", sample.metric);
            }
        }
    }
    for client_chosen in ["unconfigured-model", "should-not-be-a-label", "prompt-marker"] {
        assert!(!scrape.text.contains(client_chosen), "`{client_chosen}` in the scrape:\n{}", scrape.text);
    }
}

/// A minimal gateway with `telemetry` and a master key.
async fn gateway(mock: &MockServer, telemetry: &str) -> Gateway {
    Gateway::start(&format!(
        "server:\n  master_key: sk-master-0123456789\n{telemetry}models:\n  - name: m\n    deployments:\n      - {{provider: vllm, model: up, api_base: '{}'}}\n",
        mock.url()
    ))
    .await
}

async fn get(gateway: &Gateway, key: Option<&str>) -> u16 {
    let mut request = client().get(gateway.url("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn metrics_are_behind_the_master_key_unless_opened_and_absent_when_disabled() {
    const KEY: &str = "sk-master-0123456789";
    let mock = mock().await;

    let keyed = gateway(&mock, "").await;
    assert_eq!(get(&keyed, None).await, 401);
    assert_eq!(get(&keyed, Some("sk-wrong")).await, 401);
    assert_eq!(get(&keyed, Some(KEY)).await, 200);

    let open = gateway(&mock, "telemetry:\n  metrics: {require_key: false}\n").await;
    assert_eq!(get(&open, None).await, 200);
    let unkeyed =
        client().post(open.url("/v1/chat/completions")).json(&chat("m", 0, None)).send().await.unwrap();
    assert_eq!(unkeyed.status(), 401, "opening the metrics does not open the API");

    let disabled = gateway(&mock, "telemetry:\n  metrics: {enabled: false}\n").await;
    assert_eq!(get(&disabled, Some(KEY)).await, 404);
    assert_eq!(get(&disabled, None).await, 404);
    // Without metrics, requests are still served and still report the gateway's overhead.
    let answer = send_with(
        client().post(disabled.url("/v1/chat/completions")).bearer_auth(KEY).json(&chat("m", 0, None)),
        &chat("m", 0, None),
    )
    .await;
    assert_eq!(answer.status, 200);
}
