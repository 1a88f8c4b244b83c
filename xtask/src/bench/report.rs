//! The benchmark's outputs: `results.json` (every number) and the markdown report that goes to
//! `docs/benchmarks.md` (or to the terminal for `--smoke`), including the comparison with the
//! performance budget in the design brief, the cost of observability (the same binary with its
//! telemetry off, as shipped, and all on, the difference held to the same budget), the cost of
//! cross-dialect translation (the same binary with its model served in Anthropic's dialect, its
//! streaming time to first byte held to the budget) and the honesty checks of every cell.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::load::CellSys;

use super::targets::{self, Dialect, SWITCHYARD_ANTHROPIC, SWITCHYARD_BARE, SWITCHYARD_TRACED};
use super::{HeldCell, HeldSpec, JsonCell, Meta, Status, StreamCell, TargetResult, result_json};

/// The performance budget of the design brief, over nginx (the floor of one proxy hop).
const ADDED_P50_C1_US: i64 = 50;
const ADDED_P99_C1_US: i64 = 150;
const THROUGHPUT_C64_VS_NGINX: f64 = 0.5;
const TTFB_VS_NGINX_US: i64 = 100;
const IDLE_RSS_MIB: f64 = 30.0;
const C64_RSS_MIB: f64 = 60.0;
const HELD_RSS_MIB: f64 = 200.0;
/// Below this much CPU time in a cell, the 10 ms ticks of `/proc/<pid>/stat` make a per-request
/// figure too coarse (> 4% error) to print.
const MIN_CPU_S: f64 = 0.25;
/// Cells where other processes used more than this many cores are flagged.
const BACKGROUND_FLAG_CORES: f64 = 0.05;

pub(crate) fn to_json(meta: &Meta, results: &[TargetResult]) -> Value {
    json!({
        "meta": {
            "date": meta.date, "smoke": meta.smoke, "cpu_model": meta.cpu_model, "nproc": meta.nproc,
            "mem_gib": meta.mem_gib, "kernel": meta.kernel, "gw_cpu": meta.gw_cpu, "load_cpu": meta.load_cpu,
            "duration_s": meta.duration, "warmup_s": meta.warmup, "conc": meta.conc,
            "stream_conc": meta.stream_conc, "sparse_interval_ms": meta.sparse_interval_ms,
            "held": meta.held.map(|h| json!({
                "streams": h.streams, "chunk_ms": h.chunk_ms, "chunks": h.chunks, "probe_s": h.probe_secs,
            })),
            "nofile_soft": meta.nofile, "loadgen": meta.loadgen, "mock": meta.mock,
            "git_rev": meta.git_rev, "background_at_start_cores": meta.background_at_start,
        },
        "results": results.iter().map(result_json).collect::<Vec<_>>(),
    })
}

fn find<'a>(results: &'a [TargetResult], name: &str) -> Option<&'a TargetResult> {
    results.iter().find(|r| r.name == name && matches!(r.status, Status::Measured))
}

fn json_cell(r: Option<&TargetResult>, c: u32) -> Option<&JsonCell> {
    r?.json.iter().find(|x| x.conc == c)
}

fn stream_cell(r: Option<&TargetResult>, c: u32) -> Option<&StreamCell> {
    r?.stream.iter().find(|x| x.conc == c)
}

/// `12,345`
fn int(x: f64) -> String {
    let neg = x < 0.0;
    let digits = format!("{:.0}", x.abs().round());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if neg { format!("-{out}") } else { out }
}

fn signed(x: i64) -> String {
    if x >= 0 { format!("+{}", int(x as f64)) } else { int(x as f64) }
}

fn mib(kb: u64) -> String {
    let m = kb as f64 / 1024.0;
    if m < 10.0 { format!("{m:.1}") } else { int(m) }
}

/// A ratio that stays readable from 0.001× to 1000×.
fn ratio(x: f64) -> String {
    if !x.is_finite() {
        "–".to_owned()
    } else if x >= 10.0 {
        format!("{}×", int(x))
    } else if x >= 0.1 {
        format!("{x:.2}×")
    } else if x > 0.0 {
        // Two significant digits: 0.023×, 0.0012×.
        let decimals = (-x.log10()).ceil() as usize + 1;
        format!("{x:.decimals$}×")
    } else {
        "0×".to_owned()
    }
}

fn status_text(r: &TargetResult) -> Option<String> {
    match &r.status {
        Status::Measured => None,
        Status::NotMeasured(w) => Some(format!("not measured: {w}")),
        Status::Failed(w) => Some(format!("failed: {w}")),
    }
}

/// Markdown-safe single line.
fn cell_text(s: &str) -> String {
    let s = s.replace('|', "\\|").replace('\n', " ");
    match s.char_indices().nth(240) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn flags_json(c: &JsonCell) -> String {
    let mut f = String::new();
    if c.load.non2xx > 0 || c.load.socket_errors > 0 {
        let _ = write!(f, " ⚠ {} non-2xx, {} socket errors", c.load.non2xx, c.load.socket_errors);
    }
    if let Some(up) = c.upstream {
        let ok = c.load.requests.saturating_sub(c.load.non2xx);
        if (up as f64) < 0.99 * ok as f64 {
            let _ = write!(f, " ⚠ only {} of {} reached the mock", int(up as f64), int(ok as f64));
        }
    }
    if c.sys.foreign_cores > BACKGROUND_FLAG_CORES {
        let _ = write!(f, " ⚠ bg {:.2} cores", c.sys.foreign_cores);
    }
    f
}

fn flags_stream(c: &StreamCell) -> String {
    let mut f = String::new();
    let bad = c.load.errors + c.load.bad_status + c.load.no_done;
    if bad > 0 {
        let _ = write!(f, " ⚠ {bad} failed streams");
    }
    if let Some(up) = c.upstream
        && (up as f64) < 0.99 * c.load.ok as f64
    {
        let _ = write!(f, " ⚠ only {} of {} streams reached the mock", up, c.load.ok);
    }
    if c.sys.foreign_cores > BACKGROUND_FLAG_CORES {
        let _ = write!(f, " ⚠ bg {:.2} cores", c.sys.foreign_cores);
    }
    f
}

pub(crate) fn markdown(meta: &Meta, results: &[TargetResult]) -> String {
    let mut md = String::new();
    header(&mut md, meta);
    design_targets(&mut md, meta, results);
    observability(&mut md, meta, results);
    cross_dialect(&mut md, meta, results);
    non_streaming(&mut md, meta, results);
    if let Some(ms) = meta.sparse_interval_ms {
        sparse(&mut md, ms, results);
    }
    if !meta.stream_conc.is_empty() {
        streaming(&mut md, meta, results);
    }
    if let Some(h) = meta.held {
        held(&mut md, meta, h, results);
    }
    relative(&mut md, meta, results);
    honesty(&mut md, meta, results);
    target_list(&mut md, results);
    caveats(&mut md);
    md
}

fn header(md: &mut String, meta: &Meta) {
    let kind =
        if meta.smoke { " (smoke run: not a measurement, a check that the benchmark works)" } else { "" };
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "<!-- Generated by `cargo xtask bench`; edit xtask/src/bench/ rather than this file. -->\n"
    );
    let _ = writeln!(
        md,
        "Switchyard side by side with the floor of one proxy hop (nginx) and with its peers (LiteLLM's \
         proxy from PyPI, Portkey's gateway from npm), in one run, on loopback, against the same mock \
         provider (`switchyard-mock`, no added latency; streams of 20 chunks 5 ms apart).{kind}\n"
    );
    let _ = writeln!(md, "- **Run:** {} · git `{}`", meta.date, meta.git_rev);
    let _ = writeln!(
        md,
        "- **Machine:** {}, {} cores, {} GiB, Linux {}",
        meta.cpu_model, meta.nproc, meta.mem_gib, meta.kernel
    );
    let _ = writeln!(
        md,
        "- **Placement** (`taskset`, identical for every target): gateway (every process and thread \
         of it) on CPU {}; load generator, mock and orchestrator on CPU {}. Figures are what *one core* \
         of gateway delivers.",
        meta.gw_cpu, meta.load_cpu
    );
    let conc: Vec<String> = meta.conc.iter().map(u32::to_string).collect();
    let sconc: Vec<String> = meta.stream_conc.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "- **Load:** non-streaming `POST /v1/chat/completions` with {} at concurrency {}; streaming \
         (`\"stream\": true`, `include_usage`) with `switchyard-sse-probe` at concurrency {}. {} s per \
         cell after a {} s warm-up (not recorded). Closed loop: the next request leaves when the previous \
         one is complete{}.",
        meta.loadgen,
        conc.join(", "),
        if sconc.is_empty() { "– (skipped)".to_owned() } else { sconc.join(", ") },
        meta.duration,
        meta.warmup,
        match meta.sparse_interval_ms {
            Some(ms) => format!(
                "; except in the sparse cell (non-streaming, concurrency 1, `switchyard-sse-probe --mode json \
                 --interval-ms {ms}`), where it leaves {ms} ms later"
            ),
            None => String::new(),
        }
    );
    let _ = writeln!(md, "- **Mock:** {}", meta.mock);
    let _ = writeln!(
        md,
        "- **Reproduce:** `cargo xtask bench` (everything; installs nginx-light and wrk with apt-get and \
         the peers under `~/.cache/switchyard-bench` when missing) · `cargo xtask bench --targets \
         direct,nginx,switchyard --duration 5` · `cargo xtask bench --smoke` (what CI runs). Raw figures: \
         `results.json` in `<target-dir>/bench/<UTC time>/`, with each process's log.\n"
    );
}

