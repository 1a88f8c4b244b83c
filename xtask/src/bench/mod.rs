//! `cargo xtask bench`: the side-by-side gateway benchmark on loopback, in one run.
//!
//! One mock provider (`switchyard-mock`) serves every target; each target is started alone,
//! validated like a client would (and checked to really call the mock), warmed up, then loaded
//! cell by cell: non-streaming at several concurrencies (wrk), sparse non-streaming (one request
//! every 20 ms on one connection, the probe's `--interval-ms`: LLM traffic is sparse, and a
//! process that idles between requests runs its path with cold caches), streaming at a few
//! concurrencies (the probe). Last, after all of those, the held-streams cell (not for `direct`):
//! [`HeldSpec::FULL`] streams opened at once and kept open by a second mock whose streams last
//! 20 s, while the gateway's memory and open fds are sampled: the "2,000 open streams" budget.
//! Placement is the same for every target: the gateway on one core (`taskset -c 1`), the load
//! generator, the mock and this orchestrator on the other (`-c 0`), so every figure is "what
//! one core of gateway delivers". See `docs/benchmarks.md` for the latest table and caveats.
//!
//! The cost of observability is measured as two more targets running the same binary:
//! `switchyard-bare` (no metrics, no request logs, no traces) and `switchyard-traced` (metrics,
//! request logs at info into its log file, every trace exported over OTLP/HTTP to a sink, a
//! third mock on [`OTLP_SINK_PORT`] on the load core, started only when that target runs). For
//! every target the run records the completions the mocks served and the bytes its logs took
//! (logs over [`LOG_KEEP_MAX`] are then cut to their head and tail, as request logs at info
//! reach hundreds of MiB in a full run); for the traced one, also the exports, bytes and CPU of
//! the sink. The report compares the three side by side and holds traced − bare to the latency
//! budget.
//!
//! The cost of cross-dialect translation is one more target on the same binary:
//! `switchyard-anthropic`, telemetry as shipped, whose model is served by an Anthropic
//! deployment against the same mock (its `POST /v1/messages`, paced like its OpenAI answers).
//! The load keeps speaking OpenAI Chat Completions, so every request is translated to Anthropic
//! Messages and every answer, JSON or SSE event by event, back. Its completions are counted with
//! the mock's counter for that dialect ([`targets::Dialect::completions_counter`]). The report
//! compares it with `switchyard`, shows the difference, and holds its streaming time to first
//! byte to the budget over nginx.
//!
//! `--smoke` is the CI variant: `direct` and `switchyard` only, 1 s cells at concurrency 1
//! and 8 plus the sparse cell and a small held-streams cell ([`HeldSpec::SMOKE`]: 50 streams of
//! 2 s, about 4 s in all), no peer installs, the table printed and not written; it fails when a
//! validation or a cell fails, so the benchmark cannot rot. The three Switchyard variants
//! (`switchyard-anthropic`, `switchyard-bare`, `switchyard-traced`) are not measured in it
//! (about 15 s each, more time for figures nobody reads from 1 s cells); instead their
//! generated configs go through `switchyard check`, which fails the smoke if the gateway's
//! configuration has moved away from what the bench writes. `--smoke --targets
//! switchyard,switchyard-anthropic,switchyard-bare,switchyard-traced` measures them too.

mod http;
mod load;
mod procs;
mod report;
mod targets;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use self::load::{CellSys, JsonLoad, LoadGen, StreamLoad};
use self::procs::{GroupMem, Proc};
use self::targets::{Dialect, HELD_MOCK_PORT, MOCK_PORT, OTLP_SINK_PORT, SWITCHYARD_TRACED, Target};
use crate::util::{capture, cargo, repo_root, run_inherit, target_dir, which};

const HELP: &str = "\
usage: cargo xtask bench [options]

Side-by-side benchmark on 127.0.0.1 against the switchyard-mock provider; writes the table to
docs/benchmarks.md and the raw figures to <target-dir>/bench/<UTC time>/results.json.

options:
  --targets a,b,...    targets, from: direct,nginx,switchyard,switchyard-anthropic,
                       switchyard-bare,switchyard-traced,litellm,portkey (default: all; direct,
                       the baseline, always runs). switchyard-anthropic is the same binary as
                       switchyard with its model served by an Anthropic deployment (provider:
                       anthropic, the mock's POST /v1/messages): every OpenAI request and answer
                       translated, the \"Cross-dialect translation\" section. switchyard-bare
                       and switchyard-traced are the same binary with no telemetry, and with
                       metrics + request logs at info (to a file) + every trace exported over
                       OTLP/HTTP to a local sink (a third mock on 127.0.0.1:18002, load core):
                       the \"Cost of observability\" section
  --duration N         seconds per measured cell (default 10; 1-60)
  --warmup N           seconds of warm-up per target, not recorded (default 3)
  --conc LIST          non-streaming concurrencies (default 1,16,64)
  --stream-conc LIST   streaming concurrencies (default 1,16)
  --no-stream          no streaming cells
  --no-sparse          no sparse cell (non-streaming, c=1, one request every 20 ms, by
                       switchyard-sse-probe --interval-ms 20; on by default, also in --smoke)
  --no-held            no held-streams cell (2,000 streams held open at once against a second
                       mock whose streams last 20 s; run last for every target but direct;
                       in --smoke: 50 streams of 2 s)
  --no-install         do not install missing peers, nginx or wrk (they are then not measured)
  --quiet-wait N       before each target, wait up to N s for other processes to go quiet
                       (default 60; 0: never wait; background CPU is reported either way)
  --gw-cpu N           core of the gateway (default 1)
  --load-cpu N         core of the load generator, mock and orchestrator (default 0)
  --no-write           print the table; do not write docs/benchmarks.md
  --no-build           use the release binaries already built (switchyard, switchyard-mock,
                       switchyard-sse-probe) instead of running cargo build --release
  --smoke              CI mode: direct + switchyard, 1 s cells, c=1 and 8, sparse, 50 held streams
                       of 2 s (~4 s more), no installs, `switchyard check` of the configs of
                       switchyard-anthropic, switchyard-bare and switchyard-traced (not measured
                       unless --targets names them), prints the table, fails if any validation,
                       cell or check fails

environment:
  SWITCHYARD_BENCH_HOME  where peers are installed (default ~/.cache/switchyard-bench)
";

/// Command-line options.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    smoke: bool,
    targets: Vec<&'static str>,
    duration: u64,
    warmup: u64,
    conc: Vec<u32>,
    stream_conc: Vec<u32>,
    stream: bool,
    sparse: bool,
    held: bool,
    install: bool,
    quiet_wait: u64,
    gw_cpu: String,
    load_cpu: String,
    write_docs: bool,
    build: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            smoke: false,
            targets: targets::ALL.to_vec(),
            duration: 10,
            warmup: 3,
            conc: vec![1, 16, 64],
            stream_conc: vec![1, 16],
            stream: true,
            sparse: true,
            held: true,
            install: true,
            quiet_wait: 60,
            gw_cpu: "1".to_owned(),
            load_cpu: "0".to_owned(),
            write_docs: true,
            build: true,
        }
    }
}

