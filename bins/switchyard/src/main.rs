//! The `switchyard` command: a thin command line over `switchyard-gateway`.
//!
//! It parses arguments, loads the configuration, sets up the runtime, logs and traces
//! (`switchyard-telemetry`), and calls the gateway crate; all behaviour lives there.
//! `keys`, `teams`, `users` and `spend` ([`admin`]) work on the accounting database directly.

mod admin;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand, ValueEnum};
use switchyard_accounting::prices::Catalog;
use switchyard_gateway::{
    config::{Config, TraceProtocol, TracesConfig},
    server::Server,
};
use switchyard_telemetry::{logs, trace};

/// mimalloc: a request allocates a few dozen small short-lived buffers, and glibc's malloc spent
/// about a fifth of the gateway's instructions on them (callgrind, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchyard: one OpenAI-compatible endpoint in front of many LLM providers.
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway.
    ///
    /// Without --config it serves every provider whose API key is in the environment (as
    /// `<provider>/<model>`, e.g. openai/gpt-4o-mini), or, with no key at all, the built-in
    /// local `mock` model, so that a first request works with no account.
    Serve {
        /// The configuration file (YAML).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Listen on this address instead of the configured one.
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SWITCHYARD_LOG_FORMAT")]
        log_format: LogFormat,
        /// How long in-flight requests may take to finish after SIGTERM or Ctrl-C, in seconds.
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
    },
    /// Validate a configuration file and explain what it serves.
    Check {
        /// The configuration file (YAML).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Create, list, change, revoke and rotate virtual keys (sk-sy-...).
    Keys {
        #[command(flatten)]
        database: admin::Database,
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Teams: keys belong to them and share their limits and budgets.
    Teams {
        #[command(flatten)]
        database: admin::Database,
        #[command(subcommand)]
        command: admin::GroupCommand,
    },
    /// Users: keys belong to them and share their limits and budgets.
    Users {
        #[command(flatten)]
        database: admin::Database,
        #[command(subcommand)]
        command: admin::GroupCommand,
    },
    /// Report spend by key, team, user, model or day over a time range.
    Spend {
        #[command(flatten)]
        database: admin::Database,
        #[command(flatten)]
        args: admin::SpendArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config, listen, log_format, drain_secs } => {
            serve(config, listen, log_format.into(), Duration::from_secs(drain_secs))
        }
        Command::Keys { database, command } => {
            admin::run(&database, async move |store, json| admin::keys(store, json, command).await)
        }
        Command::Teams { database, command } => {
            admin::run(&database, async move |store, json| admin::teams(store, json, command).await)
        }
        Command::Users { database, command } => {
            admin::run(&database, async move |store, json| admin::users(store, json, command).await)
        }
        Command::Spend { database, args } => {
            admin::run(&database, async move |store, json| admin::spend(store, json, args).await)
        }
    }
}

impl From<LogFormat> for logs::LogFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => Self::Text,
            LogFormat::Json => Self::Json,
        }
    }
}

/// Loads the configuration, starts logs and traces (the trace exporter runs on the gateway's
/// runtime), serves until drained, then flushes the last spans while the runtime still runs.
fn serve(
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    format: logs::LogFormat,
    drain: Duration,
) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = match &path {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(err) => return fail_to_start(format, &err),
        },
        None => Config::zero_config(&env),
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail_to_start(format, &format_args!("cannot start the async runtime: {err}")),
    };
    let traces = config.telemetry.traces.as_ref().map(trace_config);
    let guard = match runtime.block_on(async { logs::init(format, traces) }) {
        Ok(guard) => guard,
        Err(err) => return fail_to_start(format, &err),
    };
    if let Some(traces) = &config.telemetry.traces {
        let protocol = match traces.protocol {
            TraceProtocol::Http => "OTLP/HTTP",
            TraceProtocol::Grpc => "OTLP/gRPC",
        };
        tracing::info!("exporting traces to {} ({protocol})", traces.endpoint);
    }
    let code = runtime.block_on(run(config, env, path.is_some(), drain));
    // Outside the runtime's async context, while its workers still run the final export.
    drop(guard);
    code
}

/// Reports why the gateway could not start, in the chosen log format when logs can still be
/// set up (they cannot when they were already).
fn fail_to_start(format: logs::LogFormat, err: &dyn std::fmt::Display) -> ExitCode {
    match logs::init(format, None) {
        Ok(_guard) => tracing::error!("{err}"),
        #[allow(clippy::print_stderr, reason = "logs are already set up, or cannot be: say it anyway")]
        Err(_) => eprintln!("{err}"),
    }
    ExitCode::FAILURE
}

/// The gateway's `telemetry.traces` as the telemetry crate takes it.
fn trace_config(traces: &TracesConfig) -> trace::TraceConfig {
    trace::TraceConfig {
        endpoint: traces.endpoint.clone(),
        protocol: match traces.protocol {
            TraceProtocol::Http => trace::TraceProtocol::Http,
            TraceProtocol::Grpc => trace::TraceProtocol::Grpc,
        },
        sample_ratio: traces.sample_ratio,
        service_name: traces.service_name.clone(),
        headers: traces
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect(),
        capture_content: traces.capture_content,
    }
}