fn design_targets(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    let _ = writeln!(md, "## Against the design budget\n");
    let sy = find(results, "switchyard");
    let ng = find(results, "nginx");
    let _ = writeln!(md, "| budget (DESIGN.md) | measured | verdict |\n|---|---|---|");
    let verdict = |ok: bool| if ok { "✅ met" } else { "❌ missed" };
    let mut row = |what: &str, measured: String, v: &str| {
        let _ = writeln!(md, "| {what} | {measured} | {v} |");
    };
    let why_not = |need_nginx: bool| -> String {
        if sy.is_none() {
            "not evaluated: switchyard not measured".to_owned()
        } else if need_nginx && ng.is_none() {
            "not evaluated: nginx not measured in this run".to_owned()
        } else {
            "not evaluated: cell not run".to_owned()
        }
    };
    // Non-streaming, c=1, over nginx.
    match (json_cell(sy, 1), json_cell(ng, 1)) {
        (Some(s), Some(n)) => {
            let d50 = s.load.latency.p50 as i64 - n.load.latency.p50 as i64;
            let d99 = s.load.latency.p99 as i64 - n.load.latency.p99 as i64;
            row(
                &format!("non-streaming c=1: added p50 ≤ {ADDED_P50_C1_US} µs over nginx"),
                format!(
                    "{} µs (switchyard {} − nginx {})",
                    signed(d50),
                    int(s.load.latency.p50 as f64),
                    int(n.load.latency.p50 as f64)
                ),
                verdict(d50 <= ADDED_P50_C1_US),
            );
            row(
                &format!("non-streaming c=1: added p99 ≤ {ADDED_P99_C1_US} µs over nginx"),
                format!(
                    "{} µs (switchyard {} − nginx {})",
                    signed(d99),
                    int(s.load.latency.p99 as f64),
                    int(n.load.latency.p99 as f64)
                ),
                verdict(d99 <= ADDED_P99_C1_US),
            );
        }
        _ => {
            row(
                &format!(
                    "non-streaming c=1: added p50 ≤ {ADDED_P50_C1_US} µs, p99 ≤ {ADDED_P99_C1_US} µs over nginx"
                ),
                why_not(true),
                "–",
            );
        }
    }
    // Informational: sparse traffic is not a DESIGN.md budget (yet), but it is what LLM clients send.
    let sparse_what = "sparse c=1: added p50 over nginx";
    match (sy.and_then(|r| r.sparse.as_ref()), ng.and_then(|r| r.sparse.as_ref())) {
        (Some(s), Some(n)) => {
            let d = s.load.latency.p50 as i64 - n.load.latency.p50 as i64;
            let back_to_back = match (json_cell(sy, 1), json_cell(ng, 1)) {
                (Some(s1), Some(n1)) => format!(
                    "; back to back at c=1: {} µs",
                    signed(s1.load.latency.p50 as i64 - n1.load.latency.p50 as i64)
                ),
                _ => String::new(),
            };
            row(
                sparse_what,
                format!(
                    "{} µs (switchyard {} − nginx {}){back_to_back}; informational, not a DESIGN.md budget",
                    signed(d),
                    int(s.load.latency.p50 as f64),
                    int(n.load.latency.p50 as f64)
                ),
                "–",
            );
        }
        _ if meta.sparse_interval_ms.is_none() => {
            row(sparse_what, "not evaluated: sparse cell not run (--no-sparse)".to_owned(), "–")
        }
        _ => row(sparse_what, why_not(true), "–"),
    }
    let top = meta.conc.iter().copied().max().unwrap_or(64);
    let at = if top == 64 { "c=64".to_owned() } else { format!("c={top} (the budget is for c=64)") };
    match (json_cell(sy, top), json_cell(ng, top)) {
        (Some(s), Some(n)) if n.load.rps > 0.0 => {
            let r = s.load.rps / n.load.rps;
            row(
                &format!("non-streaming {at}: ≥ {:.0}% of nginx's req/s", THROUGHPUT_C64_VS_NGINX * 100.0),
                format!("{:.0}% ({} vs {} req/s)", r * 100.0, int(s.load.rps), int(n.load.rps)),
                verdict(r >= THROUGHPUT_C64_VS_NGINX),
            );
        }
        _ => row(&format!("non-streaming {at}: ≥ 50% of nginx's req/s"), why_not(true), "–"),
    }
    match (stream_cell(sy, 1), stream_cell(ng, 1)) {
        (Some(s), Some(n)) => {
            let d = s.load.ttfb.p50 as i64 - n.load.ttfb.p50 as i64;
            row(
                &format!("streaming c=1: time to first byte within {TTFB_VS_NGINX_US} µs of nginx (p50)"),
                format!(
                    "{} µs (switchyard {} − nginx {})",
                    signed(d),
                    int(s.load.ttfb.p50 as f64),
                    int(n.load.ttfb.p50 as f64)
                ),
                verdict(d <= TTFB_VS_NGINX_US),
            );
        }
        _ => row("streaming c=1: time to first byte within 100 µs of nginx", why_not(true), "–"),
    }
    match sy.and_then(|s| s.idle) {
        Some(m) => row(
            &format!("memory: ≤ {IDLE_RSS_MIB:.0} MiB RSS idle"),
            format!("{} MiB", mib(m.rss_kb)),
            verdict((m.rss_kb as f64 / 1024.0) <= IDLE_RSS_MIB),
        ),
        None => row("memory: ≤ 30 MiB RSS idle", why_not(false), "–"),
    }
    match json_cell(sy, 64).and_then(|c| c.sys.peak) {
        Some(m) => row(
            &format!("memory: ≤ {C64_RSS_MIB:.0} MiB RSS under concurrency 64"),
            format!("{} MiB (peak, sampled every 250 ms)", mib(m.rss_kb)),
            verdict((m.rss_kb as f64 / 1024.0) <= C64_RSS_MIB),
        ),
        None => row("memory: ≤ 60 MiB RSS under concurrency 64", why_not(false), "–"),
    }
    let held_what = format!("memory: ≤ {HELD_RSS_MIB:.0} MiB with 2,000 open streams");
    match (meta.held, sy.and_then(|s| s.held.as_ref())) {
        (None, _) => row(&held_what, "not evaluated: held-streams cell not run (--no-held)".to_owned(), "–"),
        (Some(h), _) if h.streams != HeldSpec::FULL.streams => row(
            &held_what,
            format!(
                "not evaluated: the held-streams cell ran with {} streams (smoke)",
                int(f64::from(h.streams))
            ),
            "–",
        ),
        (Some(_), Some(c)) => {
            let (measured, v) = held_budget(c);
            row(&held_what, measured, v);
        }
        (Some(_), None) => row(&held_what, why_not(false), "–"),
    }
    let _ = writeln!(md);
}

/// The Switchyard runs of "Cost of observability", in table order, with what each turns on.
const OBSERVABILITY: [(&str, &str); 3] = [
    (SWITCHYARD_BARE, "none"),
    ("switchyard", "metrics; request logs filtered out (RUST_LOG=warn)"),
    (SWITCHYARD_TRACED, "metrics; request logs at info, to a file; every trace exported (OTLP/HTTP)"),
];

