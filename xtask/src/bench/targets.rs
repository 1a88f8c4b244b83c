//! The benchmark's targets: how each is installed, configured, started and addressed.
//!
//! | target | what | from |
//! |---|---|---|
//! | `direct` | the load generator straight to the mock: the baseline | – |
//! | `nginx` | plain reverse proxy, 1 worker, upstream keep-alive: the floor of one L7 hop | Debian `nginx-light` |
//! | `switchyard` | this workspace's release binary, telemetry as shipped (metrics on, request logs filtered out by `RUST_LOG=warn`, no traces) | `cargo build --release` |
//! | `switchyard-bare` | the same binary with no telemetry: no metrics, no request logs, no traces | the same |
//! | `switchyard-traced` | the same binary with all of it: metrics, one log line per request at info (to its log file), every trace exported over OTLP/HTTP to a local sink | the same |
//! | `switchyard-anthropic` | the same binary, telemetry as shipped, its model served by an Anthropic deployment: every OpenAI request translated to Anthropic Messages and the answer back | the same |
//! | `litellm` | LiteLLM proxy, uvicorn, 1 worker | PyPI `litellm[proxy]` (pinned) |
//! | `portkey` | Portkey gateway, Node.js, `--headless` | npm `@portkey-ai/gateway` (pinned) |
//!
//! Peers are installed from their registries under the bench home
//! (`$SWITCHYARD_BENCH_HOME`, default `~/.cache/switchyard-bench`), never inside the clone, with
//! their versions in the folder names so that a version bump installs afresh. Their settings are
//! defaults, except what it takes to run them here (each is explained where it is set). A peer
//! that cannot be installed or found is reported as "not measured", not an error.
//!
//! The two Switchyard variants measure the cost of observability: the report compares them
//! with `switchyard` in a section of their own and holds traced − bare to the latency budget.
//! The traced variant's spans go to [`OTLP_SINK_PORT`], a `switchyard-mock` of its own on the
//! load core (its `POST /v1/traces` reads each export and discards it) rather than to the mock
//! that serves the completions: the sink's work then lands on the same core as it would there,
//! but the mock's single thread never reads an export of hundreds of KiB between two chat
//! answers (which would charge a stall of the mock to the traced gateway), and the mock's
//! request counter, which validation reads to see that the gateway really called it, counts
//! completions only.
//!
//! `switchyard-anthropic` measures the cost of cross-dialect translation: the load generator
//! still speaks OpenAI Chat Completions, but the model's one deployment is `provider:
//! anthropic` against the same mock, which answers Anthropic's `POST /v1/messages` with the
//! pacing of its OpenAI answers. Each request is translated to Anthropic Messages, and each
//! answer (JSON, and SSE streams event by event) back to OpenAI's shapes. Which dialect a
//! target's upstream speaks is a [`Dialect`], orthogonal to its [`Telemetry`]; the report compares
//! it with `switchyard` in a section of its own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Env;
use crate::util::{capture, which};

pub(crate) const LITELLM_VERSION: &str = "1.106.2";
pub(crate) const PORTKEY_VERSION: &str = "1.15.2";
/// `@hono/node-server` pinned through npm `overrides`: with the 1.14+ that a fresh install
/// resolves, Portkey 1.15.2's OpenAI streaming answers 500 ("TypeError: immutable" when it
/// appends to the upstream response's immutable `Headers`); 1.13.8 works.
pub(crate) const HONO_NODE_SERVER_VERSION: &str = "1.13.8";

pub(crate) const MOCK_PORT: u16 = 18000;
/// The second mock, with long streams, of the held-streams cell.
pub(crate) const HELD_MOCK_PORT: u16 = 18001;
/// The OTLP trace sink of `switchyard-traced`: a third `switchyard-mock`, on the load core.
pub(crate) const OTLP_SINK_PORT: u16 = 18002;
const NGINX_PORT: u16 = 18101;
const LITELLM_PORT: u16 = 18102;
const PORTKEY_PORT: u16 = 18104;
const SWITCHYARD_PORT: u16 = 18110;
const SWITCHYARD_BARE_PORT: u16 = 18111;
const SWITCHYARD_TRACED_PORT: u16 = 18112;
const SWITCHYARD_ANTHROPIC_PORT: u16 = 18113;

