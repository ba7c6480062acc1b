"""A simulated day through Kafka and a worker equals an independent batch recomputation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.events import Decoder
from streams.schemas import parse_rfc3339_ms
from streams.simulate import Options, generate
from tests.batch import recompute
from tests.fixtures_kafka import WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import closing_events, produce_events, snapshots

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DAY = 86_400_000
HOUR = 3_600_000


@pytest.mark.parametrize(("zone", "day_start", "hours"), [
    ("UTC", "2026-11-17T00:00:00Z", 24),  # a Tuesday: newsletter day
    # the day Warsaw falls back: local midnight to midnight is 25 hours
    ("Europe/Warsaw", "2026-10-25T00:00:00+02:00", 25),
])
def test_simulated_day_matches_batch_recomputation(kafka_env: dict[str, str], tmp_path: Path,
                                                   workers: list[WorkerProcess],
                                                   decoder: Decoder, zone: str,
                                                   day_start: str, hours: int) -> None:
    from streams.kpis import buckets as B

    env = {**kafka_env, "KPI_TIMEZONE": zone}
    s = settings_from(env)
    start = parse_rfc3339_ms(day_start)
    end = start + hours * HOUR
    events = [e for batch in generate(start, end,
                                      Options(seed=21, sessions_per_day=1500, email_list=600))
              for e in batch]
    closers = closing_events(s, end + 3 * 3_600_000)
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    run(produce_events(s, events + closers))

    now = start + 40 * DAY
    records = []
    for e in events:
        recs, rejects = decoder.decode(orjson.dumps(e), None, now)
        assert not rejects
        records += recs
    want = recompute(records, tz=zone)

    from streams.kpis.merge import snapshot_key

    with B.zone(zone):
        expected = {snapshot_key(kpi, size, bstart, dim): nd
                    for (kpi, size, bstart, dim), nd in want.items()
                    if start <= bstart < end}
    if zone != "UTC":  # the local day is one bucket of 25 hours, with its offsets
        day = f"pageviews|1d|{day_start}|"
        assert day in expected
        hour_starts = {k.split("|")[2] for k in expected if k.split("|")[1] == "1h"}
        assert len(hour_starts) == hours
        assert {"2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"} <= hour_starts

    def all_final() -> Any:
        snaps = run(snapshots(s))
        open_keys = [k for k in expected if not (snaps.get(k) or {}).get("final")]
        return snaps if not open_keys else None

    snaps = wait_for(all_final, 240, "the day's final snapshots", interval=3)
    compared = 0
    mismatches = []
    for key, (num, den) in sorted(expected.items()):
        doc = snaps.get(key)
        assert doc is not None and doc["final"], key
        if doc["numerator"] != pytest.approx(num, abs=1e-4, rel=1e-6) or \
                doc["denominator"] != pytest.approx(den, abs=1e-4, rel=1e-6):
            mismatches.append((key, (doc["numerator"], doc["denominator"]), (num, den)))
        compared += 1
    assert not mismatches, mismatches[:20]
    assert compared > 2000
    w.assert_alive()
