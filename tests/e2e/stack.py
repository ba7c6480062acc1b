"""Real Prometheus and Alertmanager processes, and a webhook receiver, for e2e tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kafka import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "kpi-streams.yml"


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (./dev deps installs it from Debian)")
    return path


class Webhook:
    """Collects what Alertmanager posts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def alerts(self, name: str, status: str = "firing") -> list[dict[str, Any]]:
        return [a for payload in self.received for a in payload.get("alerts", [])
                if a["labels"].get("alertname") == name and a["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.log} ---\n" + "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_http(url: str, proc: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"exited with {proc.proc.returncode}\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer\n{proc.tail()}")


def start_alertmanager(tmp: Path, webhook: Webhook) -> tuple[Process, str]:
    port = free_port()
    cfg = tmp / "alertmanager.yml"
    cfg.write_text(f"""
route:
  receiver: test
  group_by: [alertname, channel]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: {webhook.url}
        send_resolved: true
""")
    proc = Process([_exe("prometheus-alertmanager"), f"--config.file={cfg}",
                    f"--storage.path={tmp / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address="], tmp / "alertmanager.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/-/ready", proc)
    return proc, url


def start_prometheus(tmp: Path, worker_port: int, alertmanager_url: str,
                     hold_for: str = "2s") -> tuple[Process, str]:
    """Prometheus scraping the worker every second, with the project's alert rules.

    The rules are the deployed ones with every ``for:`` shortened to ``hold_for``,
    so that a test does not wait the quarter of an hour a real page waits.
    """
    port = free_port()
    rules = tmp / "rules.yml"
    text = RULES.read_text()
    import re

    rules.write_text(re.sub(r"for: \d+[smh]", f"for: {hold_for}", text))
    cfg = tmp / "prometheus.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager_url.removeprefix('http://')}"]
scrape_configs:
  - job_name: kpi-streams
    static_configs:
      - targets: ["127.0.0.1:{worker_port}"]
""")
    proc = Process([_exe("prometheus"), f"--config.file={cfg}",
                    f"--storage.tsdb.path={tmp / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{port}"], tmp / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/-/ready", proc)
    return proc, url


def prom_query(url: str, expr: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    with urllib.request.urlopen(f"{url}/api/v1/query?query={quote(expr)}", timeout=5) as r:
        doc = json.loads(r.read())
    return list(doc["data"]["result"])
