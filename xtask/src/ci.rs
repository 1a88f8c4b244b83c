//! `cargo xtask ci`: runs what CI runs, in CI's order, and says at the end what failed.
//!
//! Steps: `fmt`, `clippy`, `build`, `test`, `conformance` (the official Python SDKs against the
//! debug binaries, when `tests/conformance/requirements.txt` exists), `doc`, `deny`, and `bench`
//! (`cargo xtask bench --smoke`, so the benchmark cannot rot). Every step runs even when an
//! earlier one failed, so one run shows every problem; the exit status is non-zero if any
//! failed. `--skip STEP` (repeatable) leaves steps out. `CI=true` changes nothing but the
//! amount of context printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{capture, cargo, fmt_duration, repo_root, run_inherit, target_dir};

/// How a step ended.
#[derive(Debug)]
enum Outcome {
    Passed(Option<String>),
    Skipped(String),
    Failed(String),
}

type StepFn = fn() -> Result<Outcome>;

const STEPS: [(&str, &str, StepFn); 8] = [
    ("fmt", "cargo fmt --all -- --check", fmt),
    ("clippy", "cargo clippy --workspace --all-targets -- -D warnings", clippy),
    ("build", "cargo build --workspace --bins", build),
    ("test", "cargo test --workspace", test),
    ("conformance", "pytest tests/conformance (official SDKs against the debug binaries)", conformance),
    ("doc", "RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps", doc),
    ("deny", "cargo deny check (bans licenses sources; advisories when the database is reachable)", deny),
    ("bench", "cargo xtask bench --smoke", bench_smoke),
];

/// Entry point of `cargo xtask ci`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut skip: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--skip" => {
                let step = it.next().context("--skip needs a step name")?;
                for s in step.split(',').filter(|s| !s.is_empty()) {
                    if !STEPS.iter().any(|(name, ..)| *name == s) {
                        bail!("unknown step `{s}`; steps: {}", step_names());
                    }
                    skip.push(s.to_owned());
                }
            }
            "--help" | "-h" => {
                println!("usage: cargo xtask ci [--skip STEP]...\nsteps, in order: {}", step_names());
                return Ok(());
            }
            other => bail!("unknown argument `{other}`; usage: cargo xtask ci [--skip STEP]..."),
        }
    }
    let verbose = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if verbose {
        print_environment();
    }

    let total_start = Instant::now();
    let mut results: Vec<(&str, Outcome, Duration)> = Vec::new();
    for (i, (name, what, step)) in STEPS.iter().enumerate() {
        if skip.iter().any(|s| s == name) {
            results.push((name, Outcome::Skipped("--skip".to_owned()), Duration::ZERO));
            continue;
        }
        println!("\n=== [{}/{}] {name}: {what}", i + 1, STEPS.len());
        let start = Instant::now();
        let outcome = step().unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
        let took = start.elapsed();
        match &outcome {
            Outcome::Passed(note) => {
                println!("--- {name}: ok ({}){}", fmt_duration(took), note_suffix(note.as_deref()))
            }
            Outcome::Skipped(why) => println!("--- {name}: skipped — {why}"),
            Outcome::Failed(why) => println!("--- {name}: FAILED ({}) — {why}", fmt_duration(took)),
        }
        results.push((name, outcome, took));
    }

    println!("\n=== ci summary ({})", fmt_duration(total_start.elapsed()));
    let mut failed = Vec::new();
    for (name, outcome, took) in &results {
        let (status, detail) = match outcome {
            Outcome::Passed(note) => ("ok", note.clone().unwrap_or_default()),
            Outcome::Skipped(why) => ("skipped", why.clone()),
            Outcome::Failed(why) => {
                failed.push(*name);
                ("FAILED", why.clone())
            }
        };
        let took = if took.is_zero() { String::new() } else { fmt_duration(*took) };
        println!("  {name:<12} {status:<8} {took:>10}  {detail}");
    }
    if failed.is_empty() {
        println!("ci: all steps passed");
        Ok(())
    } else {
        bail!("{} step(s) failed: {}", failed.len(), failed.join(", "))
    }
}

