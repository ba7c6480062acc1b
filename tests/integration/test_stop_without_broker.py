"""A worker told to stop while Kafka is away still stops, within KPI_SHUTDOWN_GRACE.

Faust waits for its streams forever when the broker is gone; without a deadline a
SIGTERM (systemd, Kubernetes, `kpi-streams up`) would hang. State is crash-safe, so
exiting after the grace period loses nothing (the chaos test shows restores)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams import broker
from tests.fixtures_kafka import SESSION_BROKER, WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_sigterm_with_the_broker_away_exits_after_the_grace(
        kafka_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]) -> None:
    if not SESSION_BROKER:
        pytest.skip("stopping the broker needs the session's own local broker")
    s = SESSION_BROKER[0]
    w = WorkerProcess({**kafka_env, "KPI_SHUTDOWN_GRACE": "5s"}, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    broker.stop(s)
    try:
        time.sleep(2)
        code, took = w.sigterm(timeout=40)
    finally:
        broker.start(s, timeout=120)
    log = w.log_path.read_text(errors="replace")
    assert code == 75, (code, w.tail())
    assert 4.5 <= took < 30, took
    assert "did not stop within KPI_SHUTDOWN_GRACE=5s" in log
