"""The README's first command, `kpi-streams up`: worker and simulator start, KPIs flow,
and stopping it (SIGTERM, as `kill`, systemd or CI send) stops all its children."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.fixtures_kafka import ROOT, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bytes(resp.read())


def test_up_runs_the_demo_and_stops_cleanly(kafka_env: dict[str, str],
                                            tmp_path: Path) -> None:
    port, cport = free_port(), free_port()
    env = {**os.environ, **kafka_env, "KPI_WEB_PORT": str(port), "KPI_HOME": str(tmp_path),
           "KPI_COLLECT_PORT": str(cport), "PYTHONUNBUFFERED": "1"}
    env.pop("KPI_COLLECT_TOKENS", None)
    # the broker and namespace as flags, not in the environment: the worker, collector
    # and simulator that `up` starts must get them too
    bootstrap, namespace = env.pop("KAFKA_BOOTSTRAP"), env.pop("KPI_NAMESPACE")
    with (tmp_path / "up.out").open("wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "streams.cli", "--bootstrap", bootstrap,
                               "--namespace", namespace, "up", "--rate", "20",
                               "--warmup-hours", "0.5"], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        def banner() -> str | None:
            assert up.poll() is None, (tmp_path / "up.out").read_text()
            text = (tmp_path / "up.out").read_text()
            return text if "kpi-streams is up" in text and "Ctrl-C" in text else None

        text = wait_for(banner, 60, "the banner of kpi-streams up")
        worker = int(re.search(r"worker\s+pid (\d+)", text).group(1))  # type: ignore[union-attr]
        sim = int(re.search(r"simulator\s+pid (\d+)", text).group(1))  # type: ignore[union-attr]
        collector = int(re.search(r"collector\s+pid (\d+)",  # type: ignore[union-attr]
                                  text).group(1))
        assert f"{base}/" in text  # the wall's address is printed where the README says
        # the collector is up, and the tracker snippet's token is one it takes
        cbase = f"http://127.0.0.1:{cport}"
        token = re.search(r'data-token="([^"]+)"', text).group(1)  # type: ignore[union-attr]
        assert f'src="{cbase}/t.js"' in text

        def collector_up() -> bool:
            try:
                return orjson.loads(_get(f"{cbase}/health"))["status"] == "ok"
            except OSError:
                return False

        wait_for(collector_up, 60, "the collector's /health")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        view = {"event_type": "page_view", "event_id": "up-test-1", "occurred_at": now,
                "schema_version": 1, "visitor_id": "v-up", "url": "https://x.example/",
                "page_type": "landing", "device": "mobile"}
        req = urllib.request.Request(f"{cbase}/collect?token={token}",
                                     data=orjson.dumps(view), method="POST")
        with urllib.request.urlopen(req, timeout=20) as resp:
            assert orjson.loads(resp.read())["accepted"] == 1
        assert b"window.kpi" in _get(f"{cbase}/t.js")

        def kpis_flow() -> bool:
            try:
                doc = orjson.loads(_get(f"{base}/api/kpis?bucket=1h&kpi=pageviews&dim=total"))
            except OSError:
                return False
            return any(s.get("numerator", 0) > 0 for s in doc.get("snapshots", []))

        wait_for(kpis_flow, 180, "page views on /api/kpis")
        assert b"kpi_streams_events_total" in _get(f"{base}/metrics")
        assert b"<title>kpi-streams" in _get(f"{base}/")
        # the demo's goals (streams/config/targets.demo.yaml) are paced for the wall
        # (each target is answered by the worker holding its KPI partition, once that
        # partition is restored: all four here, a moment after the first page views)
        def all_targets() -> bool:
            return orjson.loads(_get(f"{base}/api/targets"))["count"] == 4

        wait_for(all_targets, 60, "the demo's four targets on /api/targets")
        targets = orjson.loads(_get(f"{base}/api/targets"))
        assert targets["configured"] and targets["count"] == 4, targets
        assert {d["target"] for d in targets["targets"]} >= {"leads-month", "revenue-quarter"}
        assert b"kpi_streams_target_attainment_ratio" in _get(f"{base}/metrics")
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(timeout=45)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    children = (("worker", worker), ("simulator", sim), ("collector", collector))
    orphans = [name for name, pid in children if _alive(pid)]
    for name, pid in children:
        if name in orphans:
            os.kill(pid, signal.SIGKILL)  # do not leave them to the next test
    assert code == 0, (tmp_path / "up.out").read_text()
    assert not orphans, f"{orphans} outlived kpi-streams up"
    log = (tmp_path / "logs" / "worker.log").read_text(errors="replace")
    assert "Unclosed AIOKafka" not in log  # the worker closed its clients on the way out
    assert "nanobind: leaked" not in log  # its sketches were freed before the interpreter
    assert "Traceback" not in log, log[-3000:]
    assert f"group {namespace}" in log and f"on {bootstrap}" in log, log[-3000:]