/// The same binary with its telemetry off, as shipped and all on: the figures side by side, and
/// traced − bare held to the latency budget, since the observability cost must itself fit in
/// the budget. Only when a variant ran (or was asked for).
fn observability(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    if !results.iter().any(|r| r.name == SWITCHYARD_BARE || r.name == SWITCHYARD_TRACED) {
        return;
    }
    let top = meta.conc.iter().copied().max().unwrap_or(64);
    let _ = writeln!(
        md,
        "## Cost of observability
"
    );
    let _ = writeln!(
        md,
        "The same release binary three times, differing only in its `telemetry:` config: \
         `{SWITCHYARD_BARE}` (none), `switchyard` (as shipped and as measured above) and \
         `{SWITCHYARD_TRACED}` (all of it; its spans go to a sink, a third mock on the load core, that \
         reads each export and discards it). **The observability cost must itself fit in the budget:** \
         traced − bare is held to the limits DESIGN.md sets for Switchyard over nginx. Run back to back \
         (`cargo xtask bench --targets switchyard,switchyard-bare,switchyard-traced` for these alone); \
         *written per request* = bytes of its log files, and of the spans the sink received, per \
         completion the mocks served.\n"
    );
    let _ = writeln!(
        md,
        "| target | telemetry | p50 / p99 µs c=1 | req/s c={top} | CPU µs/req c={top} | TTFB p50 µs c=1 | \
         RSS MiB idle → peak | written per request |\n|---|---|---|---|---|---|---|---|"
    );
    for (name, what) in OBSERVABILITY {
        let Some(r) = results.iter().find(|r| r.name == name) else {
            let _ = writeln!(md, "| {name} | {what} | not in this run |");
            continue;
        };
        if let Some(s) = status_text(r) {
            let _ = writeln!(md, "| {name} | {what} | {} |", cell_text(&s));
            continue;
        }
        let c1 = json_cell(Some(r), 1).map_or("–".to_owned(), |c| {
            format!(
                "{} / {}{}",
                int(c.load.latency.p50 as f64),
                int(c.load.latency.p99 as f64),
                flags_json(c)
            )
        });
        let hi = json_cell(Some(r), top);
        let rps = hi.map_or("–".to_owned(), |c| {
            let bound = if load_bound(meta, &c.sys) { " (load-bound)" } else { "" };
            format!("{}{bound}{}", int(c.load.rps), flags_json(c))
        });
        let cpu = cpu_text(hi);
        let ttfb = stream_cell(Some(r), 1)
            .map_or("–".to_owned(), |c| format!("{}{}", int(c.load.ttfb.p50 as f64), flags_stream(c)));
        let _ = writeln!(
            md,
            "| {name} | {what} | {c1} | {rps} | {cpu} | {ttfb} | {} | {} |",
            memory(r),
            written_per_request(r)
        );
    }
    let _ = writeln!(md);

    let bare = find(results, SWITCHYARD_BARE);
    let traced = find(results, SWITCHYARD_TRACED);
    let _ =
        writeln!(md, "| budget (DESIGN.md), applied to traced − bare | measured | verdict |\n|---|---|---|");
    let not_evaluated = if bare.is_none() {
        format!("not evaluated: {SWITCHYARD_BARE} not measured in this run")
    } else if traced.is_none() {
        format!("not evaluated: {SWITCHYARD_TRACED} not measured in this run")
    } else {
        "not evaluated: cell not run".to_owned()
    };
    // Spans that never left make "met" unproven (a miss without them is still a miss).
    let unexported = traced.and_then(|t| t.otlp).is_some_and(|o| o.exports == 0);
    let verdict = |ok: bool| match (ok, unexported) {
        (false, _) => "❌ missed",
        (true, false) => "✅ met",
        (true, true) => "⚠ not proven: no span was exported",
    };
    let noisy = |a: &CellSys, b: &CellSys| {
        let bg = a.foreign_cores.max(b.foreign_cores);
        if bg > BACKGROUND_FLAG_CORES { format!("; ⚠ bg {bg:.2} cores") } else { String::new() }
    };
    let mut row = |what: String, measured: String, v: &str| {
        let _ = writeln!(md, "| {what} | {measured} | {v} |");
    };
    match (json_cell(traced, 1), json_cell(bare, 1)) {
        (Some(t), Some(b)) => {
            for (label, limit, pick) in [
                ("p50", ADDED_P50_C1_US, (|c: &JsonCell| c.load.latency.p50) as fn(&JsonCell) -> u64),
                ("p99", ADDED_P99_C1_US, |c: &JsonCell| c.load.latency.p99),
            ] {
                let d = pick(t) as i64 - pick(b) as i64;
                row(
                    format!("non-streaming c=1: added {label} ≤ {limit} µs"),
                    format!(
                        "{} µs (traced {} − bare {}){}",
                        signed(d),
                        int(pick(t) as f64),
                        int(pick(b) as f64),
                        noisy(&t.sys, &b.sys)
                    ),
                    verdict(d <= limit),
                );
            }
        }
        _ => row(
            format!("non-streaming c=1: added p50 ≤ {ADDED_P50_C1_US} µs, p99 ≤ {ADDED_P99_C1_US} µs"),
            not_evaluated.clone(),
            "–",
        ),
    }
    let ttfb_what = format!("streaming c=1: time to first byte added ≤ {TTFB_VS_NGINX_US} µs (p50)");
    match (stream_cell(traced, 1), stream_cell(bare, 1)) {
        (Some(t), Some(b)) => {
            let d = t.load.ttfb.p50 as i64 - b.load.ttfb.p50 as i64;
            row(
                ttfb_what,
                format!(
                    "{} µs (traced {} − bare {}){}",
                    signed(d),
                    int(t.load.ttfb.p50 as f64),
                    int(b.load.ttfb.p50 as f64),
                    noisy(&t.sys, &b.sys)
                ),
                verdict(d <= TTFB_VS_NGINX_US),
            );
        }
        _ => row(ttfb_what, not_evaluated, "–"),
    }
    // What the shipped defaults cost over none: informational (switchyard has its own budget).
    if let (Some(s), Some(b)) = (json_cell(find(results, "switchyard"), 1), json_cell(bare, 1)) {
        row(
            "as shipped (switchyard − bare), non-streaming c=1 p50 / p99".to_owned(),
            format!(
                "{} / {} µs; informational, switchyard is held to the budget above",
                signed(s.load.latency.p50 as i64 - b.load.latency.p50 as i64),
                signed(s.load.latency.p99 as i64 - b.load.latency.p99 as i64)
            ),
            "–",
        );
    }
    let _ = writeln!(md);

    if let Some(t) = traced {
        let served = t.served.filter(|n| *n > 0);
        match t.otlp {
            Some(o) if o.exports == 0 => {
                let _ = writeln!(
                    md,
                    "⚠ **No span reached the sink** during {SWITCHYARD_TRACED}'s run: this binary did not \
                     export traces although they were configured, so its figures hold metrics and request logs \
                     only, not the cost of tracing.\n"
                );
            }
            Some(o) => {
                let _ = writeln!(
                    md,
                    "Trace export during {SWITCHYARD_TRACED}'s run (cells, warm-up and held streams): {} exports, \
                     {} MiB{}; the sink used {:.2} s of CPU on the load core. Spans are batched and sent off the \
                     request path; when the exporter falls behind, OpenTelemetry's batch processor drops spans \
                     rather than wait, so under saturation the export cost is capped rather than per request.\n",
                    int(o.exports as f64),
                    mib_of_bytes(o.bytes),
                    served.map_or(String::new(), |n| format!(
                        " ({} bytes per completion over {} completions)",
                        int(o.bytes as f64 / n as f64),
                        int(n as f64)
                    )),
                    o.sink_cpu_s
                );
            }
            None => {}
        }
    }
}

/// The gateway's CPU time per completed request of a non-streaming cell, in µs; `None` when
/// the cell did not run, completed nothing, or used too little CPU to resolve.
fn cpu_per_request(c: Option<&JsonCell>) -> Option<f64> {
    let c = c.filter(|c| c.load.requests > 0)?;
    let s = c.sys.gw_cpu_s.filter(|s| *s >= MIN_CPU_S)?;
    Some(s * 1e6 / c.load.requests as f64)
}

/// [`cpu_per_request`] for a table cell.
fn cpu_text(c: Option<&JsonCell>) -> String {
    match (cpu_per_request(c), c) {
        (Some(us), _) => int(us),
        (None, Some(c)) if c.load.requests > 0 && c.sys.gw_cpu_s.is_some() => "< resolution".to_owned(),
        _ => "–".to_owned(),
    }
}

/// The two runs of "Cross-dialect translation", in table order.
const CROSS_DIALECT: [&str; 2] = ["switchyard", SWITCHYARD_ANTHROPIC];

/// The same binary with its model served in OpenAI's dialect (as measured above) and in
/// Anthropic's, the load speaking OpenAI to both: the figures side by side, the translation
/// cost (switchyard-anthropic − switchyard) explicitly, and the cross-dialect streaming time to
/// first byte held to the streaming budget over nginx. Only when the variant ran (or was asked
/// for).
fn cross_dialect(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    if !results.iter().any(|r| r.name == SWITCHYARD_ANTHROPIC) {
        return;
    }
    let top = meta.conc.iter().copied().max().unwrap_or(64);
    let _ = writeln!(
        md,
        "## Cross-dialect translation
"
    );
    let _ = writeln!(
        md,
        "The same release binary twice, telemetry as shipped, differing only in the deployment behind its \
         model `mock-gpt`: `switchyard` (as measured above) calls the mock's OpenAI Chat Completions, \
         `{SWITCHYARD_ANTHROPIC}` a deployment with `provider: anthropic` calling the same mock's Anthropic \
         Messages (`POST /v1/messages`, answered with the same chunks and pacing). The load keeps speaking \
         OpenAI, so every request is translated to Anthropic Messages and every answer back: JSON whole, \
         SSE streams event by event. *Translation* = {SWITCHYARD_ANTHROPIC} − switchyard, what a client pays \
         to reach a model in the other dialect; the cross-dialect streaming time to first byte is held to \
         the DESIGN.md streaming budget over nginx. Run back to back (`cargo xtask bench --targets \
         nginx,switchyard,{SWITCHYARD_ANTHROPIC}` for these alone).\n"
    );
    let _ = writeln!(
        md,
        "| target | upstream dialect | p50 / p99 µs c=1 | req/s c={top} | CPU µs/req c={top} | TTFB p50 µs c=1 | \
         full stream p50 / p99 ms c=1 | SSE events / stream c=1 |\n|---|---|---|---|---|---|---|---|"
    );
    for name in CROSS_DIALECT {
        let what = Dialect::of(name).label();
        let Some(r) = results.iter().find(|r| r.name == name) else {
            let _ = writeln!(md, "| {name} | {what} | not in this run |");
            continue;
        };
        if let Some(s) = status_text(r) {
            let _ = writeln!(md, "| {name} | {what} | {} |", cell_text(&s));
            continue;
        }
        let c1 = json_cell(Some(r), 1).map_or("–".to_owned(), |c| {
            format!(
                "{} / {}{}",
                int(c.load.latency.p50 as f64),
                int(c.load.latency.p99 as f64),
                flags_json(c)
            )
        });
        let hi = json_cell(Some(r), top);
        let rps = hi.map_or("–".to_owned(), |c| {
            let bound = if load_bound(meta, &c.sys) { " (load-bound)" } else { "" };
            format!("{}{bound}{}", int(c.load.rps), flags_json(c))
        });
        let s1 = stream_cell(Some(r), 1);
        let ttfb =
            s1.map_or("–".to_owned(), |c| format!("{}{}", int(c.load.ttfb.p50 as f64), flags_stream(c)));
        let total = s1.map_or("–".to_owned(), |c| {
            format!("{:.1} / {:.1}", c.load.total.p50 as f64 / 1000.0, c.load.total.p99 as f64 / 1000.0)
        });
        let events = s1.map_or("–".to_owned(), |c| format!("{:.1}", c.load.events_per_stream));
        let _ = writeln!(
            md,
            "| {name} | {what} | {c1} | {rps} | {} | {ttfb} | {total} | {events} |",
            cpu_text(hi)
        );
    }
    let (sy, cross) = (find(results, "switchyard"), find(results, SWITCHYARD_ANTHROPIC));
    let label = format!("**translation** ({SWITCHYARD_ANTHROPIC} − switchyard)");
    let path = "OpenAI → Anthropic Messages → OpenAI";
    match (sy, cross) {
        (Some(s), Some(x)) => {
            let (s1, x1) = (json_cell(Some(s), 1), json_cell(Some(x), 1));
            let c1 = match (x1, s1) {
                (Some(x), Some(s)) => format!(
                    "{} / {}",
                    signed(x.load.latency.p50 as i64 - s.load.latency.p50 as i64),
                    signed(x.load.latency.p99 as i64 - s.load.latency.p99 as i64)
                ),
                _ => "–".to_owned(),
            };
            let (shi, xhi) = (json_cell(Some(s), top), json_cell(Some(x), top));
            let rps = match (xhi, shi) {
                (Some(x), Some(s)) if s.load.rps > 0.0 => format!(
                    "{} ({:+.1}%)",
                    signed((x.load.rps - s.load.rps).round() as i64),
                    (x.load.rps / s.load.rps - 1.0) * 100.0
                ),
                _ => "–".to_owned(),
            };
            let cpu = match (cpu_per_request(xhi), cpu_per_request(shi)) {
                (Some(x), Some(s)) => signed((x - s).round() as i64),
                _ => "–".to_owned(),
            };
            let (ss, xs) = (stream_cell(Some(s), 1), stream_cell(Some(x), 1));
            let (ttfb, total, events) = match (xs, ss) {
                (Some(x), Some(s)) => (
                    signed(x.load.ttfb.p50 as i64 - s.load.ttfb.p50 as i64),
                    format!(
                        "{} / {} µs",
                        signed(x.load.total.p50 as i64 - s.load.total.p50 as i64),
                        signed(x.load.total.p99 as i64 - s.load.total.p99 as i64)
                    ),
                    format!("{:+.1}", x.load.events_per_stream - s.load.events_per_stream),
                ),
                _ => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
            };
            let _ = writeln!(md, "| {label} | {path} | {c1} | {rps} | {cpu} | {ttfb} | {total} | {events} |");
        }
        _ => {
            let missing = if sy.is_none() { "switchyard" } else { SWITCHYARD_ANTHROPIC };
            let _ = writeln!(md, "| {label} | {path} | not evaluated: {missing} not measured in this run |");
        }
    }
    let _ = writeln!(md);

    let ng = find(results, "nginx");
    let _ = writeln!(
        md,
        "| budget (DESIGN.md), applied to {SWITCHYARD_ANTHROPIC} | measured | verdict |\n|---|---|---|"
    );
    let what = format!("streaming c=1: time to first byte within {TTFB_VS_NGINX_US} µs of nginx (p50)");
    match (stream_cell(cross, 1), stream_cell(ng, 1)) {
        (Some(x), Some(n)) => {
            let d = x.load.ttfb.p50 as i64 - n.load.ttfb.p50 as i64;
            let share = stream_cell(sy, 1).map_or(String::new(), |s| {
                format!(
                    "; translation {} µs of it (over switchyard {})",
                    signed(x.load.ttfb.p50 as i64 - s.load.ttfb.p50 as i64),
                    int(s.load.ttfb.p50 as f64)
                )
            });
            let bg = x.sys.foreign_cores.max(n.sys.foreign_cores);
            let noisy =
                if bg > BACKGROUND_FLAG_CORES { format!("; ⚠ bg {bg:.2} cores") } else { String::new() };
            let _ = writeln!(
                md,
                "| {what} | {} µs ({SWITCHYARD_ANTHROPIC} {} − nginx {}){share}{noisy} | {} |",
                signed(d),
                int(x.load.ttfb.p50 as f64),
                int(n.load.ttfb.p50 as f64),
                if d <= TTFB_VS_NGINX_US { "✅ met" } else { "❌ missed" }
            );
        }
        _ => {
            let why = if cross.is_none() {
                format!("not evaluated: {SWITCHYARD_ANTHROPIC} not measured in this run")
            } else if ng.is_none() {
                "not evaluated: nginx not measured in this run".to_owned()
            } else {
                "not evaluated: cell not run".to_owned()
            };
            let _ = writeln!(md, "| {what} | {why} | – |");
        }
    }
    let _ = writeln!(md);
}

