//! `cargo xtask`: project automation in Rust, so it runs wherever cargo does.
//!
//! ```text
//! cargo xtask tidy                     # source hygiene checks (also run by `cargo test`)
//! cargo xtask ci [--skip STEP]...      # everything CI runs, in CI's order
//! cargo xtask bench [OPTIONS]          # side-by-side gateway benchmark -> docs/benchmarks.md
//! cargo xtask bench --smoke            # 2 targets, 1 s cells, prints the table (CI runs this)
//! ```
//!
//! Arguments are parsed by hand: xtask keeps few dependencies so that it builds in seconds.

// xtask is a command-line tool: what it prints is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod tidy;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  tidy                 check that every tracked .rs file opens with a `//!` line and that
                       non-test code has no dbg!/todo!
  ci [--skip STEP]...  run what CI runs: fmt, clippy, build, test, conformance, doc, deny, bench
  bench [options]      side-by-side benchmark on loopback; `cargo xtask bench --help` for options
  help                 this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "tidy" => tidy::run(rest),
        "ci" => ci::run(rest),
        "bench" => bench::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("cargo xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ncargo xtask {cmd}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