/// Switchyard with no telemetry at all.
pub(crate) const SWITCHYARD_BARE: &str = "switchyard-bare";
/// Switchyard with metrics, request logs at info and every trace exported.
pub(crate) const SWITCHYARD_TRACED: &str = "switchyard-traced";
/// Switchyard as shipped, its model served by an Anthropic Messages deployment.
pub(crate) const SWITCHYARD_ANTHROPIC: &str = "switchyard-anthropic";

/// Every target, in report (and run) order. The Switchyard variants run right after
/// `switchyard`, so that the runs each report section compares are close in time: first
/// `switchyard-anthropic` (compared with `switchyard` in "Cross-dialect translation"), then
/// `switchyard-bare` and `switchyard-traced` back to back (traced − bare is what "Cost of
/// observability" holds to the budget).
pub(crate) const ALL: [&str; 8] = [
    "direct",
    "nginx",
    "switchyard",
    SWITCHYARD_ANTHROPIC,
    SWITCHYARD_BARE,
    SWITCHYARD_TRACED,
    "litellm",
    "portkey",
];

/// Whether target `name` runs this workspace's `switchyard` binary (which then must be built).
pub(crate) fn runs_switchyard(name: &str) -> bool {
    Telemetry::of(name).is_some()
}

/// The port target `name` listens on (`None` for `direct`, which is the mock's).
pub(crate) fn port_of(name: &str) -> Option<u16> {
    match name {
        "nginx" => Some(NGINX_PORT),
        "switchyard" => Some(SWITCHYARD_PORT),
        SWITCHYARD_BARE => Some(SWITCHYARD_BARE_PORT),
        SWITCHYARD_TRACED => Some(SWITCHYARD_TRACED_PORT),
        SWITCHYARD_ANTHROPIC => Some(SWITCHYARD_ANTHROPIC_PORT),
        "litellm" => Some(LITELLM_PORT),
        "portkey" => Some(PORTKEY_PORT),
        _ => None,
    }
}

/// A target ready to start (or the reason it cannot be measured).
#[derive(Debug, Default)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) desc: String,
    pub(crate) port: u16,
    /// The command to start it; empty for `direct`.
    pub(crate) argv: Vec<OsString>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: Option<PathBuf>,
    /// Headers every request to it carries.
    pub(crate) headers: Vec<(String, String)>,
    /// The configuration file written for it, when it has one that `switchyard check` reads.
    pub(crate) config: Option<PathBuf>,
    pub(crate) ready_timeout: Duration,
    pub(crate) version: String,
    /// Set when the target cannot be measured: why.
    pub(crate) missing: Option<String>,
}

/// Prepares target `name`: installs it if needed (and allowed), writes its config, finds its
/// version.
pub(crate) fn prepare(name: &'static str, env: &Env) -> Target {
    prepare_for(name, env, Upstream { mock_port: MOCK_PORT, tag: "", nginx_connections: 4096 })
}

/// The same target, configured against the held-streams mock ([`HELD_MOCK_PORT`]), with its own
/// config files (suffix `-held`). Call it after [`prepare`] succeeded: it installs nothing new.
pub(crate) fn prepare_held(name: &'static str, env: &Env) -> Target {
    // nginx counts client and upstream connections against `worker_connections`: 2,000 held
    // streams take 4,000 of them and more with idle keep-alive ones; with the 4,096 of the other
    // cells it logged "worker_connections are not enough" and dropped connections. Only the
    // held config gets more, as nginx preallocates them (it shows in its idle RSS).
    prepare_for(name, env, Upstream { mock_port: HELD_MOCK_PORT, tag: "-held", nginx_connections: 16_384 })
}