/// What a target wrote per completion served: its logs, and the spans the sink received.
fn written_per_request(r: &TargetResult) -> String {
    let Some(n) = r.served.filter(|n| *n > 0) else { return "–".to_owned() };
    let per = |bytes: u64| format!("{} B", int(bytes as f64 / n as f64));
    let mut s = format!("logs {}", r.log_bytes.map_or("–".to_owned(), per));
    if let Some(o) = r.otlp {
        let _ = write!(s, ", spans {} ({} exports)", per(o.bytes), int(o.exports as f64));
    }
    s
}

/// `1.5` (MiB) from a byte count.
fn mib_of_bytes(bytes: u64) -> String {
    mib(bytes / 1024)
}

/// The "2,000 open streams" budget row: peak RSS while the streams were open; met only when
/// every stream completed, as a figure for fewer streams would flatter the gateway.
fn held_budget(c: &HeldCell) -> (String, &'static str) {
    let (Some(l), Some(peak)) = (&c.load, c.sys.as_ref().and_then(|s| s.peak)) else {
        return (
            format!("not evaluated: {}", cell_text(c.problem.as_deref().unwrap_or("the cell did not run"))),
            "–",
        );
    };
    let failed = held_failed(c);
    let mut m = format!(
        "{} MiB (peak, sampled every 250 ms; {} of {} streams ok",
        mib(peak.rss_kb),
        int(l.ok as f64),
        int(f64::from(c.streams))
    );
    if failed > 0 {
        let _ = write!(m, ", {} failed", int(failed as f64));
    }
    m.push(')');
    if let Some(p) = &c.problem {
        let _ = write!(m, "; {}", cell_text(p));
    }
    let ok = failed == 0 && l.ok >= u64::from(c.streams) && (peak.rss_kb as f64 / 1024.0) <= HELD_RSS_MIB;
    (m, if ok { "✅ met" } else { "❌ missed" })
}

/// Streams of the held cell that failed (errors, timeouts, bad status, no `[DONE]`).
fn held_failed(c: &HeldCell) -> u64 {
    c.load.as_ref().map_or(0, |l| l.errors + l.bad_status + l.no_done)
}

fn held(md: &mut String, meta: &Meta, h: HeldSpec, results: &[TargetResult]) {
    let secs = h.stream_secs();
    let _ = writeln!(
        md,
        "## Held streams ({} concurrent, {secs:.0} s streams)
",
        int(f64::from(h.streams))
    );
    let _ = writeln!(
        md,
        "Each target restarted against a second mock whose streams last {secs:.0} s ({} chunks {} ms apart); \
         {} connections each open one stream at once (`switchyard-sse-probe -c {} --duration {} --warmup 0`) \
         and hold it to the end, while the gateway's process group is sampled every 250 ms. Run after the \
         target's other cells. *RSS idle* is the fresh process before the streams; *MiB per stream* = (peak − \
         idle) ÷ streams; *fds* = open file descriptors of the group at their peak (a proxy needs two per \
         stream). Open-files limit (soft) of the run: {}.\n",
        h.chunks,
        h.chunk_ms,
        int(f64::from(h.streams)),
        h.streams,
        h.probe_secs,
        meta.nofile.map_or("unknown".to_owned(), |n| int(n as f64)),
    );
    let _ = writeln!(
        md,
        "| target | streams ok | errors | RSS MiB idle → peak | MiB per stream | open fds at peak | note |\n\
         |---|---|---|---|---|---|---|"
    );
    for r in results.iter().filter(|r| r.name != "direct") {
        if let Some(s) = status_text(r) {
            let _ = writeln!(md, "| {} | {} |", r.name, cell_text(&s));
            continue;
        }
        let Some(c) = &r.held else { continue };
        let _ = writeln!(md, "{}", held_row(r.name, c));
    }
    let _ = writeln!(md);
}

fn held_row(name: &str, c: &HeldCell) -> String {
    let mut note = Vec::new();
    if let Some(p) = &c.problem {
        note.push(cell_text(p));
    }
    if let Some(n) = c.nofile.filter(|n| *n < 2 * u64::from(c.streams) + 64) {
        note.push(format!("⚠ open-files limit {} is below 2 per stream", int(n as f64)));
    }
    let Some(l) = &c.load else {
        return format!(
            "| {name} | – | – | {} | – | – | {} |",
            c.idle.map_or("–".to_owned(), |m| mib(m.rss_kb)),
            note.join("; ")
        );
    };
    if let Some(up) = c.upstream
        && up < l.ok
    {
        note.push(format!("⚠ only {up} of {} streams reached the mock", l.ok));
    }
    if let Some(s) = c.sys.as_ref().filter(|s| s.foreign_cores > BACKGROUND_FLAG_CORES) {
        note.push(format!("⚠ bg {:.2} cores", s.foreign_cores));
    }
    let peak = c.sys.as_ref().and_then(|s| s.peak);
    let rss = match (c.idle, peak) {
        (Some(i), Some(p)) => format!("{} → {}", mib(i.rss_kb), mib(p.rss_kb)),
        (None, Some(p)) => format!("? → {}", mib(p.rss_kb)),
        _ => "–".to_owned(),
    };
    let per_stream = match (c.idle, peak) {
        (Some(i), Some(p)) if l.ok > 0 => {
            format!("{:.3}", p.rss_kb.saturating_sub(i.rss_kb) as f64 / 1024.0 / f64::from(c.streams))
        }
        _ => "–".to_owned(),
    };
    let fds = peak.and_then(|p| p.fds).map_or("–".to_owned(), |n| int(n as f64));
    format!(
        "| {name} | {} of {} | {} | {rss} | {per_stream} | {fds} | {} |",
        int(l.ok as f64),
        int(f64::from(c.streams)),
        int(held_failed(c) as f64),
        note.join("; ")
    )
}

fn non_streaming(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    let direct = find(results, "direct");
    let conc = &meta.conc;
    let (first, last) = (conc.first().copied().unwrap_or(1), conc.last().copied().unwrap_or(1));
    let _ = writeln!(md, "## Non-streaming\n");
    let mut head = "| target |".to_owned();
    for c in conc {
        let _ = write!(head, " req/s c={c} |");
    }
    let _ = write!(
        head,
        " p50 / p99 µs c={first} | p50 / p99 µs c={last} | added p50 / p99 µs c={first} (vs direct) | \
         CPU µs/req c={last} | RSS MiB idle → peak |"
    );
    let _ = writeln!(md, "{head}\n|{}", "---|".repeat(conc.len() + 6));
    for r in results {
        if let Some(s) = status_text(r) {
            let _ = writeln!(md, "| {} | {} |", r.name, cell_text(&s));
            continue;
        }
        let mut line = format!("| {} |", r.name);
        for &c in conc {
            match json_cell(Some(r), c) {
                Some(x) => {
                    let d = json_cell(direct, c).filter(|_| r.name != "direct");
                    let rel = d
                        .filter(|d| d.load.rps > 0.0)
                        .map(|d| format!(" ({})", ratio(x.load.rps / d.load.rps)));
                    let _ =
                        write!(line, " {}{}{} |", int(x.load.rps), rel.unwrap_or_default(), flags_json(x));
                }
                None => line.push_str(" – |"),
            }
        }
        for c in [first, last] {
            match json_cell(Some(r), c) {
                Some(x) => {
                    let _ = write!(
                        line,
                        " {} / {} |",
                        int(x.load.latency.p50 as f64),
                        int(x.load.latency.p99 as f64)
                    );
                }
                None => line.push_str(" – |"),
            }
        }
        match (json_cell(Some(r), first), json_cell(direct, first)) {
            _ if r.name == "direct" => line.push_str(" 0 (baseline) |"),
            (Some(x), Some(d)) => {
                let _ = write!(
                    line,
                    " {} / {} |",
                    signed(x.load.latency.p50 as i64 - d.load.latency.p50 as i64),
                    signed(x.load.latency.p99 as i64 - d.load.latency.p99 as i64)
                );
            }
            _ => line.push_str(" – |"),
        }
        match json_cell(Some(r), last) {
            Some(x) if x.load.requests > 0 => match x.sys.gw_cpu_s {
                Some(s) if s < MIN_CPU_S => line.push_str(" < resolution |"),
                Some(s) => {
                    let _ = write!(line, " {} |", int(s * 1e6 / x.load.requests as f64));
                }
                None => {
                    let _ = write!(line, " mock: {} |", int(x.sys.mock_cpu_s * 1e6 / x.load.requests as f64));
                }
            },
            _ => line.push_str(" – |"),
        }
        let _ = writeln!(md, "{line} {} |", memory(r));
    }
    let _ = writeln!(
        md,
        "\nRatios in parentheses: throughput relative to `direct` at the same concurrency. *Added* = target \
         − direct at the same percentile (the DESIGN budget counts over nginx: see above). *CPU µs/req* = \
         user+system CPU time of the gateway's whole process group ÷ completed requests (for `direct`: the \
         mock's). *RSS*: summed over the process group, idle after validation → peak sampled every 250 ms \
         under load.\n"
    );
}

