"""A real Kafka broker for the test session, and workers as real processes.

The broker is the project's own (``streams.broker``): Kafka from Maven Central,
KRaft, on free ports of 127.0.0.1, fresh data per session. If KAFKA_BOOTSTRAP
is set, that cluster is used instead and nothing is started. Every test gets
its own namespace, so topics and consumer groups are never shared.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams import broker
from streams.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SESSION_BROKER: list[Settings] = []  # settings of the broker this session started, if any


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    env = {"KPI_BROKER_PORT": str(free_port()), "KPI_CONTROLLER_PORT": str(free_port()),
           "KPI_BROKER_HEAP": "1g"}
    if "KPI_HOME" in os.environ:
        env["KPI_HOME"] = os.environ["KPI_HOME"]
    s = load_settings(env)
    shutil.rmtree(broker.paths(s).root, ignore_errors=True)
    try:
        bootstrap = broker.start(s, timeout=120, say=print)
    except broker.BrokerError as exc:
        pytest.fail(f"the test session could not start Kafka: {exc}")
    SESSION_BROKER.append(s)
    try:
        yield bootstrap
    finally:
        SESSION_BROKER.clear()
        broker.stop(s)
        shutil.rmtree(broker.paths(s).root, ignore_errors=True)


BASE_ENV = {
    "KPI_INPUT_PARTITIONS": "3",
    "KPI_KPI_PARTITIONS": "3",
    "KPI_FLUSH_INTERVAL": "100ms",
    "KPI_SNAPSHOT_INTERVAL": "300ms",
    "KPI_LOG_LEVEL": "info",
}


@pytest.fixture
def kafka_env(kafka_bootstrap: str) -> dict[str, str]:
    """Environment of one test: its own namespace on the session's broker."""
    env = dict(BASE_ENV)
    env["KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env["KPI_NAMESPACE"] = f"t{uuid.uuid4().hex[:10]}"
    return env


def settings_from(env: dict[str, str]) -> Settings:
    return load_settings(env)


class WorkerProcess:
    """``kpi-streams worker`` as a child process, with its log kept for failures."""

    def __init__(self, env: dict[str, str], tmp: Path, name: str = "worker") -> None:
        self.port = free_port()
        # each worker its own embedded stores, kept across its restarts (its "disk")
        self.env = {**os.environ, "KPI_STATE_DIR": str(tmp / f"{name}-state"), **env,
                    "KPI_WEB_PORT": str(self.port), "KPI_WORKER_ID": name,
                    "PYTHONUNBUFFERED": "1"}
        self.log_path = tmp / f"{name}.log"
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=ROOT)
        self.starts += 1
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        import urllib.request

        with urllib.request.urlopen(self.url(path), timeout=timeout) as resp:
            return bytes(resp.read())

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                doc = orjson.loads(self.get("/api/health", timeout=2))
                if doc["status"] == "ok" and any(
                        s["assigned"] for s in doc["stages"].values()):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy in {timeout}s\n{self.tail()}")

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}\n{self.tail()}")

    def sigterm(self, timeout: float) -> tuple[int, float]:
        """Send SIGTERM and wait for the exit: (exit code, seconds it took). Fails the
        test, with the log's tail, if the worker is still running after ``timeout``."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout:.0f} s of "
                                 f"SIGTERM\n{self.tail()}") from None
        return code, time.monotonic() - began

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching ``labels`` (0 if absent)."""
        total = 0.0
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no worker log)"
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(text[-lines:])


class CollectorProcess(WorkerProcess):
    """``kpi-streams collect`` as a child process (stopped by the ``workers`` fixture)."""

    command = "collect"

    def __init__(self, env: dict[str, str], tmp: Path, name: str = "collector") -> None:
        super().__init__(env, tmp, name)
        self.env["KPI_COLLECT_PORT"] = str(self.port)

    def start(self) -> CollectorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "collect"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=ROOT)
        self.starts += 1
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                if orjson.loads(self.get("/health", timeout=2))["status"] == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"collector not healthy in {timeout}s\n{self.tail()}")

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None,
             timeout: float = 20.0) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON answer, headers); error statuses do not raise."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url(path), data=body, method="POST",
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, orjson.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, orjson.loads(raw) if raw else None, dict(err.headers)


@pytest.fixture
def workers(tmp_path: Path, kafka_env: dict[str, str],
            request: pytest.FixtureRequest) -> Iterator[list[WorkerProcess]]:
    """Started workers are stopped after the test; their logs are printed on failure."""
    started: list[WorkerProcess] = []
    yield started
    failed = getattr(request.node, "rep_call", None)
    for w in started:
        w.stop()
        if failed is not None and failed.failed:
            sys.stderr.write(w.tail(200) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def run(coro: Any) -> Any:
    return asyncio.run(coro)
