"""A backfill through Kafka and a worker: the worker reads the inputs' horizon off the
topics before its first batch, does not build the minute cells of the replayed past,
and its hours and days equal the batch recomputation (KPI_REPLAY_SKIP_EXPIRED)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.events import Decoder
from streams.kpis.merge import snapshot_key
from streams.schemas import parse_rfc3339_ms
from streams.simulate import DAY, Options, generate
from tests.batch import recompute
from tests.fixtures_kafka import WorkerProcess, run, settings_from
from tests.integration.kafkatools import (
    closing_events,
    final_mismatches,
    produce_events,
)
from tests.unit.kpitables import records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = "2026-11-09T00:00:00Z"
HOUR = 3_600_000
DAYS = 4


def test_a_backfill_skips_old_minutes_and_keeps_hours_and_days(
        kafka_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess],
        decoder: Decoder) -> None:
    env = {**kafka_env, "KPI_PUBLISH_WINDOWS": "1h,1d"}
    s = settings_from(env)
    start = parse_rfc3339_ms(START)
    end = start + DAYS * DAY
    events = [e for b in generate(start, end, Options(seed=9, sessions_per_day=300,
                                                      email_list=100)) for e in b]
    # the history is on the topics before the worker starts: a backfill
    run(produce_events(s, events + closing_events(s, end + 3 * HOUR)))
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    want = {snapshot_key(kpi, size, b, dim): nd
            for (kpi, size, b, dim), nd in recompute(records(decoder, events)).items()
            if start <= b < end}
    assert {k.split("|")[1] for k in want} == {"1h", "1d"}

    bad = final_mismatches(s, want, 300, "the backfill's final snapshots")
    assert not bad, bad[:10]
    # the horizon: the closing events' time less the margin (1 h 40 min by default)
    horizon = w.metric("kpi_streams_input_horizon_seconds") * 1000
    assert end < horizon < end + 3 * HOUR
    # minute rows of the first days were never sent (the web stage does not build
    # them; e-mail's are dropped before sending, and counted), and no hour or day rows
    assert w.metric("kpi_streams_rows_past_retention_total", bucket="1m") > 0
    assert w.metric("kpi_streams_rows_past_retention_total", bucket="1h") == 0
    # the API holds the minutes of the last two days before the horizon, none older
    doc = orjson.loads(w.get("/api/kpis?kpi=pageviews&bucket=1m&dim=total&limit=100000"))
    starts = [parse_rfc3339_ms(d["window_start"]) for d in doc["snapshots"]]
    assert starts and min(starts) + 60_000 > horizon - 2 * DAY
    assert max(starts) >= end - HOUR