/// Which mock a target's config points at, and the suffix of its config files.
#[derive(Debug, Clone, Copy)]
struct Upstream {
    mock_port: u16,
    tag: &'static str,
    nginx_connections: u32,
}

fn prepare_for(name: &'static str, env: &Env, up: Upstream) -> Target {
    let t = match name {
        "direct" => Ok(direct(env)),
        "nginx" => nginx(env, up),
        _ if runs_switchyard(name) => switchyard(name, env, up),
        "litellm" => litellm(env, up),
        "portkey" => portkey(env, up),
        _ => Ok(Target { name, missing: Some("unknown target".to_owned()), ..Target::default() }),
    };
    t.unwrap_or_else(|e| Target { name, missing: Some(format!("{e:#}")), ..Target::default() })
}

fn direct(env: &Env) -> Target {
    Target {
        name: "direct",
        desc: "load generator straight to the mock (no gateway): the baseline".to_owned(),
        port: MOCK_PORT,
        version: env.mock_version.clone(),
        ..Target::default()
    }
}

pub(crate) fn nginx_binary() -> Option<PathBuf> {
    which("nginx").or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
}

fn nginx(env: &Env, up: Upstream) -> Result<Target> {
    let mut t = Target {
        name: "nginx",
        desc: "nginx reverse proxy, 1 worker, upstream keep-alive, proxy_buffering off (floor of one L7 hop)"
            .to_owned(),
        port: NGINX_PORT,
        ready_timeout: Duration::from_secs(20),
        ..Target::default()
    };
    let Some(bin) = nginx_binary() else {
        t.missing = Some(
            env.apt_failure
                .clone()
                .unwrap_or_else(|| "nginx not installed (apt-get install nginx-light)".to_owned()),
        );
        return Ok(t);
    };
    let prefix = env.conf_dir.join(format!("nginx{}", up.tag));
    for sub in ["", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join(sub))
            .with_context(|| format!("creating {}", prefix.display()))?;
    }
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&prefix, NGINX_PORT, up.mock_port, up.nginx_connections))
        .with_context(|| format!("writing {}", conf.display()))?;
    // `-e stderr`: nginx opens its compiled-in error log before reading the config otherwise.
    t.argv = vec![
        bin.clone().into(),
        "-p".into(),
        prefix.into(),
        "-c".into(),
        conf.into(),
        "-e".into(),
        "stderr".into(),
        "-g".into(),
        "daemon off;".into(),
    ];
    t.version = version_line(Command::new(&bin).arg("-v")).replace("nginx version: ", "");
    Ok(t)
}

/// nginx as a plain L7 proxy in front of the mock: no buffering, pooled upstream connections.
fn nginx_conf(prefix: &Path, port: u16, mock_port: u16, worker_connections: u32) -> String {
    let p = prefix.display();
    format!(
        "# Generated by `cargo xtask bench`: nginx as a plain reverse proxy in front of the mock.
worker_processes 1;
pid {p}/nginx.pid;
error_log stderr warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
        }}
    }}
}}
"
    )
}

/// What a Switchyard target turns on of its telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Telemetry {
    /// The defaults (metrics on; request logs on, but `RUST_LOG=warn` filters them out; no
    /// traces): what `switchyard` is benchmarked with against its budget and its peers.
    Shipped,
    /// Nothing: `metrics.enabled: false`, `request_logs: false`, no traces.
    Bare,
    /// Everything: metrics, request logs at info (`RUST_LOG=info`) written to the target's log
    /// file, every trace (`sample_ratio: 1.0`) exported over OTLP/HTTP to the sink.
    Traced,
}

// === impl Telemetry ===

