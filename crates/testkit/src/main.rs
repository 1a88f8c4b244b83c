//! `switchyard-mock`: the mock provider (OpenAI and Anthropic dialects) as a standalone server, the upstream of
//! `cargo xtask bench` (and its OTLP trace sink, `POST /v1/traces`).
//!
//! Thin on purpose: it builds the runtime, starts a [`MockServer`] with request recording off
//! (the mock shares a core with the load generator) and stops on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchyard_testkit::{MockConfig, MockServer};

/// A mock LLM provider with configurable latency, for benchmarks: OpenAI Chat Completions,
/// Embeddings and Models under `/v1`, Anthropic Messages under `/v1/messages`.
#[derive(Debug, Parser)]
#[command(name = "switchyard-mock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// Non-streaming answers: delay before answering, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Streaming answers: delay before the first chunk, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Streaming answers: delay between chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_ms: u64,
    /// Content chunks per stream (and completion tokens per answer).
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    /// Tokio worker threads; 1 runs everything on the main thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Require this key (`Authorization: Bearer` or `api-key`; `x-api-key` on Anthropic's paths).
    #[arg(long, env = "SWITCHYARD_MOCK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Close the connection after each streamed response, without `Connection: close`.
    #[arg(long)]
    close_after_stream: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread: a current-thread runtime, so accepting and serving never hop between threads.
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.threads))
            .enable_all()
            .build()
    };
    let result = runtime.and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&format!("switchyard-mock: {err}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let config = MockConfig {
        delay: Duration::from_millis(args.delay_ms),
        ttft: Duration::from_millis(args.ttft_ms),
        chunk_delay: Duration::from_millis(args.chunk_ms),
        chunks: args.chunks,
        close_after_stream: args.close_after_stream,
        api_key: args.api_key,
        record_requests: false,
        ..MockConfig::default()
    };
    let summary = format!(
        "delay {}ms, ttft {}ms, chunk {}ms, {} chunks, {} thread(s){}{}",
        args.delay_ms,
        args.ttft_ms,
        args.chunk_ms,
        args.chunks,
        args.threads,
        if config.api_key.is_some() { ", api key required" } else { "" },
        if config.close_after_stream { ", close after stream" } else { "" },
    );
    let server = MockServer::start_on(args.listen, config).await?;
    report(&format!("switchyard-mock listening on {} ({summary})", server.url()));
    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `kill` and the bench harness send).
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the binary's only output: one start line and fatal errors, no logger"
)]
fn report(line: &str) {
    eprintln!("{line}");
}
