"""Finality follows the wall clock once an input goes quiet (kpi-catalogue section 3).

A spend record reported twenty minutes ago reaches the worker only now (it was
produced then, a backlog or a slow start kept the worker from it). The spend
input then goes quiet. Its watermark must catch up with the wall clock after the
idle timeout, counted from when the record was produced, and the buckets it
holds back must become final: not twenty minutes later, when the wall clock has
made up the worker's delay.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streams.events import iso_ms
from streams.produce import BatchProducer
from streams.topics import Topics
from tests.conftest import event
from tests.fixtures_kafka import WorkerProcess, run, settings_from, wait_for

pytestmark = pytest.mark.kafka

MIN = 60_000


def test_a_quiet_input_follows_the_wall_clock(kafka_env: dict[str, str], tmp_path: Path,
                                              workers: list[WorkerProcess]) -> None:
    from streams.kafka import ensure_topics, producer

    env = {**kafka_env, "KPI_IDLE_TIMEOUT": "3s"}
    s = settings_from(env)
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    now = time.time_ns() // 1_000_000
    reported = now - 20 * MIN
    end = reported - MIN - (reported - MIN) % MIN
    start = end - 29 * MIN
    record = event("spend", occurred_at=iso_ms(reported), period_start=iso_ms(start),
                   period_end=iso_ms(end), cost=29.0, impressions=0, clicks=0)

    async def produce() -> None:
        await ensure_topics(s)
        p = producer(s)
        await p.start()
        try:  # the record carries the time it was produced: twenty minutes ago
            await BatchProducer(p, Topics(s), s.input_partitions, 1).send([record],
                                                                           stamped=True)
        finally:
            await p.stop()

    run(produce())
    spend_topic = Topics(s).input("spend")
    last_minute = iso_ms(end - MIN).replace(".000Z", "Z")

    def caught_up() -> float | None:
        delay = w.metric("kpi_streams_watermark_delay_seconds", input=spend_topic)
        return delay if 0 < delay < 60 else None

    delay = wait_for(caught_up, 60, "the quiet spend input's watermark to follow the wall "
                     "clock", interval=1)
    assert delay < 60  # not the twenty minutes the worker was late by

    def final_minute() -> dict | None:
        doc = orjson.loads(w.get("/api/kpis?kpi=spend&bucket=1m&dim=total"))
        cell = [d for d in doc["snapshots"] if d["window_start"] == last_minute]
        return cell[0] if cell and cell[0]["final"] else None

    # the last minute of the record ends 21 min ago: final once the watermark has passed
    # it by the allowed lateness (10 min), i.e. only if the watermark moved on from the
    # record's own time
    cell = wait_for(final_minute, 30, "the record's last minute to become final", interval=1)
    assert cell["numerator"] == pytest.approx(1.0, abs=0.01)  # 29 EUR over 29 minutes
    assert cell["cost_complete"] is True
    w.assert_alive()