fn step_names() -> String {
    STEPS.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", ")
}

fn note_suffix(note: Option<&str>) -> String {
    note.map(|n| format!(" — {n}")).unwrap_or_default()
}

fn print_environment() {
    println!("=== environment");
    for (label, prog, arg) in
        [("rustc", "rustc", "-V"), ("cargo", "cargo", "-V"), ("python3", "python3", "--version")]
    {
        let v = capture(Command::new(prog).arg(arg), Duration::from_secs(30))
            .map(|c| c.stdout.trim().to_owned() + c.stderr.trim())
            .unwrap_or_else(|e| format!("unavailable ({e:#})"));
        println!("  {label:<8} {v}");
    }
    println!("  nproc    {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
}

/// A cargo command in the workspace root.
fn cargo_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(cargo());
    c.args(args).current_dir(repo_root());
    c
}

fn status_outcome(ok: bool, what: &str) -> Outcome {
    if ok { Outcome::Passed(None) } else { Outcome::Failed(format!("{what} failed (output above)")) }
}

fn fmt() -> Result<Outcome> {
    let ok = run_inherit(&mut cargo_cmd(&["fmt", "--all", "--", "--check"]))?;
    Ok(if ok {
        Outcome::Passed(None)
    } else {
        Outcome::Failed("code is not formatted: run `cargo fmt --all`".to_owned())
    })
}

