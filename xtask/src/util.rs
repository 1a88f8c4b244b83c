//! Helpers shared by the xtask commands: where the workspace is, how to call cargo, and running
//! a child process with a time limit.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives in `<root>/xtask`).
pub(crate) fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo that runs us (cargo sets `$CARGO` for `cargo run`), else `cargo` from `PATH`.
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR` and config).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()
        .context("running `cargo metadata`")?;
    if !out.status.success() {
        bail!("`cargo metadata` failed ({})", out.status);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing the output of `cargo metadata`")?;
    let dir = meta
        .get("target_directory")
        .and_then(|v| v.as_str())
        .context("`cargo metadata` did not report a target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Whether `name` is an executable file somewhere on `PATH` (or `name` is a path to one).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// What a finished child printed.
#[derive(Debug)]
pub(crate) struct Captured {
    /// Exit code; `None` when killed by a signal or by our time limit.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) timed_out: bool,
}

// === impl Captured ===

impl Captured {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr and stdout, for an error message.
    pub(crate) fn tail(&self, max_chars: usize) -> String {
        let both = format!("{}\n{}", self.stderr.trim(), self.stdout.trim());
        let both = both.trim();
        let start = both.len().saturating_sub(max_chars);
        let start = (start..both.len()).find(|&i| both.is_char_boundary(i)).unwrap_or(both.len());
        both[start..].to_owned()
    }
}

/// Runs `cmd` to completion with stdout and stderr captured, killing it after `timeout`.
pub(crate) fn capture(cmd: &mut Command, timeout: Duration) -> Result<Captured> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {desc}"))?;
    let mut out_pipe = child.stdout.take().context("no stdout pipe")?;
    let mut err_pipe = child.stderr.take().context("no stderr pipe")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().with_context(|| format!("waiting for {desc}"))? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Captured {
        code: if timed_out { None } else { status.and_then(|s| s.code()) },
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
    })
}

/// Runs `cmd` with inherited stdio and returns whether it succeeded.
pub(crate) fn run_inherit(cmd: &mut Command) -> Result<bool> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    Ok(status.success())
}

/// A human-readable duration: `850 ms`, `12.3 s`, `2 min 05 s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}
