//! Support for the end-to-end tests: start a gateway from YAML on a free loopback port, and
//! talk to it with a real HTTP client; [`otlp`] receives the traces it exports.

pub mod otlp;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use switchyard_accounting::store::Store;
use switchyard_gateway::{
    accounting::Accounts,
    config::{Config, DatabaseConfig, Secret},
    server::Server,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// A gateway serving on 127.0.0.1 for the length of a test.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    accounts: Accounts,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    /// Starts a gateway from configuration `yaml` (its `listen` is replaced by a free port).
    ///
    /// # Panics
    /// When the configuration is invalid or the gateway cannot start: the test is wrong then.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with_env(yaml, HashMap::new()).await
    }

    /// Like [`Gateway::start`], interpolating `${NAME}` from `env` only.
    ///
    /// # Panics
    /// When the configuration is invalid or the gateway cannot start.
    pub async fn start_with_env(yaml: &str, env: HashMap<String, String>) -> Self {
        let mut config = match Config::parse(yaml, "test.yaml", env.clone()) {
            Ok(config) => config,
            Err(err) => panic!("test configuration is invalid: {err}"),
        };
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        // Without a `database:` of its own, a test keeps its keys and ledger in memory rather
        // than in a switchyard.db file in the working directory.
        if config.database.is_none() {
            config.database = Some(DatabaseConfig { url: Secret::new("sqlite::memory:") });
        }
        let server = match Server::bind(&config, &env).await {
            Ok(server) => server,
            Err(err) => panic!("gateway did not start: {err}"),
        };
        let addr = match server.local_addr() {
            Ok(addr) => addr,
            Err(err) => panic!("no local address: {err}"),
        };
        let accounts = server.accounts().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self { addr, accounts, stop: Some(stop), task }
    }

    /// Its store: keys, teams, users and the spend ledger.
    pub fn store(&self) -> &Store {
        &self.accounts.store
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and waits (up to 5 s) for in-flight requests and for the ledger to
    /// write what it holds.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain HTTP client, as an application would use.
///
/// # Panics
/// If the client cannot be built.
pub fn client() -> reqwest::Client {
    switchyard_providers::client::install_crypto_provider();
    match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
        Ok(client) => client,
        Err(err) => panic!("client: {err}"),
    }
}

/// POSTs `body` to the gateway's `path` and returns the JSON answer, whatever its status.
///
/// # Panics
/// When the request fails or the answer is not JSON: the test fails with the reason.
pub async fn post_json(gateway: &Gateway, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let response = match client().post(gateway.url(path)).json(body).send().await {
        Ok(response) => response,
        Err(err) => panic!("POST {path} failed: {err}"),
    };
    match response.json().await {
        Ok(value) => value,
        Err(err) => panic!("POST {path} did not answer JSON: {err}"),
    }
}

/// A YAML model entry for one OpenAI-dialect deployment at `base` (a mock's URL).
pub fn openai_model(name: &str, upstream_model: &str, base: &str) -> String {
    format!(
        "  - name: {name}\n    deployments:\n      - provider: openai\n        model: {upstream_model}\n        api_base: {base}\n        api_key: sk-upstream-secret-0123456789\n"
    )
}

/// Polls `check` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A chat completion body for `model` with one short user message; `stream` asks for
/// server-sent events.
pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Reads a server-sent-event body to its end and returns the `data:` payload of each event,
/// in order (`[DONE]` included, as sent).
///
/// # Panics
/// When the body breaks off at the transport level: a test that reads a stream expects the
/// gateway to end it with an event, never with a broken connection.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    let text = match response.text().await {
        Ok(text) => text,
        Err(err) => panic!("the stream broke off instead of ending with an event: {err}"),
    };
    text.split("\n\n")
        .filter_map(|event| {
            let lines: Vec<&str> = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

/// Waits, if needed, until at least `need` is left in the current calendar minute.
///
/// Per-deployment limits (`rpm`, `tpm`) count calendar minutes, so that replicas sharing their
/// counts agree on the window; a test that fills a limit must not straddle two minutes, or the
/// count starts again halfway through.
pub async fn within_one_minute(need: Duration) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let into_minute = Duration::from_millis((now.as_millis() % 60_000) as u64);
    let left = Duration::from_secs(60).saturating_sub(into_minute);
    if left < need {
        // A little past the boundary, so that the gateway's clock agrees it is a new minute.
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}
