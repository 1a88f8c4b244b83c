"""Session fixtures: the real `switchyard` binary in front of `switchyard-mock`.

`cargo xtask ci` sets SWITCHYARD_BIN and SWITCHYARD_MOCK_BIN to the debug binaries it built.
Without them the suite fails rather than skips: a conformance suite that silently skips hides rot.

The session starts one mock provider and one gateway (a switchyard.yaml in a temporary
directory), waits for both with bounded polling, and stops both at the end (SIGTERM, then
SIGKILL after 10 s). The gateway's log is written to a file; whatever it logged during a test
that failed is attached to that test's report, and startup failures show it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

MASTER_KEY = "sk-test-master"
UPSTREAM_KEY = "upstream-key-123456789"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Variables the binaries read that must not leak in from the caller's environment: a stray
# SWITCHYARD_CONFIG or SWITCHYARD_LISTEN would change what the gateway serves, and a stray
# SWITCHYARD_MOCK_API_KEY would make the mock reject the gateway.
_SCRUBBED = (
    "SWITCHYARD_CONFIG",
    "SWITCHYARD_LISTEN",
    "SWITCHYARD_LOG_FORMAT",
    "SWITCHYARD_MOCK_API_KEY",
    "SWITCHYARD_MASTER_KEY",
)

# Everything here talks to 127.0.0.1: keep any configured HTTP proxy out of the way, for the SDK
# (httpx honours the proxy variables) and for the gateway's upstream client alike.
for _name in ("NO_PROXY", "no_proxy"):
    _current = os.environ.get(_name, "")
    os.environ[_name] = ",".join(filter(None, [_current, "127.0.0.1", "localhost"]))


def _abort(message: str) -> None:
    """Ends the whole session as failed with one message: without the stack every test would
    fail the same way, and 26 copies of one message hide it."""
    pytest.exit(message, returncode=pytest.ExitCode.TESTS_FAILED)


def _binary(variable: str) -> Path:
    value = os.environ.get(variable)
    hint = "set SWITCHYARD_BIN/SWITCHYARD_MOCK_BIN (cargo xtask ci does)"
    if not value:
        _abort(f"{variable} is not set: {hint}")
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        _abort(f"{variable}={value} is not an executable file: {hint}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    # Request lines from tower-http make a failed test's log useful; plain text in a file.
    env.setdefault("RUST_LOG", "info,tower_http=debug")
    env.setdefault("NO_COLOR", "1")
    env.update(extra)
    return env


def http_get(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A plain GET with the standard library: (status, body); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass
class Process:
    """A child process whose stdout and stderr go to one log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self, start: int = 0) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except OSError as err:
            return f"<could not read {self.log_path}: {err}>"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_TIMEOUT_S)


