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

DAY_START = "2026-11-17T00:00:00Z"  # a Tuesday: newsletter day
DAY = 86_400_000


def test_simulated_day_matches_batch_recomputation(kafka_env: dict[str, str], tmp_path: Path,
                                                   workers: list[WorkerProcess],
                                                   decoder: Decoder) -> None:
    s = settings_from(kafka_env)
    start = parse_rfc3339_ms(DAY_START)
    events = [e for batch in generate(start, start + DAY,
                                      Options(seed=21, sessions_per_day=1500, email_list=600))
              for e in batch]
    closers = closing_events(s, start + DAY + 3 * 3_600_000)
    w = WorkerProcess(kafka_env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    run(produce_events(s, events + closers))

    now = start + 40 * DAY
    records = []
    for e in events:
        recs, rejects = decoder.decode(orjson.dumps(e), None, now)
        assert not rejects
        records += recs
    want = recompute(records)

    from streams.kpis.merge import snapshot_key

    expected = {snapshot_key(kpi, size, bstart, dim): nd
                for (kpi, size, bstart, dim), nd in want.items()
                if start <= bstart < start + DAY}

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
