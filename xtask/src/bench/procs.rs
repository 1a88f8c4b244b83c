//! Child processes of the benchmark and what `/proc` says about them.
//!
//! Every long-running child (mock, gateway) starts pinned with `taskset` in a process group of
//! its own, so that its workers and threads can be measured and stopped together: SIGTERM to
//! the group, then SIGKILL to whatever is left after a grace period. [`Proc`] does that on
//! drop, so an error anywhere still cleans up. The group ids are also written to a pid file in
//! the target directory: an interrupted run (Ctrl-C kills xtask, not its children, which live
//! in their own groups) is cleaned up by the next one.
//!
//! Accounting reads `/proc/<pid>/stat` (utime, stime), `/proc/<pid>/smaps_rollup` (RSS, PSS)
//! and `/proc/stat` (per-core busy time).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::util::capture;

/// Environment variables that could send loopback traffic through a proxy.
const PROXY_VARS: [&str; 6] =
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"];

/// A pinned child in its own process group; stopped (with its whole group) on drop.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) pgid: u32,
    child: Child,
    pidfile: PathBuf,
}

// === impl Proc ===

impl Proc {
    /// Starts `argv` under `taskset -c cpus`, output appended to `log`, in a new process group.
    pub(crate) fn spawn(
        name: &str,
        argv: &[OsString],
        cpus: &str,
        env: &[(String, String)],
        cwd: Option<&Path>,
        log: &Path,
        pidfile: &Path,
    ) -> Result<Proc> {
        use std::os::unix::process::CommandExt as _;
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpus).args(argv).stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        cmd.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}: taskset -c {cpus} {argv:?}"))?;
        let pgid = child.id();
        record_pid(pidfile, pgid, name);
        Ok(Proc { name: name.to_owned(), pgid, child, pidfile: pidfile.to_path_buf() })
    }

    /// Whether the group leader still runs; `Some(status)` once it has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL to what is left.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() || !pids_in_group(self.pgid).is_empty() {
            if !signal_group(self.pgid, "TERM") {
                // No `kill` command: SIGKILL the leader, the one signal std can send.
                let _ = self.child.kill();
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                let leader_gone = self.exited().is_some();
                if leader_gone && pids_in_group(self.pgid).is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !pids_in_group(self.pgid).is_empty() {
                let _ = signal_group(self.pgid, "KILL");
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        forget_pid(&self.pidfile, self.pgid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Sends `sig` to process group `pgid`; false when the `kill` command could not be run.
fn signal_group(pgid: u32, sig: &str) -> bool {
    // `kill` from procps: a negative id addresses the process group.
    Command::new("kill")
        .args(["-s", sig, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn record_pid(pidfile: &Path, pgid: u32, name: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = File::options().create(true).append(true).open(pidfile) {
        let _ = writeln!(f, "{pgid} {name}");
    }
}

fn forget_pid(pidfile: &Path, pgid: u32) {
    let Ok(text) = std::fs::read_to_string(pidfile) else { return };
    let keep: Vec<&str> =
        text.lines().filter(|l| l.split_whitespace().next() != Some(pgid.to_string().as_str())).collect();
    let _ = if keep.is_empty() {
        std::fs::remove_file(pidfile)
    } else {
        std::fs::write(pidfile, keep.join("\n") + "\n")
    };
}

/// Stops process groups left behind by an interrupted earlier run (listed in `pidfile`).
/// A group is only signalled when its leader still runs from one of our own directories, so a
/// recycled pid of an unrelated process is left alone.
pub(crate) fn reap_stale(pidfile: &Path, ours: &[PathBuf]) {
    let Ok(text) = std::fs::read_to_string(pidfile) else { return };
    for line in text.lines() {
        let Some(Ok(pgid)) = line.split_whitespace().next().map(str::parse::<u32>) else { continue };
        let cmdline = std::fs::read(format!("/proc/{pgid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let is_ours = ours.iter().any(|dir| cmdline.contains(dir.to_string_lossy().as_ref()))
            || cmdline.contains("nginx: master process");
        if is_ours && !pids_in_group(pgid).is_empty() {
            eprintln!("bench: stopping process group {pgid} left by an earlier run ({})", line.trim());
            let _ = signal_group(pgid, "TERM");
            std::thread::sleep(Duration::from_millis(500));
            if !pids_in_group(pgid).is_empty() {
                let _ = signal_group(pgid, "KILL");
            }
        }
    }
    let _ = std::fs::remove_file(pidfile);
}

/// Pins the calling process (all its threads) to `cpus`.
pub(crate) fn pin_self(cpus: &str) -> Result<()> {
    let pid = std::process::id().to_string();
    let out = capture(Command::new("taskset").args(["-a", "-p", "-c", cpus, &pid]), Duration::from_secs(10))?;
    anyhow::ensure!(out.success(), "taskset -p -c {cpus} {pid} failed: {}", out.tail(300));
    Ok(())
}

/// The soft and hard `RLIMIT_NOFILE` of process `pid` (`self` for this one), from
/// `/proc/<pid>/limits`; `u64::MAX` stands for `unlimited`.
pub(crate) fn nofile_limits(pid: &str) -> Option<(u64, u64)> {
    parse_nofile(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

fn parse_nofile(limits: &str) -> Option<(u64, u64)> {
    let rest = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    let num = |s: &str| if s == "unlimited" { Some(u64::MAX) } else { s.parse().ok() };
    let mut f = rest.split_whitespace();
    Some((num(f.next()?)?, num(f.next()?)?))
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `needed` (up to the hard limit) with
/// `prlimit` (util-linux, like `taskset`; xtask has no libc binding): children started afterwards
/// inherit it. Returns the soft limit in force afterwards.
pub(crate) fn raise_nofile(needed: u64) -> Option<u64> {
    let (soft, hard) = nofile_limits("self")?;
    if soft >= needed {
        return Some(soft);
    }
    let new = needed.max(soft).min(hard);
    let hard_s = if hard == u64::MAX { "unlimited".to_owned() } else { hard.to_string() };
    let pid = std::process::id().to_string();
    let arg = format!("--nofile={new}:{hard_s}");
    match capture(Command::new("prlimit").args(["--pid", &pid, &arg]), Duration::from_secs(10)) {
        Ok(out) if out.success() => {}
        Ok(out) => eprintln!("bench: prlimit {arg} failed: {}", out.tail(200)),
        Err(e) => eprintln!("bench: prlimit {arg} failed: {e:#}"),
    }
    nofile_limits("self").map(|(soft, _)| soft)
}

/// Clock ticks per second of the `/proc` CPU counters.
pub(crate) fn clk_tck() -> f64 {
    capture(Command::new("getconf").arg("CLK_TCK"), Duration::from_secs(5))
        .ok()
        .and_then(|c| c.stdout.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy)]
struct Stat {
    pgrp: u32,
    session: u32,
    /// utime + stime, in clock ticks.
    ticks: u64,
}

fn read_stat(pid: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): pgrp is field 5, session 6, utime 14, stime 15.
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        pgrp: u32::try_from(num(2)?).ok()?,
        session: u32::try_from(num(3)?).ok()?,
        ticks: num(11)? + num(12)?,
    })
}

fn all_pids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids whose process group is `pgid`.
pub(crate) fn pids_in_group(pgid: u32) -> Vec<String> {
    all_pids().into_iter().filter(|p| read_stat(p).is_some_and(|s| s.pgrp == pgid)).collect()
}

/// CPU seconds (user + system) used so far by the live processes of group `pgid`.
pub(crate) fn group_cpu_seconds(pgid: u32, tck: f64) -> f64 {
    let ticks: u64 = pids_in_group(pgid).iter().filter_map(|p| read_stat(p)).map(|s| s.ticks).sum();
    ticks as f64 / tck
}

/// Memory of a process group: RSS and PSS summed over its processes, in KiB; and its open file
/// descriptors (`None` when a process's `/proc/<pid>/fd` could not be read).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupMem {
    pub(crate) rss_kb: u64,
    pub(crate) pss_kb: u64,
    pub(crate) processes: u64,
    pub(crate) fds: Option<u64>,
}

pub(crate) fn group_memory(pgid: u32) -> GroupMem {
    let mut m = GroupMem::default();
    for pid in pids_in_group(pgid) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        m.rss_kb += field("Rss:");
        m.pss_kb += field("Pss:");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count() as u64);
        m.fds = if m.processes == 0 { fds } else { m.fds.zip(fds).map(|(a, b)| a + b) };
        m.processes += 1;
    }
    m
}

/// Samples a group's memory (and open fds) every 250 ms on a thread until dropped; keeps the
/// peak of each figure.
#[derive(Debug)]
pub(crate) struct MemSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<GroupMem>>,
}

// === impl MemSampler ===

impl MemSampler {
    pub(crate) fn start(pgid: u32) -> MemSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = GroupMem::default();
            loop {
                let m = group_memory(pgid);
                peak.rss_kb = peak.rss_kb.max(m.rss_kb);
                peak.pss_kb = peak.pss_kb.max(m.pss_kb);
                peak.processes = peak.processes.max(m.processes);
                peak.fds = match (peak.fds, m.fds) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                // Sleep 250 ms in small steps so that finish() returns promptly.
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        });
        MemSampler { stop, thread: Some(thread) }
    }

    pub(crate) fn finish(mut self) -> GroupMem {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for MemSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Per-core (busy, total) jiffies from `/proc/stat`.
pub(crate) fn core_times() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Busy fraction of each core between two [`core_times`] snapshots.
pub(crate) fn core_busy(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let dt = y.1.saturating_sub(x.1);
            if dt == 0 { 0.0 } else { y.0.saturating_sub(x.0) as f64 / dt as f64 }
        })
        .collect()
}

/// CPU ticks of every process, to tell this benchmark's CPU from everybody else's.
#[derive(Debug)]
pub(crate) struct CpuSnapshot {
    /// pid -> (session, ticks)
    procs: HashMap<String, (u32, u64)>,
}

pub(crate) fn cpu_snapshot() -> CpuSnapshot {
    let procs =
        all_pids().into_iter().filter_map(|p| read_stat(&p).map(|s| (p, (s.session, s.ticks)))).collect();
    CpuSnapshot { procs }
}

/// Our session id: every process this benchmark starts (mock, gateways, load generators) stays
/// in it (they get new process groups, not new sessions).
pub(crate) fn own_session() -> u32 {
    read_stat("self").map_or(0, |s| s.session)
}

/// CPU seconds used between `a` and `b` by processes outside `session` (other users of the
/// machine, kernel threads): the background noise of a measurement. Processes that started
/// and ended between the two snapshots are not seen.
pub(crate) fn foreign_cpu_seconds(a: &CpuSnapshot, b: &CpuSnapshot, session: u32, tck: f64) -> f64 {
    let ticks: u64 = b
        .procs
        .iter()
        .filter(|(_, (sid, _))| *sid != session)
        .map(|(pid, (_, t))| match a.procs.get(pid) {
            Some((_, t0)) => t.saturating_sub(*t0),
            None => *t,
        })
        .sum();
    ticks as f64 / tck
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat() {
        let s = read_stat("self").expect("/proc/self/stat is readable");
        assert!(s.session > 0 || s.pgrp > 0);
        assert!(!core_times().is_empty());
    }

    #[test]
    fn reads_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95698                95698                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(limits), Some((1024, 524_288)));
        assert_eq!(
            parse_nofile("Max open files            unlimited            unlimited            files\n"),
            Some((u64::MAX, u64::MAX))
        );
        assert_eq!(parse_nofile("Max processes 1 1 processes\n"), None);
        let (soft, hard) = nofile_limits("self").expect("/proc/self/limits is readable");
        assert!(soft <= hard);
    }
}
