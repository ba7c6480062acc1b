"""A simulated week of funnel, engagement and lead-scoring activity through Kafka and a
worker equals the batch recomputation; revenue is checked under every attribution
model through the API, and the lead-score MQLs against an independent reading of
the rules."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from streams.events import Decoder, iso_ms
from streams.kpis.attribution import MODELS
from streams.kpis.merge import snapshot_key
from streams.schemas import parse_rfc3339_ms
from streams.simulate import DAY, Options, generate
from streams.topics import Topics
from tests.batch import lead_qualifications, recompute
from tests.fixtures_kafka import ROOT, WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import (
    closing_events,
    final_mismatches,
    produce_events,
    read_json,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = "2026-11-16T00:00:00Z"


def test_week_of_funnel_matches_batch(kafka_env: dict[str, str], tmp_path: Path,
                                      workers: list[WorkerProcess], decoder: Decoder) -> None:
    env = {**kafka_env, "KPI_PUBLISH_WINDOWS": "1h,1d"}
    s = settings_from(env)
    topics = Topics(s)
    start = parse_rfc3339_ms(START)
    events = [e for b in generate(start, start + 7 * DAY,
                                  Options(seed=4, sessions_per_day=500, email_list=150,
                                          installed_base=60)) for e in b]
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    run(produce_events(s, events + closing_events(s, start + 7 * DAY + 3 * 3_600_000)))
    records = []
    for e in events:
        recs, rejects = decoder.decode(orjson.dumps(e), None, start + 400 * DAY)
        assert not rejects
        records += recs
    want = {snapshot_key(kpi, size, b, dim): nd
            for (kpi, size, b, dim), nd in recompute(records).items()
            if size == "1d" and start <= b < start + 7 * DAY}
    assert any(k.startswith("won_deals|") for k in want)

    bad = final_mismatches(s, want, 300, "the week's final snapshots")
    assert not bad, bad[:10]
    # revenue by channel under every model, read back through the worker's API
    for model in MODELS:
        expected = {k: v for k, v in recompute(records, model).items()
                    if k[0] == "revenue" and k[1] == "1d" and k[3].startswith("channel=")
                    and start <= k[2] < start + 7 * DAY}
        doc = orjson.loads(w.get(f"/api/kpis?kpi=revenue&bucket=1d&attribution={model}"
                                 "&limit=100000"))
        got = {(d["window_start"], d["dims"].get("channel")): d
               for d in doc["snapshots"] if d["dims"]}
        assert expected
        for (_, _, b, dim), (num, _) in expected.items():
            from streams.kpis.merge import iso_s

            d = got[(iso_s(b), dim.split("=", 1)[1])]
            assert d["numerator"] == pytest.approx(num, abs=1e-3), (model, b, dim)
            assert d["mode"] == {"attribution": model}
    # lead-score qualifications: once per contact, as an independent reading of the
    # rules file says, with the rules that fired
    rules_doc = json.loads((ROOT / "streams" / "config" / "lead_scoring.json").read_text())
    expected_mqls = lead_qualifications(records, rules_doc)
    assert len(expected_mqls) >= 5
    qualified = wait_for(lambda: (lambda d: d if len(d) >= len(expected_mqls) else None)(
        run(read_json(s, topics.lead_scores))), 120, "the week's MQLs")
    got = {doc["contact_id"]: doc for _, doc in qualified}
    assert len(got) == len(qualified), "a contact was emitted twice"
    assert {c: (iso_ms(t), round(sc, 3)) for c, (t, sc) in expected_mqls.items()} == \
        {c: (d["qualified_at"], d["score"]) for c, d in got.items()}
    assert all(d["rules"] and d["score"] >= d["threshold"] for d in got.values())
    w.assert_alive()
    # `kpi-streams score` reads the funnel's changelog: a contact quiet for two hours of
    # event time is a cold record there by now, and still scores as it qualified
    import subprocess
    import sys

    for contact, doc in sorted(got.items())[:3]:
        r = subprocess.run([sys.executable, "-m", "streams.cli", "score", contact, "--at",
                            doc["qualified_at"], "--format", "json"],
                           env={**w.env}, capture_output=True, text=True, timeout=120,
                           cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert orjson.loads(r.stdout)["score"] == pytest.approx(doc["score"], abs=1e-3)
    w.assert_alive()
