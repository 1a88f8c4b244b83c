//! `switchyard-sse-probe`: a closed-loop load client for chat completions, streaming or not.
//!
//! It opens `--concurrency` keep-alive HTTP/1.1 connections to a loopback URL and on each sends
//! requests back to back for `--duration` seconds, after `--warmup` seconds that are not
//! recorded. With `--interval-ms N` (default 0: back to back) each connection instead waits N ms
//! after a request completes before it sends the next one, so that the server idles between
//! requests the way it does under sparse, real-world LLM traffic; the wait is not part of any
//! measured latency. For every request it records the time to the response headers, to the first body
//! byte (for a stream: the first SSE event) and to the end of the body. A stream counts as
//! successful only when it ends with `data: [DONE]`; its events are decoded with
//! [`switchyard_types::sse::SseDecoder`], so the probe sees what a client would see.
//!
//! It prints one JSON object on stdout: counts, requests (or streams) per second, SSE events
//! per stream, and mean/p50/p90/p99/max of each timing in microseconds.
//!
//! `cargo xtask bench` uses it for the streaming cells, and for the non-streaming cells when
//! `wrk` is not installed (`--mode json`). It only talks to 127.0.0.0/8 or localhost: it is a
//! load generator, and every loop in it is bounded in time.
//!
//! ```text
//! switchyard-sse-probe --url http://127.0.0.1:18110/v1/chat/completions -c 16 --duration 10
//! switchyard-sse-probe --url http://127.0.0.1:18110/v1/chat/completions --mode json --interval-ms 20
//! ```

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard_types::sse::{SseDecoder, SseEvent};
use tokio::net::TcpStream;

const DEFAULT_STREAM_BODY: &str = concat!(
    r#"{"model":"mock-gpt","stream":true,"stream_options":{"include_usage":true},"#,
    r#""messages":[{"role":"system","content":"You are a helpful assistant."},"#,
    r#"{"role":"user","content":"Say something about gateways."}]}"#
);
const DEFAULT_JSON_BODY: &str = concat!(
    r#"{"model":"mock-gpt","messages":[{"role":"system","content":"You are a helpful assistant."},"#,
    r#"{"role":"user","content":"Say something about gateways."}]}"#
);

/// What kind of response the probe expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Server-sent events that end with `data: [DONE]`.
    Stream,
    /// A complete (JSON) body.
    Json,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard-sse-probe",
    version,
    about = "Closed-loop load probe for chat completions (loopback only)",
    long_about = "Closed-loop load probe for chat completions (loopback only). Each of --concurrency \
                  keep-alive connections sends one request at a time, back to back, or with \
                  --interval-ms N waits N ms after each response before the next request (sparse \
                  traffic; the wait is not measured). Prints one JSON object of counts and timings \
                  in microseconds."
)]
struct Args {
    /// Target URL, `http://127.0.0.1:PORT/path` (loopback only).
    #[arg(long)]
    url: String,
    /// Number of connections, each sending one request at a time.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds of recorded load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before recording starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Request body; defaults to a small chat completion of model `mock-gpt`.
    #[arg(long)]
    body: Option<String>,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Expected response kind.
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    mode: Mode,
    /// Seconds after which one request counts as failed.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Milliseconds each connection waits after a request completes before sending the next
    /// (not part of the measured latency); 0 sends back to back (closed loop). At most 60000.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
}

/// Longest `--interval-ms`.
const MAX_INTERVAL_MS: u64 = 60_000;

/// Where and what to send, shared by every connection.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    path: String,
    body: Bytes,
    headers: Vec<(String, String)>,
    mode: Mode,
    timeout: Duration,
    /// Pause after each request on a connection (zero: back to back).
    interval: Duration,
}

/// Measurements of one connection, merged at the end.
#[derive(Debug, Default)]
struct Samples {
    headers_us: Vec<u64>,
    ttfb_us: Vec<u64>,
    total_us: Vec<u64>,
    events: u64,
    usage_streams: u64,
    ok: u64,
    errors: u64,
    timeouts: u64,
    bad_status: u64,
    no_done: u64,
}

// === impl Samples ===

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.headers_us.extend(other.headers_us);
        self.ttfb_us.extend(other.ttfb_us);
        self.total_us.extend(other.total_us);
        self.events += other.events;
        self.usage_streams += other.usage_streams;
        self.ok += other.ok;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.bad_status += other.bad_status;
        self.no_done += other.no_done;
    }
}

/// How one request ended.
enum Outcome {
    Ok {
        headers: Duration,
        first_byte: Duration,
        total: Duration,
        events: u64,
        usage: bool,
    },
    BadStatus,
    NoDone,
    /// The connection failed; it must be replaced.
    Broken,
}