async fn run(config: Config, env: HashMap<String, String>, from_file: bool, drain: Duration) -> ExitCode {
    let server = match Server::bind(&config, &env).await {
        Ok(server) => server,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr().map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    announce(&config, from_file, &addr, server.is_authenticated());
    let (drain_started, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!(
            "shutting down: no new connections; letting in-flight requests finish (up to {drain:?})"
        );
        let _ = drain_started.send(());
    };
    let served = tokio::spawn(server.run(shutdown));
    let result = tokio::select! {
        joined = served => joined,
        () = async { let _ = drain_rx.await; tokio::time::sleep(drain).await } => {
            tracing::warn!("requests still in flight after {drain:?}; exiting anyway");
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(Ok(())) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(Err(err)) => {
            tracing::error!("the server failed: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            tracing::error!("the server task failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What a person needs to know at start: where, what, and how it is protected.
fn announce(config: &Config, from_file: bool, addr: &str, authenticated: bool) {
    tracing::info!("switchyard {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    for model in &config.models {
        let deployments: Vec<String> =
            model.deployments.iter().map(|d| format!("{}/{}", d.provider.value, d.model.value)).collect();
        tracing::info!("model {} -> {}", model.name.value, deployments.join(", "));
    }
    if !from_file {
        if config.models.iter().any(|m| m.name.value == "mock") {
            tracing::info!(
                "no provider API key in the environment (OPENAI_API_KEY, GROQ_API_KEY, ...) and no --config: \
                 serving the built-in `mock` model, which answers locally and calls no provider"
            );
        }
        tracing::info!(
            "try: curl http://{addr}/v1/chat/completions -H 'content-type: application/json' \
             -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'",
            config.models.first().map_or("mock", |m| if m.name.value.ends_with('*') {
                "openai/gpt-4o-mini"
            } else {
                &m.name.value
            })
        );
    }
    tracing::info!(
        "keys and spend ledger: {}",
        switchyard_gateway::accounting::describe_database(config.database_url())
    );
    if !authenticated {
        tracing::warn!(
            "no master key configured: listening on loopback only; requests without a key are accepted and the admin API is open to local callers (set server.master_key to require keys)"
        );
    }
}

/// Where a deployment's price comes from, for `check`.
fn price_text(deployment: &switchyard_gateway::config::DeploymentConfig) -> String {
    let per_million = |input: f64, output: f64| format!("${input}/${output} per 1M tokens in/out");
    if let Some(price) = &deployment.price {
        return format!("price {}", per_million(price.input, price.output));
    }
    if deployment.model.value == "*" {
        return "priced from the catalog by the model each request names".to_owned();
    }
    match Catalog::builtin().price(&deployment.provider.value, &deployment.model.value) {
        Some(price) => format!("catalog price {}", per_million(price.input, price.output)),
        None => "no price: its spend counts $0 (set price: {input, output})".to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[allow(clippy::print_stdout, reason = "`check` reports to the terminal by design")]
fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!("{} is valid.", path.display());
            println!("listen: {}", config.server.listen);
            println!(
                "auth: {}",
                if config.server.master_key.is_some() {
                    "master key required"
                } else {
                    "none (only allowed on loopback)"
                }
            );
            println!(
                "keys and spend ledger: {}{}",
                switchyard_gateway::accounting::describe_database(config.database_url()),
                if config.redis.is_some() { "; limits shared through Redis" } else { "" }
            );
            let router = &config.router;
            println!(
                "routing: up to {} retries; cooldown after {} failures, for {} ms{}",
                router.retries,
                router.cooldown.failures,
                router.cooldown.duration_ms,
                if config.redis.is_some() { ", state shared through Redis" } else { "" }
            );
            println!("models ({}):", config.models.len());
            for model in &config.models {
                let policy = model.routing.policy.unwrap_or(router.policy);
                println!("  {} ({})", model.name.value, policy.policy().as_str());
                for d in &model.deployments {
                    let base = d.api_base.as_ref().map(|b| format!(" at {}", b.value)).unwrap_or_default();
                    println!("    - {} model {}{base}; {}", d.provider.value, d.model.value, price_text(d));
                }
                let limits = &model.limits;
                let parts: Vec<String> =
                    [("rpm", limits.rpm), ("tpm", limits.tpm), ("in flight", limits.max_parallel)]
                        .iter()
                        .filter_map(|(name, value)| value.map(|v| format!("{v} {name}")))
                        .collect();
                if !parts.is_empty() {
                    println!("    client limits: {}", parts.join(", "));
                }
                for (kind, list) in [
                    ("falls back to", &model.fallbacks),
                    ("too-long prompts fall back to", &model.context_window_fallbacks),
                    ("refused content falls back to", &model.content_policy_fallbacks),
                ] {
                    if !list.is_empty() {
                        let names: Vec<&str> = list.iter().map(|m| m.value.as_str()).collect();
                        println!("    {kind}: {}", names.join(", "));
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            #[allow(clippy::print_stderr, reason = "`check` reports to the terminal by design")]
            {
                eprint!("{err}");
            }
            ExitCode::FAILURE
        }
    }
}