fn parse_opts(args: &[String]) -> Result<Option<Opts>> {
    let mut o = Opts::default();
    if args.iter().any(|a| a == "--smoke") {
        o = Opts {
            smoke: true,
            targets: vec!["direct", "switchyard"],
            duration: 1,
            warmup: 1,
            conc: vec![1, 8],
            stream_conc: vec![1, 8],
            install: false,
            quiet_wait: 0,
            write_docs: false,
            ..o
        };
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        let list = |v: &str| -> Result<Vec<u32>> {
            let l = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().parse::<u32>().ok().filter(|c| (1..=4096).contains(c)))
                .collect::<Option<Vec<u32>>>()
                .with_context(|| format!("{a}: expected a list of concurrencies in 1..=4096, got `{v}`"))?;
            ensure!(!l.is_empty(), "{a}: empty list");
            Ok(l)
        };
        match a.as_str() {
            "--smoke" => {}
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--targets" => {
                let v = value()?;
                let mut chosen = vec!["direct"];
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let known = targets::ALL.iter().find(|t| **t == name).with_context(|| {
                        format!("unknown target `{name}`; targets: {}", targets::ALL.join(","))
                    })?;
                    if !chosen.contains(known) {
                        chosen.push(known);
                    }
                }
                // Report order, whatever the order given.
                o.targets = targets::ALL.iter().copied().filter(|t| chosen.contains(t)).collect();
            }
            "--duration" => {
                o.duration =
                    value()?.parse().ok().filter(|d| (1..=60).contains(d)).context("--duration: 1 to 60 s")?
            }
            "--warmup" => {
                o.warmup = value()?.parse().ok().filter(|d| *d <= 60).context("--warmup: 0 to 60 s")?
            }
            "--conc" => o.conc = list(value()?)?,
            "--stream-conc" => o.stream_conc = list(value()?)?,
            "--no-stream" => o.stream = false,
            "--no-sparse" => o.sparse = false,
            "--no-held" => o.held = false,
            "--no-install" => o.install = false,
            "--quiet-wait" => {
                o.quiet_wait =
                    value()?.parse().ok().filter(|d| *d <= 600).context("--quiet-wait: 0 to 600 s")?
            }
            "--gw-cpu" => o.gw_cpu = cpu_arg(value()?)?,
            "--load-cpu" => o.load_cpu = cpu_arg(value()?)?,
            "--no-write" => o.write_docs = false,
            "--no-build" => o.build = false,
            other => bail!("unknown argument `{other}`\n\n{HELP}"),
        }
    }
    Ok(Some(o))
}

fn cpu_arg(v: &str) -> Result<String> {
    ensure!(!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()), "a CPU is a number, got `{v}`");
    Ok(v.to_owned())
}

/// What every part of the benchmark needs to know about this run.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) install: bool,
    pub(crate) conf_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) pidfile: PathBuf,
    pub(crate) bench_home: PathBuf,
    pub(crate) release_dir: PathBuf,
    pub(crate) probe: PathBuf,
    pub(crate) loadgen: LoadGen,
    pub(crate) mock_version: String,
    pub(crate) git_rev: String,
    pub(crate) switchyard_build_error: Option<String>,
    pub(crate) apt_failure: Option<String>,
    pub(crate) gw_cpu: String,
    pub(crate) load_cpu: String,
    pub(crate) tck: f64,
    pub(crate) session: u32,
}

/// What a client-side validation found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Validation {
    pub(crate) json_ok: bool,
    pub(crate) json_problem: Option<String>,
    pub(crate) usage_total: Option<u64>,
    pub(crate) stream_ok: bool,
    pub(crate) stream_problem: Option<String>,
    pub(crate) events: usize,
    pub(crate) content_events: usize,
    pub(crate) usage_chunk: bool,
    /// Requests the mock received for the two validation requests.
    pub(crate) upstream_requests: Option<u64>,
}

/// How a target's run ended.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    Measured,
    NotMeasured(String),
    Failed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct JsonCell {
    pub(crate) conc: u32,
    pub(crate) load: JsonLoad,
    pub(crate) sys: CellSys,
    /// Completions the mock answered during the cell, in the target's upstream dialect.
    pub(crate) upstream: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamCell {
    pub(crate) conc: u32,
    pub(crate) load: StreamLoad,
    pub(crate) sys: CellSys,
    /// Streams the mock completed during the cell.
    pub(crate) upstream: Option<u64>,
}

/// The held-streams cell's shape: `streams` connections each open one stream at once; the
/// mock sends `chunks` chunks `chunk_ms` apart, so a stream lasts longer than the probe's
/// `probe_secs` and every connection holds exactly one stream for the whole cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldSpec {
    pub(crate) streams: u32,
    pub(crate) chunk_ms: u64,
    pub(crate) chunks: u64,
    pub(crate) probe_secs: u64,
}

// === impl HeldSpec ===

impl HeldSpec {
    /// The DESIGN.md budget: 2,000 open streams, 20 s each (~21 s per target).
    pub(crate) const FULL: HeldSpec = HeldSpec { streams: 2000, chunk_ms: 500, chunks: 40, probe_secs: 10 };
    /// `--smoke`: enough to exercise the cell, short enough to keep smoke fast.
    pub(crate) const SMOKE: HeldSpec = HeldSpec { streams: 50, chunk_ms: 50, chunks: 40, probe_secs: 1 };

    pub(crate) fn stream_secs(self) -> f64 {
        (self.chunk_ms * self.chunks) as f64 / 1000.0
    }

    /// Arguments of the held-streams mock.
    fn mock_args(self) -> Vec<String> {
        let (ms, n) = (self.chunk_ms.to_string(), self.chunks.to_string());
        ["--delay-ms", "0", "--ttft-ms", "0", "--chunk-ms", &ms, "--chunks", &n, "--threads", "1"]
            .map(str::to_owned)
            .to_vec()
    }

    /// File descriptors a proxy needs to hold the streams (one client and one upstream socket
    /// each) with room for its own files; the probe and the mock need half of it.
    pub(crate) fn fds_needed(self) -> u64 {
        2 * u64::from(self.streams) + 256
    }
}

/// What the held-streams cell measured for one target. `problem` says what went wrong (the
/// target did not start, the probe failed, the gateway died): a peer that cannot hold the
/// streams is reported, not a failure of the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldCell {
    pub(crate) streams: u32,
    /// Memory of the freshly started gateway before the streams.
    pub(crate) idle: Option<GroupMem>,
    pub(crate) load: Option<StreamLoad>,
    /// CPU, core busy, and the peak RSS and open fds of the gateway's group.
    pub(crate) sys: Option<CellSys>,
    /// Streams the held mock completed during the cell.
    pub(crate) upstream: Option<u64>,
    /// The gateway's soft `RLIMIT_NOFILE`.
    pub(crate) nofile: Option<u64>,
    pub(crate) problem: Option<String>,
}

/// Everything measured for one target.
#[derive(Debug, Clone)]
pub(crate) struct TargetResult {
    pub(crate) name: &'static str,
    pub(crate) desc: String,
    pub(crate) version: String,
    pub(crate) status: Status,
    pub(crate) startup_s: Option<f64>,
    pub(crate) background_before: Option<f64>,
    pub(crate) validation: Option<Validation>,
    pub(crate) idle: Option<GroupMem>,
    pub(crate) json: Vec<JsonCell>,
    /// The sparse cell: non-streaming, concurrency 1, one request every
    /// [`load::SPARSE_INTERVAL_MS`] (the pause not measured).
    pub(crate) sparse: Option<JsonCell>,
    pub(crate) stream: Vec<StreamCell>,
    pub(crate) stream_skipped: Option<String>,
    pub(crate) held: Option<HeldCell>,
    /// Completions the mocks answered for this target over its whole run (validation,
    /// warm-up, every cell, the held streams).
    pub(crate) served: Option<u64>,
    /// Bytes the target's processes wrote to their logs over its whole run (before
    /// [`trim_log`] cut them).
    pub(crate) log_bytes: Option<u64>,
    /// What the OTLP sink received while the target ran (`switchyard-traced` only).
    pub(crate) otlp: Option<OtlpReceived>,
}