fn parse_target(args: &Args) -> Result<Target, String> {
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must start with http:// (got {})", args.url))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("--url needs an explicit port (got {})", args.url))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in --url: {port}"))?;
    // Loopback only: this is a load generator.
    let host = match host {
        "localhost" => "127.0.0.1".to_owned(),
        h if h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()) => h.to_owned(),
        h => return Err(format!("refusing non-loopback host {h}: the probe only targets 127.0.0.0/8")),
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| format!("header must be 'Name: value' (got {h})"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let body = match (&args.body, args.mode) {
        (Some(b), _) => b.clone(),
        (None, Mode::Stream) => DEFAULT_STREAM_BODY.to_owned(),
        (None, Mode::Json) => DEFAULT_JSON_BODY.to_owned(),
    };
    if !(args.duration > 0.0 && args.duration <= 3600.0 && (0.0..=600.0).contains(&args.warmup)) {
        return Err("--duration must be in (0, 3600] and --warmup in [0, 600] seconds".to_owned());
    }
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err("--timeout must be in (0, 600] seconds".to_owned());
    }
    if args.interval_ms > MAX_INTERVAL_MS {
        return Err(format!("--interval-ms must be in [0, {MAX_INTERVAL_MS}]"));
    }
    Ok(Target {
        host,
        port,
        path,
        body: Bytes::from(body),
        headers,
        mode: args.mode,
        timeout: Duration::from_secs_f64(args.timeout),
        interval: Duration::from_millis(args.interval_ms),
    })
}

async fn connect(t: &Target) -> Option<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect((t.host.as_str(), t.port)).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the peer closes; either is fine.
        let _ = conn.await;
    });
    Some(sender)
}

async fn one_request(t: &Target, sender: &mut http1::SendRequest<Full<Bytes>>) -> Outcome {
    let accept = if t.mode == Mode::Stream { "text/event-stream" } else { "application/json" };
    let mut builder = Request::post(t.path.as_str())
        .header("host", format!("{}:{}", t.host, t.port))
        .header("content-type", "application/json")
        .header("accept", accept);
    for (k, v) in &t.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let Ok(req) = builder.body(Full::new(t.body.clone())) else {
        return Outcome::Broken;
    };
    let t0 = Instant::now();
    let Ok(resp) = sender.send_request(req).await else {
        return Outcome::Broken;
    };
    let headers = t0.elapsed();
    let ok_status = resp.status().is_success();
    let mut body = resp.into_body();
    let mut first_byte = None;
    let mut decoder = SseDecoder::new();
    let mut events: Vec<SseEvent> = Vec::new();
    let (mut n_events, mut last_data, mut prev_data) = (0u64, String::new(), String::new());
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Outcome::Broken;
        };
        let Some(data) = frame.data_ref() else { continue };
        if data.is_empty() {
            continue;
        }
        first_byte.get_or_insert_with(|| t0.elapsed());
        if t.mode == Mode::Stream {
            decoder.feed(data, &mut events);
            for ev in events.drain(..) {
                n_events += 1;
                prev_data = std::mem::replace(&mut last_data, ev.data);
            }
        }
    }
    let total = t0.elapsed();
    if !ok_status {
        return Outcome::BadStatus;
    }
    let mut usage = false;
    if t.mode == Mode::Stream {
        decoder.finish();
        if last_data.trim() != "[DONE]" {
            return Outcome::NoDone;
        }
        // The usage chunk (stream_options.include_usage) is the last one before [DONE].
        usage = serde_json::from_str::<serde_json::Value>(&prev_data)
            .ok()
            .and_then(|v| v.get("usage")?.get("total_tokens")?.as_u64())
            .is_some();
    }
    Outcome::Ok { headers, first_byte: first_byte.unwrap_or(total), total, events: n_events, usage }
}