impl Telemetry {
    /// The variant target `name` runs, if it is a Switchyard target.
    pub(crate) fn of(name: &str) -> Option<Telemetry> {
        match name {
            "switchyard" => Some(Telemetry::Shipped),
            SWITCHYARD_BARE => Some(Telemetry::Bare),
            SWITCHYARD_TRACED => Some(Telemetry::Traced),
            SWITCHYARD_ANTHROPIC => Some(Telemetry::Shipped),
            _ => None,
        }
    }

    /// `RUST_LOG`, set rather than inherited so that the caller's environment cannot change
    /// what is measured.
    fn rust_log(self) -> &'static str {
        match self {
            Telemetry::Shipped | Telemetry::Bare => "warn",
            Telemetry::Traced => "info",
        }
    }

    fn describe(self) -> String {
        match self {
            Telemetry::Shipped => "Switchyard (this workspace, release build), `switchyard serve`, RUST_LOG=warn; \
                                   telemetry as shipped: metrics on, request logs filtered out by RUST_LOG, no traces"
                .to_owned(),
            Telemetry::Bare => "the same Switchyard binary with no telemetry: `metrics: {enabled: false}`, \
                                `request_logs: false`, no traces; RUST_LOG=warn"
                .to_owned(),
            Telemetry::Traced => format!(
                "the same Switchyard binary with all telemetry: metrics, one request log line at info \
                 (RUST_LOG=info, to its log file), every trace (`sample_ratio: 1.0`) exported over OTLP/HTTP \
                 to a local sink (switchyard-mock on 127.0.0.1:{OTLP_SINK_PORT}, load core)"
            ),
        }
    }

    /// The `telemetry:` section of the config (empty for the defaults).
    fn yaml(self) -> String {
        match self {
            Telemetry::Shipped => String::new(),
            Telemetry::Bare => {
                "telemetry:\n  metrics:\n    enabled: false\n  request_logs: false\n".to_owned()
            }
            Telemetry::Traced => format!(
                "telemetry:
  metrics:
    enabled: true
  request_logs: true
  traces:
    endpoint: http://127.0.0.1:{OTLP_SINK_PORT}
    protocol: http
    sample_ratio: 1.0
"
            ),
        }
    }
}