/// What the OTLP sink received during one target's run, and what it cost on the load core.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct OtlpReceived {
    pub(crate) exports: u64,
    pub(crate) bytes: u64,
    pub(crate) sink_cpu_s: f64,
}

impl TargetResult {
    /// A target with its identity and status and nothing measured yet.
    pub(crate) fn new(name: &'static str, desc: String, version: String, status: Status) -> Self {
        Self {
            name,
            desc,
            version,
            status,
            startup_s: None,
            background_before: None,
            validation: None,
            idle: None,
            json: Vec::new(),
            sparse: None,
            stream: Vec::new(),
            stream_skipped: None,
            held: None,
            served: None,
            log_bytes: None,
            otlp: None,
        }
    }
}

/// The run as a whole.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) date: String,
    pub(crate) smoke: bool,
    pub(crate) cpu_model: String,
    pub(crate) nproc: usize,
    pub(crate) mem_gib: u64,
    pub(crate) kernel: String,
    pub(crate) gw_cpu: String,
    pub(crate) load_cpu: String,
    pub(crate) duration: u64,
    pub(crate) warmup: u64,
    pub(crate) conc: Vec<u32>,
    pub(crate) stream_conc: Vec<u32>,
    /// Pause between requests of the sparse cell, when it runs.
    pub(crate) sparse_interval_ms: Option<u64>,
    /// The held-streams cell, when it runs.
    pub(crate) held: Option<HeldSpec>,
    /// This process's soft `RLIMIT_NOFILE` (the probe, the mocks and the gateways inherit it).
    pub(crate) nofile: Option<u64>,
    pub(crate) loadgen: String,
    pub(crate) mock: String,
    pub(crate) git_rev: String,
    pub(crate) background_at_start: f64,
    pub(crate) run_dir: PathBuf,
}