async fn worker(t: std::sync::Arc<Target>, record_from: Instant, stop_at: Instant) -> Samples {
    let mut s = Samples::default();
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    while Instant::now() < stop_at {
        let conn = match sender.as_mut() {
            Some(c) if !c.is_closed() => c,
            _ => match connect(&t).await {
                Some(c) => sender.insert(c),
                None => {
                    if Instant::now() >= record_from {
                        s.errors += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if conn.ready().await.is_err() {
            sender = None;
            continue;
        }
        let record = Instant::now() >= record_from;
        let outcome = tokio::time::timeout(t.timeout, one_request(&t, conn)).await;
        // The pause between requests (--interval-ms) starts when a request has completed; it is
        // outside every measured span, and never runs past the end of the load.
        let pause = pause_after(t.interval, Instant::now(), stop_at);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(_) => {
                if record {
                    s.timeouts += 1;
                }
                sender = None;
                continue;
            }
        };
        if !record {
            if matches!(outcome, Outcome::Broken) {
                sender = None;
            }
            continue;
        }
        match outcome {
            Outcome::Ok { headers, first_byte, total, events, usage } => {
                s.ok += 1;
                s.events += events;
                s.usage_streams += u64::from(usage);
                s.headers_us.push(micros(headers));
                s.ttfb_us.push(micros(first_byte));
                s.total_us.push(micros(total));
            }
            Outcome::BadStatus => s.bad_status += 1,
            Outcome::NoDone => s.no_done += 1,
            Outcome::Broken => {
                s.errors += 1;
                sender = None;
            }
        }
    }
    s
}

/// How long a connection waits after a request that completed at `now`: `interval`, cut short
/// at `stop_at`.
fn pause_after(interval: Duration, now: Instant, stop_at: Instant) -> Duration {
    interval.min(stop_at.saturating_duration_since(now))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(v: &mut [u64]) -> serde_json::Value {
    v.sort_unstable();
    let mean = if v.is_empty() { 0 } else { v.iter().sum::<u64>() / v.len() as u64 };
    serde_json::json!({
        "mean": mean,
        "p50": percentile(v, 50.0),
        "p90": percentile(v, 90.0),
        "p99": percentile(v, 99.0),
        "max": v.last().copied().unwrap_or(0),
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = match parse_target(&args) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "switchyard-sse-probe: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "switchyard-sse-probe: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let concurrency = args.concurrency.clamp(1, 10_000);
    let mode = target.mode;
    let target = std::sync::Arc::new(target);
    let (mut all, span) = runtime.block_on(async {
        let start = Instant::now();
        let record_from = start + Duration::from_secs_f64(args.warmup);
        let stop_at = record_from + Duration::from_secs_f64(args.duration);
        let handles: Vec<_> =
            (0..concurrency).map(|_| tokio::spawn(worker(target.clone(), record_from, stop_at))).collect();
        let mut all = Samples::default();
        for h in handles {
            match h.await {
                Ok(s) => all.merge(s),
                Err(_) => all.errors += 1,
            }
        }
        // Requests in flight at stop_at finish and are counted: divide by the real span.
        (all, Instant::now().saturating_duration_since(record_from).as_secs_f64().max(1e-9))
    });
    let per_s = all.ok as f64 / span;
    let events_per = if all.ok == 0 { 0.0 } else { all.events as f64 / all.ok as f64 };
    let out = serde_json::json!({
        "mode": if mode == Mode::Stream { "stream" } else { "json" },
        "concurrency": concurrency,
        "interval_ms": args.interval_ms,
        "duration_s": (span * 1000.0).round() / 1000.0,
        "ok": all.ok,
        "errors": all.errors,
        "timeouts": all.timeouts,
        "bad_status": all.bad_status,
        "no_done": all.no_done,
        "per_s": (per_s * 100.0).round() / 100.0,
        "events_per_stream": (events_per * 100.0).round() / 100.0,
        "usage_streams": all.usage_streams,
        "headers_us": summary(&mut all.headers_us),
        "ttfb_us": summary(&mut all.ttfb_us),
        "total_us": summary(&mut all.total_us),
    });
    if writeln!(std::io::stdout().lock(), "{out}").is_err() {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> Args {
        Args::parse_from(["probe", "--url", url])
    }

    #[test]
    fn accepts_only_loopback_urls() {
        let t = parse_target(&args("http://127.0.0.1:18110/v1/chat/completions")).expect("loopback is fine");
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 18110, "/v1/chat/completions"));
        assert_eq!(parse_target(&args("http://localhost:80/")).expect("localhost").host, "127.0.0.1");
        assert!(parse_target(&args("http://10.0.0.1:80/")).is_err());
        assert!(parse_target(&args("http://example.com:80/")).is_err());
        assert!(parse_target(&args("https://127.0.0.1:443/")).is_err());
    }

    #[test]
    fn interval_defaults_to_back_to_back_and_is_bounded() {
        let t = parse_target(&args("http://127.0.0.1:1/")).expect("valid");
        assert_eq!(t.interval, Duration::ZERO);
        let parse = |ms: &str| {
            parse_target(&Args::parse_from(["probe", "--url", "http://127.0.0.1:1/", "--interval-ms", ms]))
        };
        assert_eq!(parse("20").expect("valid").interval, Duration::from_millis(20));
        assert_eq!(parse("60000").expect("valid").interval, Duration::from_secs(60));
        assert!(parse("60001").is_err());
        assert!(
            Args::try_parse_from(["probe", "--url", "http://127.0.0.1:1/", "--interval-ms", "-1"]).is_err()
        );
    }

    #[test]
    fn pause_is_the_interval_cut_at_the_end_of_the_load() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(pause_after(ms(20), now, now + ms(1000)), ms(20));
        assert_eq!(pause_after(ms(20), now, now + ms(5)), ms(5));
        assert_eq!(pause_after(ms(20), now + ms(10), now), Duration::ZERO);
        assert_eq!(pause_after(Duration::ZERO, now, now + ms(1000)), Duration::ZERO);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50.0), percentile(&v, 99.0), percentile(&v, 100.0)), (50, 99, 100));
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 1.0), 7);
    }
}