/// The dialect a target's upstream speaks: which of the mock's APIs serves its completions.
/// The load generator speaks OpenAI Chat Completions to every target; a target whose upstream
/// speaks another dialect translates each request and each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`): every target but one, no
    /// translation.
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`): `switchyard-anthropic`.
    Anthropic,
}

// === impl Dialect ===

impl Dialect {
    /// The dialect target `name`'s upstream speaks.
    pub(crate) fn of(name: &str) -> Dialect {
        match name {
            SWITCHYARD_ANTHROPIC => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// The counter of the mock's `GET /__stats` that counts the completions it served in this
    /// dialect, streamed or not. The mock counts only OpenAI-shaped chat requests (and
    /// Bedrock's, Cohere's, Gemini's) in `chat_completions`, not Anthropic Messages; its
    /// `requests` counts every request of any dialect, and while a target runs, the only
    /// requests the bench's mocks receive are that target's completions (`/__stats` is not
    /// counted, and OTLP exports go to a sink of their own).
    pub(crate) fn completions_counter(self) -> &'static str {
        match self {
            Dialect::OpenAi => "chat_completions",
            Dialect::Anthropic => "requests",
        }
    }

    /// How the report names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Dialect::OpenAi => "OpenAI Chat Completions (no translation)",
            Dialect::Anthropic => "Anthropic Messages (request and answer translated)",
        }
    }

    /// What the target description adds (nothing for OpenAI).
    fn describe(self) -> &'static str {
        match self {
            Dialect::OpenAi => "",
            Dialect::Anthropic => {
                "; its model `mock-gpt` served by an Anthropic deployment (`provider: anthropic`, \
                 `model: mock-claude`, the mock's `POST /v1/messages`): each OpenAI request translated \
                 to Anthropic Messages, each answer (JSON, and SSE streams event by event) back"
            }
        }
    }

    /// The model's one deployment in Switchyard's config, against the mock on `mock_port`.
    /// Anthropic's `api_base` has no `/v1`: the adapter appends `/v1/messages`.
    fn deployment_yaml(self, mock_port: u16) -> String {
        let (provider, model, base) = match self {
            Dialect::OpenAi => ("openai", "mock-gpt", format!("http://127.0.0.1:{mock_port}/v1")),
            Dialect::Anthropic => ("anthropic", "mock-claude", format!("http://127.0.0.1:{mock_port}")),
        };
        format!(
            "      - provider: {provider}
        model: {model}
        api_base: {base}
        api_key: mock-key
"
        )
    }
}

fn switchyard(name: &'static str, env: &Env, up: Upstream) -> Result<Target> {
    let telemetry = Telemetry::of(name).context("not a Switchyard target")?;
    let dialect = Dialect::of(name);
    let port = port_of(name).context("no port")?;
    let mut t = Target {
        name,
        desc: format!("{}{}", telemetry.describe(), dialect.describe()),
        port,
        ready_timeout: Duration::from_secs(30),
        env: vec![("RUST_LOG".to_owned(), telemetry.rust_log().to_owned())],
        ..Target::default()
    };
    let bin = env.release_dir.join("switchyard");
    if let Some(why) = &env.switchyard_build_error {
        t.missing = Some(why.clone());
        return Ok(t);
    }
    if !bin.is_file() {
        t.missing = Some("binary not built".to_owned());
        return Ok(t);
    }
    let config = env.conf_dir.join(format!("{name}{}.yaml", up.tag));
    let ledger = env.conf_dir.join("switchyard-ledger.db");
    std::fs::write(&config, switchyard_yaml(telemetry, dialect, port, up.mock_port, &ledger))
        .with_context(|| format!("writing {}", config.display()))?;
    t.argv = vec![bin.clone().into(), "serve".into(), "--config".into(), config.clone().into()];
    t.config = Some(config);
    let v = version_line(Command::new(&bin).arg("--version"));
    t.version = format!("{v} ({})", env.git_rev);
    Ok(t)
}

/// Switchyard's config: one model, `mock-gpt`, served by the mock on `mock_port` in
/// `dialect`, its spend ledger in the SQLite file `ledger` (every request is recorded, as in
/// production), and `telemetry`.
fn switchyard_yaml(
    telemetry: Telemetry,
    dialect: Dialect,
    port: u16,
    mock_port: u16,
    ledger: &std::path::Path,
) -> String {
    format!(
        "# Generated by `cargo xtask bench`: one model served by the mock; no master key on loopback.
server:
  listen: 127.0.0.1:{port}
database:
  url: 'sqlite://{}'
models:
  - name: mock-gpt
    deployments:
{}{}",
        ledger.display(),
        dialect.deployment_yaml(mock_port),
        telemetry.yaml()
    )
}

fn litellm(env: &Env, up: Upstream) -> Result<Target> {
    let mut t = Target {
        name: "litellm",
        desc: "LiteLLM proxy, defaults (uvicorn, 1 worker), no database".to_owned(),
        port: LITELLM_PORT,
        // It imports a lot at start (~10 s here).
        ready_timeout: Duration::from_secs(180),
        ..Target::default()
    };
    let venv = env.bench_home.join(format!("litellm-{LITELLM_VERSION}"));
    let stamp = venv.join(".switchyard-installed");
    if !stamp.is_file() {
        if !env.install {
            t.missing = Some(format!("not installed in {} (run without --no-install)", venv.display()));
            return Ok(t);
        }
        if which("python3").is_none() {
            t.missing = Some("python3 not found".to_owned());
            return Ok(t);
        }
        let pip = venv.join("bin/pip");
        let script = format!(
            "python3 -m venv '{v}' && '{pip}' install -q 'litellm[proxy]=={LITELLM_VERSION}' && touch '{s}'",
            v = venv.display(),
            pip = pip.display(),
            s = stamp.display()
        );
        if let Err(why) =
            install(env, "litellm", &format!("pip install litellm[proxy]=={LITELLM_VERSION}"), &script)
        {
            t.missing = Some(why);
            return Ok(t);
        }
    }
    let config = env.conf_dir.join(format!("litellm{}.yaml", up.tag));
    std::fs::write(
        &config,
        format!(
            "# Generated by `cargo xtask bench`: one model served by the mock; defaults otherwise.
model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/mock-gpt
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: sk-mock-not-a-real-key
general_settings: {{}}
litellm_settings: {{}}
",
            mock_port = up.mock_port
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    // LiteLLM 1.106 refuses to start without a master key: a random one per run, sent as a
    // client would. LITELLM_LOCAL_MODEL_COST_MAP skips fetching the price map from GitHub at
    // start (which cannot be reached here and costs ~7 s of retries).
    let key = format!("sk-bench-{}", random_hex(24)?);
    t.env = vec![
        ("LITELLM_MASTER_KEY".to_owned(), key.clone()),
        ("LITELLM_LOCAL_MODEL_COST_MAP".to_owned(), "True".to_owned()),
        ("LITELLM_TELEMETRY".to_owned(), "False".to_owned()),
    ];
    t.headers = vec![("Authorization".to_owned(), format!("Bearer {key}"))];
    t.argv = vec![
        venv.join("bin/litellm").into(),
        "--config".into(),
        config.into(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        LITELLM_PORT.to_string().into(),
    ];
    let v = version_line(Command::new(venv.join("bin/python")).args([
        "-c",
        "import importlib.metadata as m, sys; print(m.version('litellm'), 'on Python', sys.version.split()[0])",
    ]));
    t.version = format!("litellm {v}");
    Ok(t)
}

fn portkey(env: &Env, up: Upstream) -> Result<Target> {
    let mut t = Target {
        name: "portkey",
        desc: "Portkey gateway (Node.js) `start-server.js --headless`, NODE_ENV=production".to_owned(),
        port: PORTKEY_PORT,
        ready_timeout: Duration::from_secs(60),
        ..Target::default()
    };
    let Some(node) = which("node") else {
        t.missing = Some("node not found (Node.js is needed for Portkey)".to_owned());
        return Ok(t);
    };
    let dir = env.bench_home.join(format!("portkey-{PORTKEY_VERSION}-hono-{HONO_NODE_SERVER_VERSION}"));
    let pkg_dir = dir.join("node_modules/@portkey-ai/gateway");
    let start = pkg_dir.join("build/start-server.js");
    if !start.is_file() {
        if !env.install {
            t.missing = Some(format!("not installed in {} (run without --no-install)", dir.display()));
            return Ok(t);
        }
        if which("npm").is_none() {
            t.missing = Some("npm not found".to_owned());
            return Ok(t);
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let manifest = serde_json::json!({
            "name": "switchyard-bench-portkey",
            "version": "0.0.0",
            "private": true,
            "overrides": { "@hono/node-server": HONO_NODE_SERVER_VERSION },
        });
        std::fs::write(dir.join("package.json"), format!("{manifest:#}\n"))
            .context("writing package.json")?;
        let script = format!(
            "cd '{}' && npm install --no-audit --no-fund --loglevel=error '@portkey-ai/gateway@{PORTKEY_VERSION}'",
            dir.display()
        );
        if let Err(why) =
            install(env, "portkey", &format!("npm install @portkey-ai/gateway@{PORTKEY_VERSION}"), &script)
        {
            t.missing = Some(why);
            return Ok(t);
        }
        if !start.is_file() {
            t.missing = Some(format!("npm install finished but {} is missing", start.display()));
            return Ok(t);
        }
    }
    let mock_base = format!("http://127.0.0.1:{}/v1", up.mock_port);
    t.headers = vec![
        ("x-portkey-provider".to_owned(), "openai".to_owned()),
        ("x-portkey-custom-host".to_owned(), mock_base),
        ("Authorization".to_owned(), "Bearer sk-mock-not-a-real-key".to_owned()),
    ];
    t.env = vec![("NODE_ENV".to_owned(), "production".to_owned())];
    t.argv =
        vec![node.clone().into(), start.into(), format!("--port={PORTKEY_PORT}").into(), "--headless".into()];
    let pkg_version = |p: &Path| -> String {
        std::fs::read(p.join("package.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("version")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned())
    };
    t.version = format!(
        "@portkey-ai/gateway {} + @hono/node-server {} on Node {}",
        pkg_version(&pkg_dir),
        pkg_version(&dir.join("node_modules/@hono/node-server")),
        version_line(Command::new(&node).arg("--version")).trim_start_matches('v')
    );
    Ok(t)
}

/// Runs an install script with a time limit, its output in the run's log folder.
fn install(env: &Env, name: &str, what: &str, script: &str) -> std::result::Result<(), String> {
    eprintln!("bench: installing {name}: {what} (under {})", env.bench_home.display());
    if let Err(e) = std::fs::create_dir_all(&env.bench_home) {
        return Err(format!("cannot create {}: {e}", env.bench_home.display()));
    }
    let log = env.log_dir.join(format!("install-{name}.log"));
    match capture(Command::new("bash").args(["-c", script]), Duration::from_secs(1200)) {
        Ok(out) => {
            let _ = std::fs::write(&log, format!("$ {script}\n{}\n{}", out.stdout, out.stderr));
            if out.success() {
                Ok(())
            } else if out.timed_out {
                Err(format!("install timed out: {what} (log: {})", log.display()))
            } else {
                Err(format!("install failed: {what}: {}", one_line(&out.tail(200))))
            }
        }
        Err(e) => Err(format!("install failed: {what}: {e:#}")),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first non-empty line a version command prints (on stdout or stderr), or `?`.
pub(crate) fn version_line(cmd: &mut Command) -> String {
    match capture(cmd, Duration::from_secs(60)) {
        Ok(out) => format!("{}\n{}", out.stdout, out.stderr)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("?")
            .to_owned(),
        Err(_) => "?".to_owned(),
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_config_proxies_to_the_mock_with_keepalive() {
        let c = nginx_conf(Path::new("/tmp/x"), 18101, 18000, 4096);
        for needle in [
            "worker_processes 1;",
            "worker_connections 4096;",
            "server 127.0.0.1:18000;",
            "keepalive 256;",
            "listen 127.0.0.1:18101",
            "proxy_http_version 1.1;",
            "proxy_buffering off;",
            "proxy_set_header Connection \"\";",
        ] {
            assert!(c.contains(needle), "missing {needle:?} in\n{c}");
        }
        assert!(!c.contains("daemon"), "daemon off is given with -g");
    }

    #[test]
    fn switchyard_variants_differ_only_in_telemetry() {
        let yaml =
            |t| switchyard_yaml(t, Dialect::OpenAi, 18111, 18000, std::path::Path::new("/tmp/ledger.db"));
        let shipped = yaml(Telemetry::Shipped);
        assert!(!shipped.contains("telemetry:"), "the defaults, as shipped:\n{shipped}");
        for t in [Telemetry::Shipped, Telemetry::Bare, Telemetry::Traced] {
            let y = yaml(t);
            assert!(y.starts_with(&shipped), "the same server and model, telemetry appended:\n{y}");
            assert!(
                y.contains("listen: 127.0.0.1:18111\n")
                    && y.contains("api_base: http://127.0.0.1:18000/v1\n")
            );
        }
        assert_eq!(
            yaml(Telemetry::Bare)[shipped.len()..],
            *"telemetry:\n  metrics:\n    enabled: false\n  request_logs: false\n"
        );
        let traced = &yaml(Telemetry::Traced)[shipped.len()..];
        for needle in [
            "  metrics:\n    enabled: true\n",
            "  request_logs: true\n",
            "  traces:\n    endpoint: http://127.0.0.1:18002\n    protocol: http\n    sample_ratio: 1.0\n",
        ] {
            assert!(traced.contains(needle), "missing {needle:?} in\n{traced}");
        }
        assert_eq!(
            [Telemetry::Shipped, Telemetry::Bare, Telemetry::Traced].map(Telemetry::rust_log),
            ["warn", "warn", "info"]
        );
    }

    #[test]
    fn cross_dialect_variant_differs_from_switchyard_only_in_the_deployment() {
        let ledger = std::path::Path::new("/tmp/ledger.db");
        let (telemetry, dialect) = (Telemetry::of(SWITCHYARD_ANTHROPIC), Dialect::of(SWITCHYARD_ANTHROPIC));
        assert_eq!((telemetry, dialect), (Some(Telemetry::Shipped), Dialect::Anthropic), "as shipped");
        assert_eq!(Dialect::of("switchyard"), Dialect::OpenAi);
        let shipped = switchyard_yaml(Telemetry::Shipped, Dialect::OpenAi, 18113, 18000, ledger);
        let cross = switchyard_yaml(Telemetry::Shipped, Dialect::Anthropic, 18113, 18000, ledger);
        let openai_deployment = "      - provider: openai\n        model: mock-gpt\n        \
                                 api_base: http://127.0.0.1:18000/v1\n        api_key: mock-key\n";
        let anthropic_deployment = "      - provider: anthropic\n        model: mock-claude\n        \
                                    api_base: http://127.0.0.1:18000\n        api_key: mock-key\n";
        assert!(shipped.ends_with(openai_deployment), "{shipped}");
        assert!(cross.ends_with(anthropic_deployment), "no /v1: the adapter appends /v1/messages\n{cross}");
        assert_eq!(
            shipped.replace(openai_deployment, ""),
            cross.replace(anthropic_deployment, ""),
            "the same server, ledger, model name and telemetry"
        );
        assert!(cross.contains("  - name: mock-gpt\n"), "the load generator asks for mock-gpt:\n{cross}");
        // The held-streams config points the same deployment at the held mock.
        let held = switchyard_yaml(Telemetry::Shipped, Dialect::Anthropic, 18113, HELD_MOCK_PORT, ledger);
        assert!(held.contains("api_base: http://127.0.0.1:18001\n"), "{held}");
        // Its completions are counted by a counter the mock bumps for Messages.
        assert_eq!(
            [Dialect::OpenAi, Dialect::Anthropic].map(Dialect::completions_counter),
            ["chat_completions", "requests"]
        );
    }

    #[test]
    fn every_target_has_its_own_port() {
        assert_eq!(
            ALL[2..6],
            ["switchyard", "switchyard-anthropic", "switchyard-bare", "switchyard-traced"],
            "the variants right after switchyard, traced right after bare"
        );
        let mut ports: Vec<u16> = ALL.iter().filter_map(|t| port_of(t)).collect();
        ports.extend([MOCK_PORT, HELD_MOCK_PORT, OTLP_SINK_PORT]);
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!((ports.len(), n), (ALL.len() - 1 + 3, ALL.len() - 1 + 3), "{ports:?}");
        assert_eq!(port_of(SWITCHYARD_ANTHROPIC), Some(18113));
        assert!(ALL.iter().filter(|t| runs_switchyard(t)).eq(&ALL[2..6]));
        assert!(ALL.iter().filter(|t| Dialect::of(t) == Dialect::Anthropic).eq(&[SWITCHYARD_ANTHROPIC]));
    }

    #[test]
    fn random_keys_differ() {
        let (a, b) = (random_hex(8).expect("urandom"), random_hex(8).expect("urandom"));
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }
}