def _spawn(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Process:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return Process(name=name, popen=popen, log_path=log_path)


def _wait_until_ready(process: Process, port: int, url: str) -> str | None:
    """Polls `url` until it answers 200, for at most STARTUP_TIMEOUT_S: None when ready, else why not.

    Ready also needs the process's own "listening on 127.0.0.1:<port>" line, so that another
    server that happens to hold the port cannot pass for it."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            return f"{process.name} exited with status {process.popen.returncode}"
        try:
            status, body = http_get(url, timeout=2.0)
            log = process.log()
            if status == 200 and "listening on" in log and f"127.0.0.1:{port}" in log:
                return None
            last = f"HTTP {status}: {body[:500]!r}"
        except OSError as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.05)
    return f"{last} (waited {STARTUP_TIMEOUT_S:.0f} s)"


def _start(name: str, argv_for_port, env: dict[str, str], log_path: Path, ready_path: str, others: list[Process]):
    """Starts `name` on a free port and waits until GET `ready_path` answers 200.

    A port picked free can be taken by someone else before the child binds it: that one case
    (the child exits saying the address is in use) is retried on another port, twice at most.
    Any other failure ends the session, showing the logs."""
    for attempt in range(3):
        port = _free_port()
        process = _spawn(name, argv_for_port(port), env, log_path)
        url = f"http://127.0.0.1:{port}{ready_path}"
        failure = _wait_until_ready(process, port, url)
        if failure is None:
            return process, port
        process.stop()
        if "in use" in process.log() and attempt < 2:
            continue
        logs = "\n".join(f"--- {p.name} log ({p.log_path}) ---\n{p.log()}" for p in [process, *others])
        for other in others:
            other.stop()
        _abort(f"{name} is not ready at {url}: {failure}.\n{logs}")
    raise AssertionError("unreachable")


@dataclass
class Stack:
    """The running mock and gateway, and how to reach them."""

    gateway_bin: Path
    mock_bin: Path
    config_path: Path
    mock: Process
    gateway: Process
    mock_port: int
    gateway_port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def mock_stats(self) -> dict[str, int]:
        status, body = http_get(f"http://127.0.0.1:{self.mock_port}/__stats")
        assert status == 200, f"GET /__stats on the mock answered {status}: {body!r}"
        return json.loads(body)


CONFIG_TEMPLATE = """\
server:
  listen: 127.0.0.1:{gateway_port}
  master_key: ${{SWITCHYARD_MASTER_KEY}}
database:
  url: 'sqlite://{ledger}'
models:
  - name: gpt-4o-mini
    deployments:
      - provider: openai
        model: mock-gpt
        api_base: http://127.0.0.1:{mock_port}/v1
        api_key: {upstream_key}
  - name: text-embedding-3-small
    deployments:
      - {{provider: openai, model: mock-embed, api_base: 'http://127.0.0.1:{mock_port}/v1', api_key: {upstream_key}}}
  - name: broken
    deployments:
      - {{provider: openai, model: x, api_base: 'http://127.0.0.1:{closed_port}/v1', api_key: k}}
  # Anthropic's dialect: a native Anthropic deployment (the mock's /v1/messages), and a
  # Claude-named model served by an OpenAI-dialect deployment, for the Anthropic SDK's crossing.
  - name: claude-sonnet
    deployments:
      - {{provider: anthropic, model: mock-claude, api_base: 'http://127.0.0.1:{mock_port}', api_key: {upstream_key}}}
  - name: claude-via-openai
    deployments:
      - {{provider: openai, model: mock-gpt, api_base: 'http://127.0.0.1:{mock_port}/v1', api_key: {upstream_key}}}
  # The other native adapters, each against the mock's own dialect.
  - name: gemini-flash
    deployments:
      - {{provider: gemini, model: gemini-2.5-flash, api_base: 'http://127.0.0.1:{mock_port}', api_key: {upstream_key}}}
  - name: bedrock-claude
    deployments:
      - provider: bedrock
        model: anthropic.claude-3-5-sonnet-20240620-v1:0
        region: us-east-1
        api_base: 'http://127.0.0.1:{mock_port}'
        aws_access_key_id: AKIDEXAMPLE
        aws_secret_access_key: {upstream_key}
  - name: command-a
    deployments:
      - {{provider: cohere, model: command-a-03-2025, api_base: 'http://127.0.0.1:{mock_port}', api_key: {upstream_key}}}
"""


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound for the whole session (so nobody else
    takes it) but never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, closed_port: int) -> Iterator[Stack]:
    gateway_bin = _binary("SWITCHYARD_BIN")
    mock_bin = _binary("SWITCHYARD_MOCK_BIN")
    workdir = tmp_path_factory.mktemp("switchyard")

    mock, mock_port = _start(
        "switchyard-mock",
        lambda port: [str(mock_bin), "--listen", f"127.0.0.1:{port}", "--chunks", "5", "--chunk-ms", "5"],
        _child_env(),
        workdir / "mock.log",
        "/__stats",
        [],
    )

    config_path = workdir / "switchyard.yaml"
    env = _child_env(SWITCHYARD_MASTER_KEY=MASTER_KEY)

    def gateway_argv(port: int) -> list[str]:
        config_path.write_text(
            CONFIG_TEMPLATE.format(
                gateway_port=port,
                mock_port=mock_port,
                closed_port=closed_port,
                upstream_key=UPSTREAM_KEY,
                # The session's own ledger, not a switchyard.db in the working directory.
                ledger=workdir / "ledger.db",
            )
        )
        return [str(gateway_bin), "serve", "--config", str(config_path), "--drain-secs", "5"]

    gateway, gateway_port = _start(
        "switchyard", gateway_argv, env, workdir / "gateway.log", "/health/readiness", [mock]
    )

    running = Stack(
        gateway_bin=gateway_bin,
        mock_bin=mock_bin,
        config_path=config_path,
        mock=mock,
        gateway=gateway,
        mock_port=mock_port,
        gateway_port=gateway_port,
        env=env,
    )
    global _RUNNING
    _RUNNING = running
    try:
        yield running
    finally:
        _RUNNING = None
        gateway.stop()
        mock.stop()


_RUNNING: Stack | None = None


@pytest.fixture
def client(stack: Stack):
    import openai

    with openai.OpenAI(base_url=stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30.0) as sdk:
        yield sdk


@pytest.fixture
def anthropic_client(stack: Stack):
    import anthropic

    with anthropic.Anthropic(base_url=stack.root_url, api_key=MASTER_KEY, max_retries=0, timeout=30.0) as sdk:
        yield sdk


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Remembers where the gateway's log stood when the test started."""
    item.stash[_LOG_START] = _RUNNING.gateway.log_size() if _RUNNING else 0
    return (yield)


_LOG_START = pytest.StashKey[int]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attaches what the gateway logged during a failed test (and whether it is still running)."""
    report = yield
    if report.failed and call.when == "call" and _RUNNING is not None:
        gateway = _RUNNING.gateway
        state = "running" if gateway.popen.poll() is None else f"exited with {gateway.popen.returncode}"
        log = gateway.log(item.stash.get(_LOG_START, 0)) or "<nothing logged during this test>"
        report.sections.append((f"switchyard gateway log ({state}; {gateway.log_path})", log))
    return report