fn sparse(md: &mut String, interval_ms: u64, results: &[TargetResult]) {
    let direct = find(results, "direct");
    let _ = writeln!(md, "## Sparse requests (one every {interval_ms} ms, c=1)\n");
    let _ = writeln!(
        md,
        "LLM traffic is sparse, and a process that idles between requests runs its path with cold caches, \
         so a longer code path pays more than the back-to-back cells above show. One keep-alive connection, \
         non-streaming; after each response the client waits {interval_ms} ms before the next request (the \
         wait is not measured).\n"
    );
    let _ = writeln!(
        md,
        "| target | requests | p50 / p99 µs | added p50 / p99 µs (vs direct) | back to back c=1: added p50 µs \
         (vs direct) |\n|---|---|---|---|---|"
    );
    let added_c1 = |r: &TargetResult| -> Option<i64> {
        Some(json_cell(Some(r), 1)?.load.latency.p50 as i64 - json_cell(direct, 1)?.load.latency.p50 as i64)
    };
    for r in results {
        if let Some(s) = status_text(r) {
            let _ = writeln!(md, "| {} | {} |", r.name, cell_text(&s));
            continue;
        }
        let Some(x) = &r.sparse else {
            let _ = writeln!(md, "| {} | – | – | – | – |", r.name);
            continue;
        };
        let d = direct.and_then(|d| d.sparse.as_ref());
        let (added, back_to_back) = if r.name == "direct" {
            ("0 (baseline)".to_owned(), "0 (baseline)".to_owned())
        } else {
            let added = d.map_or("–".to_owned(), |d| {
                format!(
                    "{} / {}",
                    signed(x.load.latency.p50 as i64 - d.load.latency.p50 as i64),
                    signed(x.load.latency.p99 as i64 - d.load.latency.p99 as i64)
                )
            });
            (added, added_c1(r).map_or("–".to_owned(), signed))
        };
        let _ = writeln!(
            md,
            "| {} | {}{} | {} / {} | {added} | {back_to_back} |",
            r.name,
            int(x.load.requests as f64),
            flags_json(x),
            int(x.load.latency.p50 as f64),
            int(x.load.latency.p99 as f64),
        );
    }
    let _ = writeln!(md);
}

fn memory(r: &TargetResult) -> String {
    let Some(idle) = r.idle else { return "–".to_owned() };
    let peaks = r.json.iter().chain(&r.sparse).map(|c| &c.sys).chain(r.stream.iter().map(|c| &c.sys));
    let peak = peaks.clone().filter_map(|s| s.peak).map(|m| m.rss_kb).max().unwrap_or(0);
    let mut s = format!("{} → {}", mib(idle.rss_kb), mib(peak));
    if idle.processes > 1 {
        let peak_pss = peaks.filter_map(|s| s.peak).map(|m| m.pss_kb).max().unwrap_or(0);
        let _ = write!(s, " ({} processes; PSS {} → {})", idle.processes, mib(idle.pss_kb), mib(peak_pss));
    }
    s
}

fn streaming(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    let direct = find(results, "direct");
    let _ = writeln!(md, "## Streaming\n");
    let _ = writeln!(
        md,
        "| target | c | streams/s | TTFB p50 / p99 µs | TTFB added p50 / p99 µs (vs direct) | headers p50 µs | \
         full stream p50 / p99 ms | SSE events / stream | CPU µs/stream |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        if let Some(s) = status_text(r) {
            let _ = writeln!(md, "| {} | – | {} |", r.name, cell_text(&s));
            continue;
        }
        if let Some(why) = &r.stream_skipped {
            let _ = writeln!(md, "| {} | – | not measured: {} |", r.name, cell_text(why));
            continue;
        }
        for &c in &meta.stream_conc {
            let Some(x) = stream_cell(Some(r), c) else { continue };
            let added = match stream_cell(direct, c) {
                _ if r.name == "direct" => "0 (baseline)".to_owned(),
                Some(d) => format!(
                    "{} / {}",
                    signed(x.load.ttfb.p50 as i64 - d.load.ttfb.p50 as i64),
                    signed(x.load.ttfb.p99 as i64 - d.load.ttfb.p99 as i64)
                ),
                None => "–".to_owned(),
            };
            let cpu = match x.sys.gw_cpu_s {
                Some(s) if x.load.ok > 0 && s >= MIN_CPU_S => int(s * 1e6 / x.load.ok as f64),
                Some(_) if x.load.ok > 0 => "< resolution".to_owned(),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {c} | {:.1}{} | {} / {} | {added} | {} | {:.1} / {:.1} | {:.1} | {cpu} |",
                r.name,
                x.load.per_s,
                flags_stream(x),
                int(x.load.ttfb.p50 as f64),
                int(x.load.ttfb.p99 as f64),
                int(x.load.headers.p50 as f64),
                x.load.total.p50 as f64 / 1000.0,
                x.load.total.p99 as f64 / 1000.0,
                x.load.events_per_stream,
            );
        }
    }
    let _ = writeln!(
        md,
        "\nTTFB = time to the first byte of the body (the first SSE event), measured by the client. A mock \
         stream lasts ≈ 100 ms, so streams/s at concurrency c is bounded near 10 × c.\n"
    );
}

fn relative(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    let Some(sy) = find(results, "switchyard") else { return };
    let direct = find(results, "direct");
    // Peers only: the variants are Switchyard itself (see "Cost of observability" and
    // "Cross-dialect translation").
    let peers: Vec<&TargetResult> =
        results.iter().filter(|r| r.name != "direct" && !targets::runs_switchyard(r.name)).collect();
    if peers.is_empty() {
        return;
    }
    let (first, last) = (meta.conc.first().copied().unwrap_or(1), meta.conc.last().copied().unwrap_or(1));
    let _ = writeln!(md, "## Relative to Switchyard\n");
    let _ = writeln!(
        md,
        "Each target's figure divided by Switchyard's (throughput: above 1× is faster than Switchyard; \
         added latency and CPU: above 1× costs more than Switchyard).\n"
    );
    let _ = writeln!(
        md,
        "| target | req/s c={first} | req/s c={last} | added p50 c={first} | added p99 c={first} | TTFB added p50 c=1 | \
         CPU µs/req c={last} |\n|---|---|---|---|---|---|---|"
    );
    let added = |r: &TargetResult, p99: bool| -> Option<f64> {
        let (x, d) = (json_cell(Some(r), first)?, json_cell(direct, first)?);
        let pick = |c: &JsonCell| if p99 { c.load.latency.p99 } else { c.load.latency.p50 } as f64;
        Some(pick(x) - pick(d))
    };
    let ttfb_added = |r: &TargetResult| -> Option<f64> {
        Some(stream_cell(Some(r), 1)?.load.ttfb.p50 as f64 - stream_cell(direct, 1)?.load.ttfb.p50 as f64)
    };
    let cpu = |r: &TargetResult| -> Option<f64> {
        let c = json_cell(Some(r), last)?;
        Some(c.sys.gw_cpu_s? * 1e6 / (c.load.requests as f64).max(1.0))
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b.abs() > 0.0 => ratio(a / b),
        _ => "–".to_owned(),
    };
    for p in peers {
        if let Some(s) = status_text(p) {
            let _ = writeln!(md, "| {} | {} |", p.name, cell_text(&s));
            continue;
        }
        let rps = |r: &TargetResult, c| json_cell(Some(r), c).map(|x| x.load.rps);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            p.name,
            div(rps(p, first), rps(sy, first)),
            div(rps(p, last), rps(sy, last)),
            div(added(p, false), added(sy, false)),
            div(added(p, true), added(sy, true)),
            div(ttfb_added(p), ttfb_added(sy)),
            div(cpu(p), cpu(sy)),
        );
    }
    let _ = writeln!(md);
}

fn honesty(md: &mut String, meta: &Meta, results: &[TargetResult]) {
    let gw: usize = meta.gw_cpu.parse().unwrap_or(1);
    let ld: usize = meta.load_cpu.parse().unwrap_or(0);
    let _ = writeln!(md, "## Honesty checks\n");
    let _ = writeln!(
        md,
        "Per cell: how busy each core was, and how much CPU processes *outside* the benchmark used \
         meanwhile (other work on the machine, kernel threads), in cores. Cells with more than \
         {BACKGROUND_FLAG_CORES} cores of background are flagged ⚠ in the tables above. When the load core is \
         saturated and the gateway core is not, the cell measured the load generator, not the gateway \
         (marked *load-bound*: the gateway's figure there is a lower bound). Background before the run: \
         {:.2} cores.\n",
        meta.background_at_start
    );
    let _ = writeln!(
        md,
        "| target | cell | CPU{ld} (load) busy | CPU{gw} (gateway) busy | background cores | note |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in results.iter().filter(|r| matches!(r.status, Status::Measured)) {
        let cells = r
            .json
            .iter()
            .map(|c| (format!("json c={}", c.conc), &c.sys))
            .chain(r.sparse.iter().map(|c| (format!("json sparse c={}", c.conc), &c.sys)))
            .chain(r.stream.iter().map(|c| (format!("sse c={}", c.conc), &c.sys)))
            .chain(r.held.iter().filter_map(|h| {
                Some((format!("held {} streams", int(f64::from(h.streams))), h.sys.as_ref()?))
            }));
        for (label, sys) in cells {
            let (l, g) = (
                sys.core_busy.get(ld).copied().unwrap_or(0.0),
                sys.core_busy.get(gw).copied().unwrap_or(0.0),
            );
            let mut note = Vec::new();
            if sys.foreign_cores > BACKGROUND_FLAG_CORES {
                note.push("⚠ background");
            }
            if r.name != "direct" && load_bound(meta, sys) {
                note.push("load-bound");
            }
            let _ = writeln!(
                md,
                "| {} | {label} | {l:.2} | {g:.2} | {:.2} | {} |",
                r.name,
                sys.foreign_cores,
                note.join(", ")
            );
        }
    }
    let _ = writeln!(md);
}