/// Entry point of `cargo xtask bench`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some(opts) = parse_opts(args)? else { return Ok(()) };
    ensure!(std::path::Path::new("/proc/stat").is_file(), "the benchmark needs Linux (/proc)");
    ensure!(which("taskset").is_some(), "taskset not found (Debian package util-linux)");
    let mut opts = opts;
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    if nproc < 2 {
        eprintln!("bench: WARNING: 1 CPU only: the gateway and the load generator share it");
        opts.gw_cpu = "0".to_owned();
        opts.load_cpu = "0".to_owned();
    }

    let target = target_dir()?;
    let bench_home = std::env::var_os("SWITCHYARD_BENCH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::ci::home_dir().join(".cache/switchyard-bench"));
    let release_dir = target.join("release");
    std::fs::create_dir_all(target.join("bench")).context("creating <target-dir>/bench")?;
    let pidfile = target.join("bench").join("running.pids");
    // Processes left by an interrupted run would hold the ports: stop them first.
    procs::reap_stale(&pidfile, &[release_dir.clone(), bench_home.clone(), target.join("bench")]);
    check_ports(&opts.targets, opts.held)?;
    let held_spec = opts.held.then_some(if opts.smoke { HeldSpec::SMOKE } else { HeldSpec::FULL });
    // Before any child starts, so that all of them inherit it: 2,000 held streams need ~4,000
    // fds in a proxy, more than the usual soft limit of 1,024 (the hard limit is often higher).
    let nofile = match held_spec {
        Some(h) => procs::raise_nofile(h.fds_needed()),
        None => procs::nofile_limits("self").map(|(soft, _)| soft),
    };

    let run_dir = target.join("bench").join(utc_now(true)?);
    let (conf_dir, log_dir) = (run_dir.join("conf"), run_dir.join("logs"));
    for d in [&conf_dir, &log_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    eprintln!("bench: run folder {}", run_dir.display());
    // The orchestrator (and the threads it starts) stays on the load core.
    procs::pin_self(&opts.load_cpu)?;

    // Tools from Debian: only in the full run, and only what is missing.
    let mut apt_failure = None;
    let want_nginx = opts.targets.contains(&"nginx") && targets::nginx_binary().is_none();
    let want_wrk = which("wrk").is_none() && !opts.smoke;
    if opts.install && (want_nginx || want_wrk) {
        let mut pkgs = Vec::new();
        pkgs.extend(want_nginx.then_some("nginx-light"));
        pkgs.extend(want_wrk.then_some("wrk"));
        apt_failure = apt_install(&pkgs, &log_dir).err();
    }

    let (probe, mock_bin, switchyard_build_error) = build_binaries(&opts, &release_dir)?;
    let loadgen = match which("wrk") {
        Some(bin) => {
            let script = conf_dir.join("wrk-post.lua");
            load::write_wrk_script(&script)?;
            let version = targets::version_line(Command::new(&bin).arg("-v"));
            let version = version.split(" Copyright").next().unwrap_or(&version).trim().to_owned();
            LoadGen::Wrk { bin, script, version }
        }
        None => LoadGen::Probe,
    };
    let git_rev = git_rev();
    let env = Env {
        install: opts.install,
        conf_dir,
        log_dir,
        pidfile,
        bench_home,
        release_dir,
        probe,
        loadgen,
        mock_version: format!(
            "{} (git {git_rev})",
            targets::version_line(Command::new(&mock_bin).arg("--version"))
        ),
        git_rev,
        switchyard_build_error,
        apt_failure,
        gw_cpu: opts.gw_cpu.clone(),
        load_cpu: opts.load_cpu.clone(),
        tck: procs::clk_tck(),
        session: procs::own_session(),
    };

    // Install and configure everything first, so that no install runs between measurements.
    let prepared: Vec<Target> = opts.targets.iter().map(|name| targets::prepare(name, &env)).collect();
    // The held-streams cell needs streams that last: a second mock with long streams on its own
    // port, and every target configured a second time to point at it (own config files). The
    // target is restarted for the cell with that config, rather than reusing the instance of the
    // other cells against a restarted mock: its pooled upstream connections would be stale, and
    // a fresh process gives a clean idle figure, so "idle → peak" is the cost of the streams.
    // Not for `direct` (it would measure the mock), nor for targets that cannot run anyway.
    let held_targets: Vec<Option<Target>> = prepared
        .iter()
        .map(|t| {
            (held_spec.is_some() && t.name != "direct" && t.missing.is_none())
                .then(|| targets::prepare_held(t.name, &env))
        })
        .collect();
    // The smoke does not measure the Switchyard variants; it checks that the gateway still
    // accepts their configs, so that they cannot rot unseen until the next full run.
    let config_problems = if opts.smoke && opts.targets.contains(&"switchyard") {
        check_configs(&env, &opts.targets)
    } else {
        Vec::new()
    };
    let background_at_start = background_cores(&env, Duration::from_secs(1));
    let mock_args =
        ["--delay-ms", "0", "--ttft-ms", "0", "--chunk-ms", "5", "--chunks", "20", "--threads", "1"];
    let meta = Meta {
        date: utc_now(false)?,
        smoke: opts.smoke,
        cpu_model: cpu_model(),
        nproc,
        mem_gib: mem_gib(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        gw_cpu: opts.gw_cpu.clone(),
        load_cpu: opts.load_cpu.clone(),
        duration: opts.duration,
        warmup: opts.warmup,
        conc: opts.conc.clone(),
        stream_conc: if opts.stream { opts.stream_conc.clone() } else { Vec::new() },
        sparse_interval_ms: opts.sparse.then_some(load::SPARSE_INTERVAL_MS),
        held: held_spec,
        nofile,
        loadgen: env.loadgen.describe(),
        mock: format!("{}, `{}`", env.mock_version, mock_args.join(" ")),
        git_rev: env.git_rev.clone(),
        background_at_start,
        run_dir: run_dir.clone(),
    };

    let mut argv: Vec<std::ffi::OsString> =
        vec![mock_bin.clone().into(), "--listen".into(), format!("127.0.0.1:{MOCK_PORT}").into()];
    argv.extend(mock_args.iter().map(Into::into));
    let mut mock =
        Proc::spawn("mock", &argv, &env.load_cpu, &[], None, &env.log_dir.join("mock.log"), &env.pidfile)?;
    wait_mock(&mut mock, MOCK_PORT)?;
    let mut held_mock = match held_spec {
        Some(h) => {
            let mut argv: Vec<std::ffi::OsString> = vec![
                mock_bin.clone().into(),
                "--listen".into(),
                format!("127.0.0.1:{HELD_MOCK_PORT}").into(),
            ];
            argv.extend(h.mock_args().into_iter().map(Into::into));
            let log = env.log_dir.join("mock-held.log");
            let mut p = Proc::spawn("mock-held", &argv, &env.load_cpu, &[], None, &log, &env.pidfile)?;
            wait_mock(&mut p, HELD_MOCK_PORT)?;
            Some(p)
        }
        None => None,
    };
    // The trace sink of switchyard-traced: one more mock, on the load core like the others.
    let mut sink = if opts.targets.contains(&SWITCHYARD_TRACED) {
        let argv: Vec<std::ffi::OsString> = vec![
            mock_bin.clone().into(),
            "--listen".into(),
            format!("127.0.0.1:{OTLP_SINK_PORT}").into(),
            "--threads".into(),
            "1".into(),
        ];
        let log = env.log_dir.join("otlp-sink.log");
        let mut p = Proc::spawn("otlp-sink", &argv, &env.load_cpu, &[], None, &log, &env.pidfile)?;
        wait_mock(&mut p, OTLP_SINK_PORT)?;
        Some(p)
    } else {
        None
    };

    let mut results: Vec<TargetResult> = Vec::new();
    for (t, ht) in prepared.iter().zip(&held_targets) {
        let name = &t.name;
        eprintln!("bench: === {name} ({})", if t.version.is_empty() { "?" } else { &t.version });
        let held = ht.as_ref().zip(held_mock.as_ref()).zip(held_spec).map(|((ht, m), h)| (ht, m.pgid, h));
        let sink_before = sink
            .as_ref()
            .filter(|_| *name == SWITCHYARD_TRACED)
            .map(|p| (mock_stats_on(OTLP_SINK_PORT), procs::group_cpu_seconds(p.pgid, env.tck)));
        let served_before = [mock_stats(), mock_stats_on(HELD_MOCK_PORT)];
        let mut r = bench_target(&env, &opts, t, &mut mock, held);
        // Every process of the target has stopped by now: its logs are complete, and its last
        // spans were flushed on the way out.
        let served_after = [mock_stats(), mock_stats_on(HELD_MOCK_PORT)];
        let completions = Dialect::of(name).completions_counter();
        r.served = served_before
            .iter()
            .zip(&served_after)
            .filter_map(|(a, b)| counter_delta(a, b, completions))
            .reduce(|a, b| a + b);
        if !t.argv.is_empty() {
            r.log_bytes = [format!("{name}.log"), format!("{name}-held.log")]
                .iter()
                .filter_map(|f| trim_log(&env.log_dir.join(f)).ok())
                .reduce(|a, b| a + b);
        }
        if let (Some((stats, cpu)), Some(p)) = (sink_before, sink.as_ref()) {
            let after = mock_stats_on(OTLP_SINK_PORT);
            r.otlp = Some(OtlpReceived {
                exports: counter_delta(&stats, &after, "otlp_exports").unwrap_or(0),
                bytes: counter_delta(&stats, &after, "otlp_bytes").unwrap_or(0),
                sink_cpu_s: procs::group_cpu_seconds(p.pgid, env.tck) - cpu,
            });
            let o = r.otlp.unwrap_or_default();
            eprintln!(
                "bench: {name}: the OTLP sink received {} exports, {} bytes, for {:?} completions",
                o.exports, o.bytes, r.served
            );
            if o.exports == 0 && matches!(r.status, Status::Measured) {
                eprintln!(
                    "bench: {name}: WARNING: no span reached the sink: the binary did not export traces, so the \
                     figures of {name} lack the cost of exporting them"
                );
            }
        }
        match &r.status {
            Status::Measured => {}
            Status::NotMeasured(why) => eprintln!("bench: {name}: not measured: {why}"),
            Status::Failed(why) => eprintln!("bench: {name}: FAILED: {why}"),
        }
        results.push(r);
        write_json(&meta, &results)?;
        if name == &"direct" && !matches!(results.last().map(|r| &r.status), Some(Status::Measured)) {
            break;
        }
    }
    mock.stop(Duration::from_secs(5));
    for p in [held_mock.as_mut(), sink.as_mut()].into_iter().flatten() {
        p.stop(Duration::from_secs(5));
    }

    let md = report::markdown(&meta, &results);
    std::fs::write(run_dir.join("results.md"), &md).context("writing results.md")?;
    println!("{md}");
    if opts.write_docs {
        let docs = repo_root().join("docs/benchmarks.md");
        std::fs::write(&docs, &md).with_context(|| format!("writing {}", docs.display()))?;
        eprintln!("bench: wrote {} and {}", docs.display(), run_dir.join("results.json").display());
    } else {
        eprintln!("bench: raw figures in {}", run_dir.join("results.json").display());
    }

    let direct_ok = results.first().is_some_and(|r| matches!(r.status, Status::Measured));
    ensure!(direct_ok, "the baseline (load generator -> mock) failed; see {}", env.log_dir.display());
    if opts.smoke {
        let mut problems = report::smoke_problems(&results);
        problems.extend(config_problems);
        ensure!(problems.is_empty(), "bench smoke failed:\n  {}", problems.join("\n  "));
        eprintln!("bench: smoke passed");
    }
    Ok(())
}

fn write_json(meta: &Meta, results: &[TargetResult]) -> Result<()> {
    let v = report::to_json(meta, results);
    let path = meta.run_dir.join("results.json");
    std::fs::write(&path, format!("{v:#}\n")).with_context(|| format!("writing {}", path.display()))
}

/// `switchyard check` of the configs of the Switchyard variants that this run does not measure;
/// one line per config the gateway rejects.
fn check_configs(env: &Env, measured: &[&'static str]) -> Vec<String> {
    let mut problems = Vec::new();
    for name in unmeasured_variants(measured) {
        let t = targets::prepare(name, env);
        let (Some(config), Some(bin)) = (&t.config, t.argv.first()) else {
            problems
                .push(format!("{name}: config not checked: {}", t.missing.as_deref().unwrap_or("no config")));
            continue;
        };
        match capture(Command::new(bin).arg("check").arg("--config").arg(config), Duration::from_secs(30)) {
            Ok(out) if out.success() => {
                eprintln!("bench: {name}: `switchyard check` accepts {}", config.display())
            }
            Ok(out) => problems.push(format!(
                "{name}: `switchyard check --config {}` rejects the config the bench writes: {}",
                config.display(),
                out.tail(400).trim()
            )),
            Err(e) => problems.push(format!("{name}: `switchyard check` could not run: {e:#}")),
        }
    }
    problems
}

/// The Switchyard variants (every target running the `switchyard` binary but `switchyard`
/// itself) not in `measured`: those whose configs the smoke checks instead.
fn unmeasured_variants(measured: &[&'static str]) -> Vec<&'static str> {
    targets::ALL
        .into_iter()
        .filter(|n| *n != "switchyard" && targets::runs_switchyard(n) && !measured.contains(n))
        .collect()
}

/// A log bigger than this is cut to its first and last [`LOG_KEEP_EDGE`] bytes once its target
/// stopped: request logs at info write a few hundred bytes per request, hundreds of MiB over a
/// full run, and what matters in them for the bench is how it started and how it ended.
const LOG_KEEP_MAX: u64 = 8 << 20;
const LOG_KEEP_EDGE: u64 = 1 << 20;

/// The size of the log at `path` as its process left it (an error when there is none), after
/// cutting its middle out if it is bigger than [`LOG_KEEP_MAX`].
fn trim_log(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= LOG_KEEP_MAX {
        return Ok(len);
    }
    let (mut head, mut tail) = (vec![0; LOG_KEEP_EDGE as usize], vec![0; LOG_KEEP_EDGE as usize]);
    f.read_exact(&mut head)?;
    f.seek(SeekFrom::Start(len - LOG_KEEP_EDGE))?;
    f.read_exact(&mut tail)?;
    let cut = len - 2 * LOG_KEEP_EDGE;
    let note = format!("\n[... {cut} bytes cut by `cargo xtask bench`: the log was {len} bytes ...]\n");
    std::fs::write(path, [&head[..], note.as_bytes(), &tail[..]].concat())?;
    Ok(len)
}

/// Fails with a clear message when a port the benchmark needs is taken.
fn check_ports(names: &[&'static str], held: bool) -> Result<()> {
    let mut ports = vec![MOCK_PORT];
    ports.extend(held.then_some(HELD_MOCK_PORT));
    ports.extend(names.contains(&SWITCHYARD_TRACED).then_some(OTLP_SINK_PORT));
    for n in names {
        if let Some(p) = targets::port_of(n) {
            ports.push(p);
        }
    }
    for p in ports {
        port_free(p)?;
    }
    Ok(())
}

fn port_free(port: u16) -> Result<()> {
    TcpListener::bind(("127.0.0.1", port)).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "port 127.0.0.1:{port} is not free ({e}); the benchmark uses fixed ports 18000 (mock), \
             18001 (mock of the held-streams cell), 18002 (OTLP sink of switchyard-traced), 18101 (nginx), \
             18102 (litellm), 18104 (portkey), 18110-18113 (switchyard, -bare, -traced, -anthropic): \
             stop whatever listens there (`ss -ltnp 'sport = :{port}'`) and retry"
        )
    })
}

fn apt_install(pkgs: &[&str], log_dir: &std::path::Path) -> std::result::Result<(), String> {
    if which("apt-get").is_none() {
        return Err(format!("{} not installed and apt-get not available", pkgs.join(", ")));
    }
    eprintln!("bench: apt-get install {}", pkgs.join(" "));
    let script = format!(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {}",
        pkgs.join(" ")
    );
    match capture(Command::new("bash").args(["-c", &script]), Duration::from_secs(900)) {
        Ok(out) => {
            let _ =
                std::fs::write(log_dir.join("install-apt.log"), format!("{}\n{}", out.stdout, out.stderr));
            if out.success() {
                Ok(())
            } else {
                Err(format!(
                    "apt-get install {} failed: {}",
                    pkgs.join(" "),
                    out.tail(200).replace('\n', " ")
                ))
            }
        }
        Err(e) => Err(format!("apt-get install {} failed: {e:#}", pkgs.join(" "))),
    }
}

/// Builds the mock and the probe (required) and, if it is a target, Switchyard (optional: a
/// build failure makes it "not measured", except in the smoke run, where it is an error).
fn build_binaries(opts: &Opts, release_dir: &std::path::Path) -> Result<(PathBuf, PathBuf, Option<String>)> {
    if opts.build {
        eprintln!("bench: cargo build --release -p switchyard-testkit -p switchyard-loadgen");
        let ok = run_inherit(
            Command::new(cargo())
                .args(["build", "--release", "-p", "switchyard-testkit", "-p", "switchyard-loadgen"])
                .current_dir(repo_root()),
        )?;
        ensure!(ok, "building the mock (switchyard-testkit) and the probe (switchyard-loadgen) failed");
    }
    let (probe, mock) = (release_dir.join("switchyard-sse-probe"), release_dir.join("switchyard-mock"));
    for b in [&probe, &mock] {
        ensure!(b.is_file(), "{} is missing (build it with cargo build --release)", b.display());
    }
    let mut sy_error = None;
    if opts.build && opts.targets.iter().any(|t| targets::runs_switchyard(t)) {
        eprintln!("bench: cargo build --release -p switchyard");
        let ok = run_inherit(
            Command::new(cargo()).args(["build", "--release", "-p", "switchyard"]).current_dir(repo_root()),
        )?;
        if !ok {
            ensure!(!opts.smoke, "building switchyard (release) failed");
            sy_error = Some("binary not built (`cargo build --release -p switchyard` failed)".to_owned());
        }
    }
    Ok((probe, mock, sy_error))
}

fn wait_mock(mock: &mut Proc, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(st) = mock.exited() {
            bail!("the mock exited at start ({st}); see logs/{}.log in the run folder", mock.name);
        }
        match http::request("GET", port, "/__stats", &[], None, Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status),
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the mock did not answer GET /__stats within 15 s (last: {last})")
}

fn mock_stats() -> Option<Value> {
    mock_stats_on(MOCK_PORT)
}

fn mock_stats_on(port: u16) -> Option<Value> {
    let r = http::request("GET", port, "/__stats", &[], None, Duration::from_secs(5)).ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok()).flatten()
}

fn counter_delta(a: &Option<Value>, b: &Option<Value>, key: &str) -> Option<u64> {
    let get = |v: &Option<Value>| v.as_ref()?.get(key)?.as_u64();
    Some(get(b)?.saturating_sub(get(a)?))
}

/// Cores' worth of CPU used by processes outside the benchmark over `window`.
fn background_cores(env: &Env, window: Duration) -> f64 {
    let a = procs::cpu_snapshot();
    std::thread::sleep(window);
    procs::foreign_cpu_seconds(&a, &procs::cpu_snapshot(), env.session, env.tck) / window.as_secs_f64()
}

fn wait_quiet(env: &Env, max_wait: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(max_wait);
    let mut bg = background_cores(env, Duration::from_secs(1));
    while bg > 0.10 && Instant::now() < deadline {
        eprintln!(
            "bench: machine busy: other processes use {bg:.2} cores; waiting for quiet (up to {} s more)",
            deadline.saturating_duration_since(Instant::now()).as_secs()
        );
        std::thread::sleep(Duration::from_secs(2));
        bg = background_cores(env, Duration::from_secs(1));
    }
    bg
}

fn bench_target(
    env: &Env,
    opts: &Opts,
    t: &Target,
    mock: &mut Proc,
    held: Option<(&Target, u32, HeldSpec)>,
) -> TargetResult {
    let mut r = TargetResult::new(t.name, t.desc.clone(), t.version.clone(), Status::Measured);
    if let Some(why) = &t.missing {
        r.status = Status::NotMeasured(why.clone());
        return r;
    }
    if opts.quiet_wait > 0 {
        r.background_before = Some(wait_quiet(env, opts.quiet_wait));
    }
    if let Err(e) = measure_target(env, opts, t, mock, &mut r) {
        r.status = Status::Failed(format!("{e:#}"));
    }
    // After the other cells (the instance that ran them is stopped by now).
    if let (Status::Measured, Some((ht, held_mock_pgid, spec))) = (&r.status, held) {
        let mut cell = HeldCell { streams: spec.streams, ..HeldCell::default() };
        if let Err(e) = measure_held(env, spec, ht, held_mock_pgid, &mut cell) {
            eprintln!("bench: {}: held streams: {e:#}", t.name);
            cell.problem = Some(format!("{e:#}"));
        }
        r.held = Some(cell);
    }
    r
}

/// The held-streams cell: starts the target afresh against the held-streams mock, records its
/// idle memory, opens `spec.streams` streams at once and samples the group's RSS and open fds
/// every 250 ms until they end, then stops it.
fn measure_held(
    env: &Env,
    spec: HeldSpec,
    t: &Target,
    held_mock_pgid: u32,
    cell: &mut HeldCell,
) -> Result<()> {
    port_free(t.port)?;
    let name = format!("{}-held", t.name);
    let log = env.log_dir.join(format!("{name}.log"));
    eprintln!(
        "bench: {}: held streams: starting on CPU {} against the mock on :{HELD_MOCK_PORT}",
        t.name, env.gw_cpu
    );
    let mut p = Proc::spawn(&name, &t.argv, &env.gw_cpu, &t.env, t.cwd.as_deref(), &log, &env.pidfile)?;
    wait_ready(t, &mut p).with_context(|| format!("{name} did not become ready (log: {})", log.display()))?;
    cell.nofile = procs::nofile_limits(&p.pgid.to_string()).map(|(soft, _)| soft);
    std::thread::sleep(Duration::from_secs(1));
    cell.idle = Some(procs::group_memory(p.pgid));
    let before = mock_stats_on(HELD_MOCK_PORT);
    // A stream that takes 30 s longer than the mock sends it counts as failed (timeout).
    let timeout = spec.stream_secs().ceil() as u64 + 30;
    let (load, sys) = load::measured(env, Some(p.pgid), held_mock_pgid, || {
        load::run_held(env, t.port, &t.headers, spec.streams, spec.probe_secs, timeout)
    })
    .with_context(|| format!("{} streams held at once", spec.streams))?;
    cell.upstream = counter_delta(&before, &mock_stats_on(HELD_MOCK_PORT), "streams_completed");
    let peak = sys.peak.unwrap_or_default();
    eprintln!(
        "bench: {}: held {} streams: {} ok, errors {}+{}+{}, RSS {} -> {} KiB, fds peak {:?}, upstream {:?}",
        t.name,
        spec.streams,
        load.ok,
        load.errors,
        load.bad_status,
        load.no_done,
        cell.idle.map_or(0, |m| m.rss_kb),
        peak.rss_kb,
        peak.fds,
        cell.upstream
    );
    cell.load = Some(load);
    cell.sys = Some(sys);
    if let Some(st) = p.exited() {
        cell.problem = Some(format!("it exited during the held streams ({st})"));
    }
    p.stop(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

fn measure_target(env: &Env, opts: &Opts, t: &Target, mock: &mut Proc, r: &mut TargetResult) -> Result<()> {
    // The mock counts completions per dialect: what the cells compare with the client's count.
    let completions = Dialect::of(t.name).completions_counter();
    let mut gw = None;
    if !t.argv.is_empty() {
        port_free(t.port)?;
        let log = env.log_dir.join(format!("{}.log", t.name));
        eprintln!("bench: {}: starting on CPU {}: {:?}", t.name, env.gw_cpu, t.argv);
        let started = Instant::now();
        let mut p = Proc::spawn(t.name, &t.argv, &env.gw_cpu, &t.env, t.cwd.as_deref(), &log, &env.pidfile)?;
        wait_ready(t, &mut p)
            .with_context(|| format!("{} did not become ready (log: {})", t.name, log.display()))?;
        r.startup_s = Some(load::round(started.elapsed().as_secs_f64(), 2));
        gw = Some(p);
    }
    let gw_pgid = gw.as_ref().map(|p| p.pgid);

    let v = validate(t)?;
    eprintln!(
        "bench: {}: validation: json {} (usage.total_tokens {:?}), stream {} ({} events, {} with content, usage chunk {}), \
         mock saw {:?} requests",
        t.name,
        ok_word(v.json_ok),
        v.usage_total,
        ok_word(v.stream_ok),
        v.events,
        v.content_events,
        v.usage_chunk,
        v.upstream_requests
    );
    r.validation = Some(v.clone());
    if !v.json_ok {
        bail!("validation failed: {}", v.json_problem.unwrap_or_default());
    }
    if gw_pgid.is_some() && v.upstream_requests.unwrap_or(0) < 2 {
        bail!(
            "validation failed: the mock saw {:?} requests for 2 client requests: the gateway answered \
             without calling it (check its upstream URL)",
            v.upstream_requests
        );
    }
    if let Some(g) = gw_pgid {
        std::thread::sleep(Duration::from_secs(1));
        r.idle = Some(procs::group_memory(g));
    }

    // Warm-up (JITs, connection pools, lazy imports): not recorded.
    if opts.warmup > 0 {
        let c = if opts.smoke { 8 } else { 16 };
        load::run_json(env, t.port, &t.headers, c, opts.warmup).context("warm-up")?;
    }
    for &c in &opts.conc {
        let before = mock_stats();
        let (load, sys) = load::measured(env, gw_pgid, mock.pgid, || {
            load::run_json(env, t.port, &t.headers, c, opts.duration)
        })
        .with_context(|| format!("non-streaming load at c={c}"))?;
        let upstream = counter_delta(&before, &mock_stats(), completions);
        eprintln!(
            "bench: {}: json c={c}: {:.0} req/s, p50 {} us, p99 {} us, non-2xx {}, socket errors {}, upstream {:?}, bg {:.2} cores",
            t.name,
            load.rps,
            load.latency.p50,
            load.latency.p99,
            load.non2xx,
            load.socket_errors,
            upstream,
            sys.foreign_cores
        );
        r.json.push(JsonCell { conc: c, load, sys, upstream });
        alive(&mut gw)?;
    }
    let probe_warmup = if opts.smoke { 0.5 } else { 1.0 };
    if opts.sparse {
        let before = mock_stats();
        let (load, sys) = load::measured(env, gw_pgid, mock.pgid, || {
            load::run_sparse(env, t.port, &t.headers, opts.duration, probe_warmup)
        })
        .with_context(|| format!("sparse load (one request every {} ms)", load::SPARSE_INTERVAL_MS))?;
        let upstream = counter_delta(&before, &mock_stats(), completions);
        eprintln!(
            "bench: {}: json sparse c=1 every {} ms: {} requests, p50 {} us, p99 {} us, non-2xx {}, \
             socket errors {}, upstream {:?}, bg {:.2} cores",
            t.name,
            load::SPARSE_INTERVAL_MS,
            load.requests,
            load.latency.p50,
            load.latency.p99,
            load.non2xx,
            load.socket_errors,
            upstream,
            sys.foreign_cores
        );
        r.sparse = Some(JsonCell { conc: 1, load, sys, upstream });
        alive(&mut gw)?;
    }
    if !opts.stream {
        return Ok(());
    }
    if !v.stream_ok {
        r.stream_skipped =
            Some(format!("streaming validation failed: {}", v.stream_problem.unwrap_or_default()));
        return Ok(());
    }
    for &c in &opts.stream_conc {
        let before = mock_stats();
        let (load, sys) = load::measured(env, gw_pgid, mock.pgid, || {
            load::run_stream(env, t.port, &t.headers, c, opts.duration, probe_warmup)
        })
        .with_context(|| format!("streaming load at c={c}"))?;
        let upstream = counter_delta(&before, &mock_stats(), "streams_completed");
        eprintln!(
            "bench: {}: sse c={c}: {:.1} streams/s, ttfb p50 {} us, p99 {} us, total p50 {} us, errors {}+{}+{}",
            t.name,
            load.per_s,
            load.ttfb.p50,
            load.ttfb.p99,
            load.total.p50,
            load.errors,
            load.bad_status,
            load.no_done
        );
        r.stream.push(StreamCell { conc: c, load, sys, upstream });
        alive(&mut gw)?;
    }
    if let Some(mut p) = gw {
        p.stop(Duration::from_secs(10));
        // Let sockets in TIME_WAIT and the kernel settle before the next target.
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

fn alive(gw: &mut Option<Proc>) -> Result<()> {
    if let Some(p) = gw
        && let Some(st) = p.exited()
    {
        bail!("{} exited during the load ({st})", p.name);
    }
    Ok(())
}

fn ok_word(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

/// Polls with a real chat request until the first 200: "ready" means ready to serve.
fn wait_ready(t: &Target, p: &mut Proc) -> Result<()> {
    let deadline = Instant::now() + t.ready_timeout;
    let mut last = String::from("no answer yet");
    let mut refusals = 0;
    while Instant::now() < deadline {
        if let Some(st) = p.exited() {
            bail!("it exited at start ({st})");
        }
        match http::request(
            "POST",
            t.port,
            "/v1/chat/completions",
            &t.headers,
            Some(load::CHAT_BODY),
            Duration::from_secs(5),
        ) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => {
                last = format!("HTTP {}: {}", r.status, r.snippet());
                refusals += 1;
                // It is up but keeps failing: misconfigured, do not insist.
                if refusals >= 25 {
                    bail!("it answers, but not 200 ({last})");
                }
            }
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no 200 within {} s (last: {last})", t.ready_timeout.as_secs())
}

/// One non-streaming and one streaming request, checked as a client would check them, and the
/// mock's counters checked to see that both really reached it.
fn validate(t: &Target) -> Result<Validation> {
    let mut v = Validation::default();
    let before = mock_stats();
    let timeout = Duration::from_secs(30);
    let r =
        http::request("POST", t.port, "/v1/chat/completions", &t.headers, Some(load::CHAT_BODY), timeout)?;
    match check_json(r.status, &r.body) {
        Ok(total) => {
            v.json_ok = true;
            v.usage_total = Some(total);
        }
        Err(e) => v.json_problem = Some(format!("HTTP {}: {e}: {}", r.status, r.snippet())),
    }
    let mut headers = t.headers.clone();
    headers.push(("Accept".to_owned(), "text/event-stream".to_owned()));
    let r =
        http::request("POST", t.port, "/v1/chat/completions", &headers, Some(load::STREAM_BODY), timeout)?;
    let events = http::sse_data(&r.text());
    v.events = events.len();
    v.content_events = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|e| {
            e.pointer("/choices/0/delta/content").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
        })
        .count();
    v.usage_chunk = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .any(|e| e.pointer("/usage/total_tokens").and_then(Value::as_u64).is_some_and(|n| n > 0));
    let done = events.last().is_some_and(|e| e.trim() == "[DONE]");
    v.stream_ok = r.status == 200 && done && v.usage_chunk && v.content_events > 0;
    if !v.stream_ok {
        let why = if r.status != 200 {
            "not 200"
        } else if !done {
            "the stream does not end with data: [DONE]"
        } else if !v.usage_chunk {
            "no usage chunk although stream_options.include_usage was set"
        } else {
            "no content chunks"
        };
        v.stream_problem = Some(format!("HTTP {}: {why}: {}", r.status, r.snippet()));
    }
    v.upstream_requests = counter_delta(&before, &mock_stats(), "requests");
    Ok(v)
}

/// Checks a non-streaming answer; returns its `usage.total_tokens`.
fn check_json(status: u16, body: &[u8]) -> std::result::Result<u64, String> {
    if status != 200 {
        return Err("not 200".to_owned());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let content = v.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or("");
    if content.is_empty() {
        return Err("no choices[0].message.content".to_owned());
    }
    let n = |k: &str| v.get("usage").and_then(|u| u.get(k)).and_then(Value::as_u64);
    match (n("prompt_tokens"), n("completion_tokens"), n("total_tokens")) {
        (Some(p), Some(c), Some(t)) if t == p + c && t > 0 => Ok(t),
        other => Err(format!("inconsistent usage (prompt, completion, total) = {other:?}")),
    }
}

fn git_rev() -> String {
    let out = |args: &[&str]| {
        capture(Command::new("git").args(args).current_dir(repo_root()), Duration::from_secs(10))
            .ok()
            .filter(|c| c.success())
            .map(|c| c.stdout.trim().to_owned())
    };
    let rev = out(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{rev}+dirty") } else { rev }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name"))?.split_once(':').map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn mem_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next()?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| (kb as f64 / 1024.0 / 1024.0).round() as u64)
}

/// The current UTC time, `2026-11-22 01:02 UTC` or (compact) `20261122T010203Z`.
fn utc_now(compact: bool) -> Result<String> {
    let fmt = if compact { "+%Y%m%dT%H%M%SZ" } else { "+%Y-%m-%d %H:%M UTC" };
    let out = capture(Command::new("date").args(["-u", fmt]), Duration::from_secs(5))?;
    ensure!(out.success(), "`date -u` failed");
    Ok(out.stdout.trim().to_owned())
}

fn json_cell_json(c: &JsonCell) -> Value {
    json!({
        "concurrency": c.conc, "requests": c.load.requests, "rps": load::round(c.load.rps, 1),
        "latency_us": c.load.latency.to_json(), "non2xx": c.load.non2xx,
        "socket_errors": c.load.socket_errors, "upstream_completions": c.upstream, "sys": c.sys.to_json(),
    })
}

/// JSON of a result, for `results.json`.
pub(crate) fn result_json(r: &TargetResult) -> Value {
    let (status, reason) = match &r.status {
        Status::Measured => ("measured", None),
        Status::NotMeasured(w) => ("not measured", Some(w.clone())),
        Status::Failed(w) => ("failed", Some(w.clone())),
    };
    json!({
        "target": r.name,
        "desc": r.desc,
        "version": r.version,
        "status": status,
        "reason": reason,
        "startup_s": r.startup_s,
        "background_before": r.background_before,
        "validation": r.validation.as_ref().map(|v| json!({
            "json_ok": v.json_ok, "json_problem": v.json_problem, "usage_total_tokens": v.usage_total,
            "stream_ok": v.stream_ok, "stream_problem": v.stream_problem, "events": v.events,
            "content_events": v.content_events, "usage_chunk": v.usage_chunk,
            "upstream_requests_for_2": v.upstream_requests,
        })),
        "idle_rss_kb": r.idle.map(|m| m.rss_kb),
        "idle_pss_kb": r.idle.map(|m| m.pss_kb),
        "processes": r.idle.map(|m| m.processes),
        "json": r.json.iter().map(json_cell_json).collect::<Vec<_>>(),
        "sparse": r.sparse.as_ref().map(|c| {
            let mut v = json_cell_json(c);
            v["interval_ms"] = json!(load::SPARSE_INTERVAL_MS);
            v
        }),
        "stream": r.stream.iter().map(|c| json!({
            "concurrency": c.conc, "ok": c.load.ok, "streams_per_s": load::round(c.load.per_s, 2),
            "events_per_stream": c.load.events_per_stream, "usage_streams": c.load.usage_streams,
            "errors": c.load.errors, "bad_status": c.load.bad_status, "no_done": c.load.no_done,
            "headers_us": c.load.headers.to_json(), "ttfb_us": c.load.ttfb.to_json(),
            "total_us": c.load.total.to_json(), "upstream_streams_completed": c.upstream, "sys": c.sys.to_json(),
        })).collect::<Vec<_>>(),
        "stream_skipped": r.stream_skipped,
        "held": r.held.as_ref().map(|h| json!({
            "streams": h.streams,
            "idle_rss_kb": h.idle.map(|m| m.rss_kb),
            "idle_fds": h.idle.and_then(|m| m.fds),
            "ok": h.load.as_ref().map(|l| l.ok),
            "errors": h.load.as_ref().map(|l| l.errors),
            "bad_status": h.load.as_ref().map(|l| l.bad_status),
            "no_done": h.load.as_ref().map(|l| l.no_done),
            "ttfb_us": h.load.as_ref().map(|l| l.ttfb.to_json()),
            "total_us": h.load.as_ref().map(|l| l.total.to_json()),
            "upstream_streams_completed": h.upstream,
            "gateway_nofile": h.nofile,
            "sys": h.sys.as_ref().map(CellSys::to_json),
            "problem": h.problem,
        })),
        "served_completions": r.served,
        "log_bytes": r.log_bytes,
        "otlp": r.otlp.map(|o| json!({
            "exports": o.exports, "bytes": o.bytes, "sink_cpu_s": load::round(o.sink_cpu_s, 3),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn smoke_defaults_and_overrides() {
        let o = parse_opts(&args("--smoke")).expect("valid").expect("not help");
        assert!(o.smoke && !o.install && !o.write_docs);
        assert_eq!((o.targets, o.duration, o.conc), (vec!["direct", "switchyard"], 1, vec![1, 8]));
        let o = parse_opts(&args("--targets nginx,direct --duration 3")).expect("valid").expect("not help");
        assert_eq!((o.targets, o.duration), (vec!["direct", "nginx"], 3));
    }

    #[test]
    fn held_cell_runs_by_default_and_in_smoke_and_can_be_left_out() {
        let full = parse_opts(&args("")).expect("valid").expect("not help");
        let smoke = parse_opts(&args("--smoke")).expect("valid").expect("not help");
        assert!(full.held && smoke.held);
        assert!(!parse_opts(&args("--smoke --no-held")).expect("valid").expect("not help").held);
        assert_eq!(HeldSpec::FULL.streams, 2000);
        assert!((HeldSpec::FULL.stream_secs() - 20.0).abs() < 1e-9);
        assert_eq!(HeldSpec::FULL.fds_needed(), 4256);
        // A stream outlasts the probe's run, so every connection holds exactly one.
        for h in [HeldSpec::FULL, HeldSpec::SMOKE] {
            assert!(h.stream_secs() > h.probe_secs as f64, "{h:?}");
        }
        let a = HeldSpec::FULL.mock_args();
        assert_eq!(a[4..8], ["--chunk-ms", "500", "--chunks", "40"]);
    }

    #[test]
    fn sparse_cell_runs_by_default_and_in_smoke() {
        let full = parse_opts(&args("")).expect("valid").expect("not help");
        let smoke = parse_opts(&args("--smoke")).expect("valid").expect("not help");
        assert!(full.sparse && smoke.sparse);
        let o = parse_opts(&args("--no-sparse --no-stream")).expect("valid").expect("not help");
        assert!(!o.sparse && !o.stream);
    }

    #[test]
    fn telemetry_variants_run_by_default_and_in_smoke_only_when_named() {
        use self::targets::SWITCHYARD_BARE;
        let full = parse_opts(&args("")).expect("valid").expect("not help");
        assert!(full.targets.contains(&SWITCHYARD_BARE) && full.targets.contains(&SWITCHYARD_TRACED));
        let o = parse_opts(&args("--targets switchyard-traced,switchyard,switchyard-bare")).expect("valid");
        assert_eq!(
            o.expect("not help").targets,
            ["direct", "switchyard", "switchyard-bare", "switchyard-traced"],
            "report order, next to each other"
        );
        let smoke = parse_opts(&args("--smoke")).expect("valid").expect("not help");
        assert!(!smoke.targets.iter().any(|t| t.starts_with("switchyard-")));
        let o = parse_opts(&args("--smoke --targets switchyard,switchyard-bare")).expect("valid");
        assert_eq!(o.expect("not help").targets, ["direct", "switchyard", "switchyard-bare"]);
    }

    #[test]
    fn cross_dialect_variant_runs_by_default_next_to_switchyard_and_its_config_is_checked_in_smoke() {
        use self::targets::{SWITCHYARD_ANTHROPIC, SWITCHYARD_BARE};
        let full = parse_opts(&args("")).expect("valid").expect("not help");
        assert!(full.targets.contains(&SWITCHYARD_ANTHROPIC));
        let o =
            parse_opts(&args("--targets switchyard-traced,switchyard-anthropic,switchyard")).expect("valid");
        assert_eq!(
            o.expect("not help").targets,
            ["direct", "switchyard", "switchyard-anthropic", "switchyard-traced"],
            "report order: the cross-dialect run right after the one it is compared with"
        );
        assert_eq!(
            unmeasured_variants(&["direct", "switchyard"]),
            [SWITCHYARD_ANTHROPIC, SWITCHYARD_BARE, SWITCHYARD_TRACED],
            "the smoke checks the config of every variant it does not measure"
        );
        assert_eq!(
            unmeasured_variants(&["direct", "switchyard", SWITCHYARD_ANTHROPIC, SWITCHYARD_BARE]),
            [SWITCHYARD_TRACED]
        );
    }

    #[test]
    fn big_logs_keep_their_head_and_tail() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let small = dir.join("small.log");
        std::fs::write(&small, "started\n").expect("write");
        assert_eq!(trim_log(&small).expect("trim"), 8);
        assert_eq!(std::fs::read_to_string(&small).expect("read"), "started\n", "small logs stay whole");

        let big = dir.join("big.log");
        let len = LOG_KEEP_MAX + 1000;
        let mut text = vec![b'm'; len as usize];
        text[..5].copy_from_slice(b"start");
        text[len as usize - 3..].copy_from_slice(b"end");
        std::fs::write(&big, &text).expect("write");
        assert_eq!(trim_log(&big).expect("trim"), len, "the size as the process left it");
        let kept = std::fs::read(&big).expect("read");
        assert!(kept.starts_with(b"start") && kept.ends_with(b"end"));
        let cut = format!(
            "[... {} bytes cut by `cargo xtask bench`: the log was {len} bytes ...]",
            len - 2 * LOG_KEEP_EDGE
        );
        assert!(String::from_utf8_lossy(&kept).contains(&cut));
        assert!((kept.len() as u64) < 2 * LOG_KEEP_EDGE + 200);
        assert!(trim_log(&dir.join("missing.log")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse_opts(&args("--targets nope")).is_err());
        assert!(parse_opts(&args("--duration 0")).is_err());
        assert!(parse_opts(&args("--conc 1,x")).is_err());
        assert!(parse_opts(&args("--frobnicate")).is_err());
    }

    #[test]
    fn checks_non_streaming_answers_like_a_client() {
        let good = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        assert_eq!(check_json(200, good), Ok(5));
        let bad_usage = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":6}}"#;
        assert!(check_json(200, bad_usage).is_err());
        assert!(check_json(200, br#"{"choices":[]}"#).is_err());
        assert!(check_json(500, good).is_err());
    }
}