fn clippy() -> Result<Outcome> {
    let ok =
        run_inherit(&mut cargo_cmd(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    Ok(status_outcome(ok, "cargo clippy"))
}

fn build() -> Result<Outcome> {
    Ok(status_outcome(run_inherit(&mut cargo_cmd(&["build", "--workspace", "--bins"]))?, "cargo build"))
}

fn test() -> Result<Outcome> {
    Ok(status_outcome(run_inherit(&mut cargo_cmd(&["test", "--workspace"]))?, "cargo test"))
}

fn doc() -> Result<Outcome> {
    let mut cmd = cargo_cmd(&["doc", "--workspace", "--no-deps"]);
    cmd.env("RUSTDOCFLAGS", "-D warnings");
    Ok(status_outcome(run_inherit(&mut cmd)?, "cargo doc"))
}

fn conformance() -> Result<Outcome> {
    let root = repo_root();
    let requirements = root.join("tests/conformance/requirements.txt");
    if !requirements.is_file() {
        return Ok(Outcome::Skipped("no tests/conformance/requirements.txt".to_owned()));
    }
    let venv = std::env::var_os("SWITCHYARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home_dir().join(".cache/switchyard-venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        println!("creating a Python venv at {}", venv.display());
        let ok = run_inherit(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        if !ok {
            return Ok(Outcome::Failed(format!("`python3 -m venv {}` failed", venv.display())));
        }
    }
    println!("pip install -r tests/conformance/requirements.txt (venv {})", venv.display());
    let ok =
        run_inherit(Command::new(&python).args(["-m", "pip", "install", "-q", "-r"]).arg(&requirements))?;
    if !ok {
        return Ok(Outcome::Failed("pip install of tests/conformance/requirements.txt failed".to_owned()));
    }
    let debug = target_dir()?.join("debug");
    let (gateway, mock) = (debug.join("switchyard"), debug.join("switchyard-mock"));
    for bin in [&gateway, &mock] {
        if !bin.is_file() {
            return Ok(Outcome::Failed(format!(
                "{} is missing: the `build` step builds it (`cargo build --workspace --bins`)",
                bin.display()
            )));
        }
    }
    let status = Command::new(&python)
        .args(["-m", "pytest", "tests/conformance", "-q"])
        .current_dir(&root)
        .env("SWITCHYARD_BIN", &gateway)
        .env("SWITCHYARD_MOCK_BIN", &mock)
        .status()
        .context("starting pytest")?;
    Ok(match status.code() {
        Some(0) => Outcome::Passed(None),
        // pytest's "no tests collected": a conformance suite that runs nothing proves nothing.
        Some(5) => Outcome::Failed("pytest collected no tests in tests/conformance".to_owned()),
        _ => Outcome::Failed(format!("pytest failed ({status})")),
    })
}

pub(crate) fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn deny() -> Result<Outcome> {
    let root = repo_root();
    if !root.join("deny.toml").is_file() {
        return Ok(Outcome::Failed(
            "deny.toml is missing at the workspace root (cargo-deny's defaults reject every license)"
                .to_owned(),
        ));
    }
    let installed = capture(cargo_cmd(&["deny", "--version"]).current_dir(&root), Duration::from_secs(60))
        .is_ok_and(|c| c.success());
    if !installed {
        println!("cargo-deny is not installed: cargo install --locked cargo-deny");
        if !run_inherit(Command::new(cargo()).args(["install", "--locked", "cargo-deny"]))? {
            return Ok(Outcome::Failed("`cargo install --locked cargo-deny` failed".to_owned()));
        }
    }
    if !run_inherit(&mut cargo_cmd(&["deny", "check", "bans", "licenses", "sources"]))? {
        return Ok(Outcome::Failed(
            "cargo deny check bans licenses sources failed (output above)".to_owned(),
        ));
    }
    advisories()
}

/// `cargo deny check advisories` needs the RustSec database, fetched from GitHub. Where GitHub
/// cannot be reached and no copy is on disk, the check is skipped (and said so), not failed:
/// the other three checks need no network.
fn advisories() -> Result<Outcome> {
    println!("cargo deny check advisories");
    let run = capture(&mut cargo_cmd(&["deny", "check", "advisories"]), Duration::from_secs(300))?;
    print!("{}", run.stderr);
    print!("{}", run.stdout);
    if run.success() {
        return Ok(Outcome::Passed(None));
    }
    if !fetch_failed(&run.stderr) && !run.timed_out {
        return Ok(Outcome::Failed("cargo deny check advisories failed (output above)".to_owned()));
    }
    if let Some(db) = local_advisory_db() {
        println!("advisory database not refreshable; checking against the copy at {}", db.display());
        let ok = run_inherit(&mut cargo_cmd(&["deny", "check", "--disable-fetch", "advisories"]))?;
        return Ok(if ok {
            Outcome::Passed(Some(format!("advisories checked against the local copy at {}", db.display())))
        } else {
            Outcome::Failed("cargo deny check advisories failed (output above)".to_owned())
        });
    }
    let msg = "advisories: skipped — advisory database unreachable (no network to GitHub)";
    println!("{msg}");
    Ok(Outcome::Passed(Some(msg.to_owned())))
}

/// Whether cargo-deny's error output says it could not fetch the advisory database.
fn fetch_failed(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "failed to fetch",
        "unable to fetch",
        "failed to clone",
        "failed to open advisory database",
        "could not resolve",
        "failed to resolve",
        "network",
        "connect",
    ]
    .iter()
    .any(|p| s.contains(p))
}

/// A previously fetched advisory database under `$CARGO_HOME/advisory-dbs`, if any.
fn local_advisory_db() -> Option<PathBuf> {
    let cargo_home =
        std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home_dir().join(".cargo"));
    let dir = cargo_home.join("advisory-dbs");
    std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir() && has_entries(&p.join("crates")))
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

fn bench_smoke() -> Result<Outcome> {
    crate::bench::run(&["--smoke".to_owned()])?;
    Ok(Outcome::Passed(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_order_matches_ci() {
        assert_eq!(step_names(), "fmt, clippy, build, test, conformance, doc, deny, bench");
    }

    #[test]
    fn recognises_fetch_failures() {
        assert!(fetch_failed("error: failed to fetch advisory database: could not resolve host"));
        assert!(!fetch_failed("error[vulnerability]: Use-after-free in foo"));
    }

    #[test]
    fn unknown_skip_is_an_error() {
        let err = run(&["--skip".to_owned(), "nope".to_owned()]).expect_err("unknown step");
        assert!(format!("{err}").contains("unknown step `nope`"));
    }
}