/// Whether a cell measured the load core rather than the gateway: the load core saturated while
/// the gateway's was not.
fn load_bound(meta: &Meta, sys: &CellSys) -> bool {
    let busy = |cpu: &str, default| sys.core_busy.get(cpu.parse().unwrap_or(default)).copied().unwrap_or(0.0);
    busy(&meta.load_cpu, 0) >= 0.95 && busy(&meta.gw_cpu, 1) < 0.90
}

fn target_list(md: &mut String, results: &[TargetResult]) {
    let _ = writeln!(md, "## Targets\n");
    for r in results {
        let version = if r.version.is_empty() { "version unknown".to_owned() } else { r.version.clone() };
        let mut line = format!("- **{}** ({version}): {}", r.name, r.desc);
        match status_text(r) {
            Some(s) => {
                let _ = write!(line, " — **{}**", cell_text(&s));
            }
            None => line.push_str(" — measured"),
        }
        if let Some(s) = r.startup_s {
            let _ = write!(line, "; first 200 after {s:.1} s");
        }
        if let Some(v) = &r.validation {
            let _ = write!(
                line,
                "; validation: JSON {} (usage.total_tokens {}), stream {} ({} events, {} with content, usage chunk {}), \
                 the mock saw {} requests for those 2",
                if v.json_ok { "ok" } else { "failed" },
                v.usage_total.map_or("–".to_owned(), |t| t.to_string()),
                if v.stream_ok { "ok" } else { "failed" },
                v.events,
                v.content_events,
                if v.usage_chunk { "yes" } else { "no" },
                v.upstream_requests.map_or("?".to_owned(), |n| n.to_string()),
            );
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
}

fn caveats(md: &mut String) {
    let _ = writeln!(
        md,
        "## Caveats\n\n\
         - **One run.** Run-to-run spread on these VMs is a few percent for fast targets and can reach \
         ±15–25% for nginx at c=1 and LiteLLM: compare several runs before concluding on small differences.\n\
         - **Two cores.** Gateway throughput is for one core, with the load generator and the mock sharing \
         the other; at high concurrency fast targets (nginx, Switchyard) can be bounded by the load core \
         (see *load-bound* above). Per-request CPU is the figure that transfers to bigger machines.\n\
         - **Loopback floor.** Any L7 hop costs on the order of 100 µs at c=1 here (two extra loopback \
         hops and cross-core wake-ups), which is why the design budget counts over nginx.\n\
         - **Closed loop.** The next request leaves when the previous one completes (coordinated \
         omission): tail latencies under saturation are optimistic compared with a fixed-rate test. \
         Back to back, a process also stays hot; the sparse cell shows what idling between requests \
         costs.\n\
         - **Defaults as shipped.** Peers run with their defaults except what it takes to run them here: \
         LiteLLM with a random master key (it refuses to start without one) and \
         `LITELLM_LOCAL_MODEL_COST_MAP=True` (no price-map fetch at start); Portkey `--headless` with \
         `NODE_ENV=production` and `@hono/node-server` pinned to 1.13.8 (with the version npm resolves, \
         its OpenAI streaming answers 500).\n\
         - **Observability variants.** `switchyard-traced` writes its request logs to a file in the run \
         folder (local disk, page cache) and sends its spans to a sink on the load core; a log pipe or a \
         remote collector costs the gateway about the same system calls. It keeps every trace \
         (`sample_ratio: 1.0`), the worst case: a sampled production setup exports fewer spans.\n\
         - **Cross-dialect variant.** The mock's Anthropic answers carry the same text in the same \
         chunks with the same pacing as its OpenAI ones, but not the same bytes: a Messages stream has \
         more events (`message_start`, `content_block_start`, …, `message_stop`) and the JSON other \
         fields, so *translation* includes parsing that different body, not only the mapping code.\n\
         - **Small bodies.** Mock answers are ~1 KB; large prompts and answers shift cost toward JSON \
         handling.\n\
         - **Background.** The machine may be shared; other processes' CPU is measured per cell (processes \
         that start and end within one cell are not seen) and flagged above 0.05 cores."
    );
}

/// Why a smoke run fails: a target that was not measured, a failed validation, or a cell
/// without successful requests or with failures.
pub(crate) fn smoke_problems(results: &[TargetResult]) -> Vec<String> {
    let mut p = Vec::new();
    for r in results {
        if let Some(s) = status_text(r) {
            p.push(format!("{}: {s}", r.name));
            continue;
        }
        if let Some(why) = &r.stream_skipped {
            p.push(format!("{}: {why}", r.name));
        }
        let cells = r.json.iter().map(|c| ("", c)).chain(r.sparse.iter().map(|c| (" sparse", c)));
        for (kind, c) in cells {
            let errors = c.load.non2xx + c.load.socket_errors;
            if c.load.requests == 0 || errors > 0 {
                p.push(format!(
                    "{}: json{kind} c={}: {} requests, {} non-2xx, {} socket errors",
                    r.name, c.conc, c.load.requests, c.load.non2xx, c.load.socket_errors
                ));
            }
        }
        for c in &r.stream {
            let bad = c.load.errors + c.load.bad_status + c.load.no_done;
            if c.load.ok == 0 || bad > 0 {
                p.push(format!("{}: sse c={}: {} streams ok, {bad} failed", r.name, c.conc, c.load.ok));
            }
        }
        if let Some(h) = &r.held {
            let ok = h.load.as_ref().map_or(0, |l| l.ok);
            if let Some(why) = &h.problem {
                p.push(format!("{}: held streams: {why}", r.name));
            } else if ok < u64::from(h.streams) || held_failed(h) > 0 {
                p.push(format!(
                    "{}: held streams: {ok} of {} ok, {} failed",
                    r.name,
                    h.streams,
                    held_failed(h)
                ));
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_tables() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(signed(-1200), "-1,200");
        assert_eq!(signed(42), "+42");
        assert_eq!(ratio(0.5), "0.50×");
        assert_eq!(ratio(54.5), "55×");
        assert_eq!(ratio(0.0234), "0.023×");
        assert_eq!(ratio(0.0012), "0.0012×");
        assert_eq!(mib(12 * 1024), "12");
        assert_eq!(mib(5 * 1024 + 512), "5.5");
    }

    use crate::bench::load::{CellSys, JsonLoad, Latency};

    fn cell(conc: u32, p50: u64, p99: u64) -> JsonCell {
        JsonCell {
            conc,
            load: JsonLoad {
                requests: 480,
                rps: 48.0,
                latency: Latency { p50, p99, ..Latency::default() },
                ..JsonLoad::default()
            },
            sys: CellSys::default(),
            upstream: Some(480),
        }
    }

    /// A measured target with a back-to-back c=1 cell and, if given, a sparse cell.
    fn measured(name: &'static str, c1_p50: u64, sparse: Option<(u64, u64)>) -> TargetResult {
        TargetResult {
            json: vec![cell(1, c1_p50, c1_p50 * 4)],
            sparse: sparse.map(|(p50, p99)| cell(1, p50, p99)),
            ..TargetResult::new(name, String::new(), String::new(), Status::Measured)
        }
    }

    fn meta(sparse_interval_ms: Option<u64>) -> Meta {
        Meta {
            date: String::new(),
            smoke: false,
            cpu_model: String::new(),
            nproc: 2,
            mem_gib: 1,
            kernel: String::new(),
            gw_cpu: "1".to_owned(),
            load_cpu: "0".to_owned(),
            duration: 10,
            warmup: 3,
            conc: vec![1],
            stream_conc: Vec::new(),
            sparse_interval_ms,
            held: None,
            nofile: Some(20_000),
            loadgen: String::new(),
            mock: String::new(),
            git_rev: String::new(),
            background_at_start: 0.0,
            run_dir: std::path::PathBuf::new(),
        }
    }

    #[test]
    fn sparse_table_shows_added_latency_over_direct_and_back_to_back() {
        let results = [
            measured("direct", 14, Some((200, 400))),
            measured("nginx", 256, Some((640, 1_900))),
            measured("switchyard", 274, Some((1_250, 2_600))),
        ];
        let mut md = String::new();
        sparse(&mut md, 20, &results);
        assert!(md.starts_with("## Sparse requests (one every 20 ms, c=1)\n"), "{md}");
        assert!(md.contains("LLM traffic is sparse"), "{md}");
        assert!(md.contains("| direct | 480 | 200 / 400 | 0 (baseline) | 0 (baseline) |"), "{md}");
        assert!(md.contains("| nginx | 480 | 640 / 1,900 | +440 / +1,500 | +242 |"), "{md}");
        assert!(md.contains("| switchyard | 480 | 1,250 / 2,600 | +1,050 / +2,200 | +260 |"), "{md}");
        // The whole report carries the section only when the cell ran.
        assert!(markdown(&meta(Some(20)), &results).contains("## Sparse requests"));
        assert!(!markdown(&meta(None), &results).contains("## Sparse requests"));
    }

    #[test]
    fn sparse_budget_row_is_informational() {
        let results = [
            measured("direct", 14, Some((200, 400))),
            measured("nginx", 256, Some((640, 1_900))),
            measured("switchyard", 274, Some((1_250, 2_600))),
        ];
        let mut md = String::new();
        design_targets(&mut md, &meta(Some(20)), &results);
        let row = md.lines().find(|l| l.starts_with("| sparse c=1: added p50 over nginx |")).expect("row");
        assert_eq!(
            row,
            "| sparse c=1: added p50 over nginx | +610 µs (switchyard 1,250 − nginx 640); back to back at c=1: \
             +18 µs; informational, not a DESIGN.md budget | – |"
        );
        let mut md = String::new();
        design_targets(&mut md, &meta(Some(20)), &results[..2]);
        assert!(
            md.contains("| sparse c=1: added p50 over nginx | not evaluated: switchyard not measured | – |")
        );
        let no_sparse = results.map(|r| TargetResult { sparse: None, ..r });
        let mut md = String::new();
        design_targets(&mut md, &meta(None), &no_sparse);
        assert!(md.contains("| sparse c=1: added p50 over nginx | not evaluated: sparse cell not run"));
    }

    #[test]
    fn smoke_fails_on_a_failing_sparse_cell() {
        let mut r = measured("switchyard", 274, Some((1_250, 2_600)));
        assert!(smoke_problems(std::slice::from_ref(&r)).is_empty());
        if let Some(c) = r.sparse.as_mut() {
            c.load.socket_errors = 2;
        }
        assert_eq!(
            smoke_problems(&[r]),
            vec!["switchyard: json sparse c=1: 480 requests, 0 non-2xx, 2 socket errors"]
        );
    }

    #[test]
    fn smoke_fails_on_unmeasured_targets() {
        let r = TargetResult::new(
            "switchyard",
            String::new(),
            String::new(),
            Status::NotMeasured("binary not built".to_owned()),
        );
        assert_eq!(smoke_problems(&[r]), vec!["switchyard: not measured: binary not built"]);
    }

    fn held_cell(ok: u64, errors: u64, idle_mib: u64, peak_mib: u64) -> HeldCell {
        use crate::bench::load::StreamLoad;
        use crate::bench::procs::GroupMem;
        let mem =
            |mib: u64, fds: u64| GroupMem { rss_kb: mib * 1024, pss_kb: 0, processes: 1, fds: Some(fds) };
        HeldCell {
            streams: 2000,
            idle: Some(mem(idle_mib, 12)),
            load: Some(StreamLoad { ok, errors, ..StreamLoad::default() }),
            sys: Some(CellSys { peak: Some(mem(peak_mib, 4012)), ..CellSys::default() }),
            upstream: Some(ok),
            nofile: Some(20_000),
            problem: None,
        }
    }

    #[test]
    fn held_table_shows_memory_per_stream_and_fds() {
        assert_eq!(
            held_row("switchyard", &held_cell(2000, 0, 16, 162)),
            "| switchyard | 2,000 of 2,000 | 0 | 16 → 162 | 0.073 | 4,012 |  |"
        );
        let mut c = held_cell(1500, 500, 90, 400);
        c.nofile = Some(1024);
        c.problem = Some("it exited during the held streams (signal: 9)".to_owned());
        assert_eq!(
            held_row("litellm", &c),
            "| litellm | 1,500 of 2,000 | 500 | 90 → 400 | 0.155 | 4,012 | it exited during the held streams \
             (signal: 9); ⚠ open-files limit 1,024 is below 2 per stream |"
        );
        let failed =
            HeldCell { streams: 2000, problem: Some("no 200 within 60 s".to_owned()), ..HeldCell::default() };
        assert_eq!(held_row("portkey", &failed), "| portkey | – | – | – | – | – | no 200 within 60 s |");
        let mut results = [measured("direct", 14, None), measured("switchyard", 274, None)];
        results[1].held = Some(held_cell(2000, 0, 16, 162));
        let mut m = meta(None);
        m.held = Some(HeldSpec::FULL);
        let md = markdown(&m, &results);
        assert!(md.contains("## Held streams (2,000 concurrent, 20 s streams)\n"), "{md}");
        assert!(!md.contains("| direct | – |"), "direct has no held cell: {md}");
        assert!(md.contains("| switchyard | held 2,000 streams |"), "honesty row: {md}");
        assert!(!markdown(&meta(None), &results).contains("## Held streams"));
    }

    #[test]
    fn held_budget_row_needs_every_stream_and_the_full_count() {
        let row = |m: &Meta, c: Option<HeldCell>| {
            let mut sy = measured("switchyard", 274, None);
            sy.held = c;
            let mut md = String::new();
            design_targets(&mut md, m, &[sy]);
            md.lines()
                .find(|l| l.starts_with("| memory: ≤ 200 MiB with 2,000 open streams |"))
                .expect("row")
                .to_owned()
        };
        let mut full = meta(None);
        full.held = Some(HeldSpec::FULL);
        assert_eq!(
            row(&full, Some(held_cell(2000, 0, 16, 162))),
            "| memory: ≤ 200 MiB with 2,000 open streams | 162 MiB (peak, sampled every 250 ms; 2,000 of 2,000 \
             streams ok) | ✅ met |"
        );
        assert!(row(&full, Some(held_cell(2000, 0, 16, 230))).ends_with("| ❌ missed |"));
        assert_eq!(
            row(&full, Some(held_cell(1900, 100, 16, 150))),
            "| memory: ≤ 200 MiB with 2,000 open streams | 150 MiB (peak, sampled every 250 ms; 1,900 of 2,000 \
             streams ok, 100 failed) | ❌ missed |"
        );
        let mut smoke = meta(None);
        smoke.held = Some(HeldSpec::SMOKE);
        assert!(
            row(&smoke, Some(held_cell(50, 0, 16, 20)))
                .contains("not evaluated: the held-streams cell ran with 50")
        );
        assert!(row(&meta(None), None).contains("not evaluated: held-streams cell not run (--no-held)"));
    }

    /// A measured Switchyard run for "Cost of observability": c=1 latencies, c=64 throughput and
    /// CPU (`cpu_us` per request), streaming TTFB at c=1, memory, and what it wrote.
    fn telemetry_run(name: &'static str, c1: (u64, u64), rps: f64, cpu_us: u64, ttfb: u64) -> TargetResult {
        use crate::bench::load::StreamLoad;
        use crate::bench::procs::GroupMem;
        let mem = |mib: u64| GroupMem { rss_kb: mib * 1024, pss_kb: 0, processes: 1, fds: None };
        let requests = (rps * 10.0) as u64;
        let c64 = JsonCell {
            conc: 64,
            load: JsonLoad { requests, rps, latency: Latency::default(), ..JsonLoad::default() },
            sys: CellSys {
                gw_cpu_s: Some((requests * cpu_us) as f64 / 1e6),
                core_busy: vec![0.4, 1.0],
                peak: Some(mem(20)),
                ..CellSys::default()
            },
            upstream: Some(requests),
        };
        let stream = StreamCell {
            conc: 1,
            load: StreamLoad {
                ok: 100,
                ttfb: Latency { p50: ttfb, ..Latency::default() },
                ..StreamLoad::default()
            },
            sys: CellSys::default(),
            upstream: Some(100),
        };
        TargetResult {
            json: vec![cell(1, c1.0, c1.1), c64],
            stream: vec![stream],
            idle: Some(mem(12)),
            served: Some(100_000),
            log_bytes: Some(2_000),
            ..TargetResult::new(name, String::new(), String::new(), Status::Measured)
        }
    }

    fn telemetry_meta() -> Meta {
        Meta { conc: vec![1, 64], stream_conc: vec![1], ..meta(None) }
    }

    fn telemetry_runs(traced_c1: (u64, u64), exports: u64) -> Vec<TargetResult> {
        use crate::bench::OtlpReceived;
        let mut traced = telemetry_run("switchyard-traced", traced_c1, 30_000.0, 33, 330);
        traced.log_bytes = Some(31_000_000);
        traced.otlp = Some(OtlpReceived { exports, bytes: 52_428_800, sink_cpu_s: 1.5 });
        vec![
            measured("direct", 14, None),
            measured("nginx", 120, None),
            telemetry_run("switchyard", (242, 410), 40_000.0, 25, 300),
            telemetry_run("switchyard-bare", (238, 400), 41_000.0, 24, 290),
            traced,
            measured("litellm", 9_000, None),
        ]
    }

    fn section(md: &str) -> &str {
        let start = md.find("## Cost of observability\n").expect("the section");
        let end = md[start + 3..].find("\n## ").map_or(md.len(), |i| start + 3 + i);
        &md[start..end]
    }

    #[test]
    fn observability_section_compares_the_variants_and_holds_traced_minus_bare_to_the_budget() {
        let md = markdown(&telemetry_meta(), &telemetry_runs((262, 520), 120));
        let s = section(&md);
        assert!(s.contains("**The observability cost must itself fit in the budget:**"), "{s}");
        assert!(
            s.contains(
                "| switchyard-bare | none | 238 / 400 | 41,000 | 24 | 290 | 12 → 20 | logs 0 B |\n\
                 | switchyard | metrics; request logs filtered out (RUST_LOG=warn) | 242 / 410 | 40,000 | 25 | 300 | \
                 12 → 20 | logs 0 B |\n\
                 | switchyard-traced | metrics; request logs at info, to a file; every trace exported (OTLP/HTTP) | \
                 262 / 520 | 30,000 | 33 | 330 | 12 → 20 | logs 310 B, spans 524 B (120 exports) |\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("| non-streaming c=1: added p50 ≤ 50 µs | +24 µs (traced 262 − bare 238) | ✅ met |"),
            "{s}"
        );
        assert!(
            s.contains(
                "| non-streaming c=1: added p99 ≤ 150 µs | +120 µs (traced 520 − bare 400) | ✅ met |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| streaming c=1: time to first byte added ≤ 100 µs (p50) | +40 µs (traced 330 − bare 290) | ✅ met |"),
            "{s}"
        );
        assert!(
            s.contains("| as shipped (switchyard − bare), non-streaming c=1 p50 / p99 | +4 / +10 µs;"),
            "{s}"
        );
        assert!(
            s.contains("120 exports, 50 MiB (524 bytes per completion over 100,000 completions); the sink used 1.50 s"),
            "{s}"
        );
        // A miss is a miss.
        let md = markdown(&telemetry_meta(), &telemetry_runs((300, 600), 120));
        let s = section(&md);
        assert!(
            s.contains(
                "| non-streaming c=1: added p50 ≤ 50 µs | +62 µs (traced 300 − bare 238) | ❌ missed |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| non-streaming c=1: added p99 ≤ 150 µs | +200 µs (traced 600 − bare 400) | ❌ missed |"
            ),
            "{s}"
        );
    }

    #[test]
    fn observability_is_not_proven_when_no_span_was_exported() {
        let md = markdown(&telemetry_meta(), &telemetry_runs((262, 520), 0));
        let s = section(&md);
        assert!(s.contains("⚠ **No span reached the sink**"), "{s}");
        assert!(s.contains("| +24 µs (traced 262 − bare 238) | ⚠ not proven: no span was exported |"), "{s}");
        // Without the spans' cost, over the budget is still over it.
        let md = markdown(&telemetry_meta(), &telemetry_runs((300, 520), 0));
        assert!(section(&md).contains("| +62 µs (traced 300 − bare 238) | ❌ missed |"));
    }

    #[test]
    fn observability_section_flags_load_bound_and_noisy_cells() {
        let mut runs = telemetry_runs((262, 520), 120);
        runs[4].json[1].sys.core_busy = vec![1.0, 0.7];
        runs[4].json[0].sys.foreign_cores = 0.3;
        let md = markdown(&telemetry_meta(), &runs);
        let s = section(&md);
        assert!(s.contains("| 262 / 520 ⚠ bg 0.30 cores | 30,000 (load-bound) | 33 |"), "{s}");
        assert!(s.contains("| +24 µs (traced 262 − bare 238); ⚠ bg 0.30 cores | ✅ met |"), "{s}");
        assert!(md.contains("| switchyard-traced | json c=64 | 1.00 | 0.70 | 0.00 | load-bound |"), "{md}");
    }

    #[test]
    fn observability_section_needs_both_ends_and_only_appears_with_a_variant() {
        let mut runs = telemetry_runs((262, 520), 120);
        runs[3].status = Status::Failed("no 200 within 30 s".to_owned());
        let md = markdown(&telemetry_meta(), &runs);
        let s = section(&md);
        assert!(s.contains("| switchyard-bare | none | failed: no 200 within 30 s |"), "{s}");
        assert!(
            s.contains("| non-streaming c=1: added p50 ≤ 50 µs, p99 ≤ 150 µs | not evaluated: switchyard-bare not measured in this run | – |"),
            "{s}"
        );
        assert!(!s.contains("as shipped (switchyard − bare)"), "{s}");
        let only_traced: Vec<TargetResult> =
            telemetry_runs((262, 520), 120).into_iter().filter(|r| r.name != "switchyard-bare").collect();
        let s = markdown(&telemetry_meta(), &only_traced);
        assert!(section(&s).contains("| switchyard-bare | none | not in this run |"));
        let no_variant: Vec<TargetResult> = telemetry_runs((262, 520), 120)
            .into_iter()
            .filter(|r| !r.name.starts_with("switchyard-"))
            .collect();
        assert!(!markdown(&telemetry_meta(), &no_variant).contains("## Cost of observability"));
    }

    #[test]
    fn telemetry_variants_stay_out_of_the_peers_table_and_the_budget_table() {
        let runs = telemetry_runs((262, 520), 120);
        let mut md = String::new();
        relative(&mut md, &telemetry_meta(), &runs);
        assert!(md.contains("| litellm |"), "{md}");
        assert!(!md.contains("switchyard-"), "{md}");
        let mut md = String::new();
        design_targets(&mut md, &telemetry_meta(), &runs);
        assert!(md.contains("(switchyard 242 − nginx 120)"), "{md}");
        assert!(!md.contains("switchyard-") && !md.contains("traced"), "{md}");
    }

    /// A Switchyard run for "Cross-dialect translation": [`telemetry_run`] with a full stream
    /// of `total_ms` (p50, p99) and `events` SSE events per stream at c=1.
    fn dialect_run(
        name: &'static str,
        c1: (u64, u64),
        rps: f64,
        cpu_us: u64,
        ttfb: u64,
        total_us: (u64, u64),
        events: f64,
    ) -> TargetResult {
        let mut r = telemetry_run(name, c1, rps, cpu_us, ttfb);
        let s = &mut r.stream[0].load;
        s.total = Latency { p50: total_us.0, p99: total_us.1, ..Latency::default() };
        s.events_per_stream = events;
        r
    }

    fn dialect_runs(cross_ttfb: u64) -> Vec<TargetResult> {
        vec![
            measured("direct", 14, None),
            dialect_run("nginx", (120, 300), 60_000.0, 10, 260, (103_000, 106_000), 23.0),
            dialect_run("switchyard", (242, 410), 40_000.0, 25, 300, (104_000, 109_000), 23.0),
            dialect_run(SWITCHYARD_ANTHROPIC, (270, 480), 36_000.0, 29, cross_ttfb, (104_400, 110_200), 24.0),
            measured("litellm", 9_000, None),
        ]
    }

    fn dialect_section(md: &str) -> &str {
        let start = md.find("## Cross-dialect translation\n").expect("the section");
        let end = md[start + 3..].find("\n## ").map_or(md.len(), |i| start + 3 + i);
        &md[start..end]
    }

    #[test]
    fn cross_dialect_section_shows_the_translation_cost_and_holds_ttfb_to_the_budget_over_nginx() {
        let md = markdown(&telemetry_meta(), &dialect_runs(340));
        let s = dialect_section(&md);
        assert!(
            s.contains(
                "| target | upstream dialect | p50 / p99 µs c=1 | req/s c=64 | CPU µs/req c=64 | TTFB p50 µs c=1 | \
                 full stream p50 / p99 ms c=1 | SSE events / stream c=1 |\n"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| switchyard | OpenAI Chat Completions (no translation) | 242 / 410 | 40,000 | 25 | 300 | \
                 104.0 / 109.0 | 23.0 |\n\
                 | switchyard-anthropic | Anthropic Messages (request and answer translated) | 270 / 480 | 36,000 | \
                 29 | 340 | 104.4 / 110.2 | 24.0 |\n\
                 | **translation** (switchyard-anthropic − switchyard) | OpenAI → Anthropic Messages → OpenAI | \
                 +28 / +70 | -4,000 (-10.0%) | +4 | +40 | +400 / +1,200 µs | +1.0 |\n"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| streaming c=1: time to first byte within 100 µs of nginx (p50) | +80 µs (switchyard-anthropic \
                 340 − nginx 260); translation +40 µs of it (over switchyard 300) | ✅ met |"
            ),
            "{s}"
        );
        // Between "Cost of observability" (when it runs) and the per-cell tables.
        let at = |h: &str| md.find(h).expect(h);
        assert!(
            at("## Against the design budget") < at("## Cross-dialect")
                && at("## Cross-dialect") < at("## Non-streaming")
        );
        // A miss is a miss.
        let md = markdown(&telemetry_meta(), &dialect_runs(400));
        assert!(
            dialect_section(&md).contains(
                "| +140 µs (switchyard-anthropic 400 − nginx 260); translation +100 µs of it (over switchyard 300) \
                 | ❌ missed |"
            ),
            "{md}"
        );
    }

    #[test]
    fn cross_dialect_section_needs_both_runs_and_nginx_and_only_appears_with_the_variant() {
        let without = |name: &str| -> Vec<TargetResult> {
            dialect_runs(340).into_iter().filter(|r| r.name != name).collect()
        };
        let md = markdown(&telemetry_meta(), &without("nginx"));
        let s = dialect_section(&md);
        assert!(
            s.contains("| **translation** (switchyard-anthropic − switchyard) | OpenAI → Anthropic"),
            "{s}"
        );
        assert!(
            s.contains(
                "| streaming c=1: time to first byte within 100 µs of nginx (p50) | not evaluated: nginx not \
                 measured in this run | – |"
            ),
            "{s}"
        );
        let md = markdown(&telemetry_meta(), &without("switchyard"));
        let s = dialect_section(&md);
        assert!(
            s.contains("| switchyard | OpenAI Chat Completions (no translation) | not in this run |"),
            "{s}"
        );
        assert!(s.contains("| not evaluated: switchyard not measured in this run |"), "{s}");
        assert!(s.contains("| ✅ met |"), "the budget is over nginx, not over switchyard: {s}");
        let mut runs = dialect_runs(340);
        runs[3].status = Status::Failed("no 200 within 30 s".to_owned());
        let md = markdown(&telemetry_meta(), &runs);
        let s = dialect_section(&md);
        assert!(
            s.contains(
                "| switchyard-anthropic | Anthropic Messages (request and answer translated) | failed: no 200 \
                 within 30 s |"
            ),
            "{s}"
        );
        assert!(s.contains("| not evaluated: switchyard-anthropic not measured in this run |\n"), "{s}");
        assert!(
            s.contains("(p50) | not evaluated: switchyard-anthropic not measured in this run | – |"),
            "{s}"
        );
        assert!(!markdown(&telemetry_meta(), &without(SWITCHYARD_ANTHROPIC)).contains("## Cross-dialect"));
    }

    #[test]
    fn cross_dialect_variant_stays_out_of_the_peers_table_and_the_budget_table() {
        let runs = dialect_runs(340);
        let mut md = String::new();
        relative(&mut md, &telemetry_meta(), &runs);
        assert!(md.contains("| litellm |") && md.contains("| nginx |"), "{md}");
        assert!(!md.contains("anthropic"), "{md}");
        let mut md = String::new();
        design_targets(&mut md, &telemetry_meta(), &runs);
        assert!(md.contains("(switchyard 300 − nginx 260)"), "{md}");
        assert!(!md.contains("anthropic"), "{md}");
    }

    #[test]
    fn smoke_fails_on_a_failing_held_cell() {
        let mut r = measured("switchyard", 274, None);
        r.held = Some(held_cell(2000, 0, 16, 162));
        assert!(smoke_problems(std::slice::from_ref(&r)).is_empty());
        r.held = Some(held_cell(1990, 10, 16, 162));
        assert_eq!(smoke_problems(&[r]), vec!["switchyard: held streams: 1990 of 2000 ok, 10 failed"]);
    }
}
