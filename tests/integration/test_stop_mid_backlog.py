"""A worker told to stop in the middle of a backlog stops at once and cleanly.

During a replay a batch's flush may wait for the next batches (KPI_FLUSH_INTERVAL),
and what it processed is acknowledged only once flushed. Faust, stopping, stops its
timers and its fetcher and waits for fetched messages to be acknowledged before our
shutdown hook runs; the deferred flush comes on its own timer, and the hook flushes
what is left. A stop that hung there would sit out KPI_SHUTDOWN_GRACE and exit 75."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.schemas import parse_rfc3339_ms
from streams.simulate import DAY, Options, generate
from tests.fixtures_kafka import WorkerProcess, run, settings_from
from tests.integration.kafkatools import produce_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_sigterm_in_the_middle_of_a_backlog_stops_cleanly(
        kafka_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]) -> None:
    env = {**kafka_env, "KPI_SHUTDOWN_GRACE": "60s"}
    s = settings_from(env)
    start = parse_rfc3339_ms("2026-11-09T00:00:00Z")
    events = [e for b in generate(start, start + 6 * DAY, Options(seed=5)) for e in b]
    # one event per message: a backlog the worker cannot have read by the time it is
    # healthy and has counted a tenth of it (arrays of 20 were, once replays skipped
    # building old minutes), and thousands of messages in its channels at the stop
    run(produce_events(s, events, batch_size=1))
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    deadline = time.monotonic() + 120
    while w.metric("kpi_streams_events_total") < len(events) // 10:
        assert time.monotonic() < deadline, w.tail()
        time.sleep(0.1)
    accounted = w.metric("kpi_streams_events_total")
    code, took = w.sigterm(timeout=90)
    assert accounted < len(events), "the backlog was read before the stop: nothing tested"
    log = w.log_path.read_text(errors="replace")
    assert "did not stop within" not in log, w.tail()
    assert code == 0, (code, w.tail())
    assert took < 30, took
