//! Support for the tests that run the real `switchyard` binary: start it on a free loopback
//! port with a configuration file, wait until it is ready, stop it with SIGTERM.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::{
    io::Write,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A `switchyard serve` process, killed if the test ends without stopping it.
pub(crate) struct Replica {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    child: Option<Child>,
    /// Its configuration file.
    pub(crate) config: PathBuf,
    log: PathBuf,
}

/// A path under the system's temporary directory that no other test or run uses.
pub(crate) fn unique_path(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("switchyard-{name}-{}-{nanos}", std::process::id()))
}

/// A plain HTTP client, as an application would use.
pub(crate) fn client() -> reqwest::Client {
    switchyard_providers::client::install_crypto_provider();
    reqwest::Client::new()
}

/// A free loopback port (bound, then released for the gateway to take).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

impl Replica {
    /// Starts `switchyard serve` with `yaml` and waits (up to 20 s) until it answers.
    pub(crate) async fn start(name: &str, yaml: &str) -> Replica {
        let config = unique_path(&format!("{name}.yaml"));
        std::fs::write(&config, yaml).expect("the config is written");
        let log = unique_path(&format!("{name}.log"));
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--drain-secs", "20"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(std::fs::File::create(&log).expect("a log file")))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchyard starts");
        let replica = Replica { base: format!("http://127.0.0.1:{port}"), child: Some(child), config, log };
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(replica.url("/health/readiness")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not become ready within 20 s; its log:\n{}",
                replica.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `base` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as an orchestrator does, and waits (up to 30 s) for it to exit.
    pub(crate) async fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let status =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("the process can be waited for") {
                return (status, self.log());
            }
            assert!(Instant::now() < deadline, "switchyard did not exit within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The URL in `var`, or `None` after saying on stderr that `test` was skipped and why.
pub(crate) fn service_url(var: &str, test: &str, what: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: {var} is not set (start {what} and set it; .ci/run does both)"
        );
    }
    url
}
