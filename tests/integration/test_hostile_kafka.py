"""A bounded fuzz run through the real broker and a real worker: hostile messages on an
input topic never crash the worker, every reject lands in the DLQ with the reason
the decoder gives it, and a flood of campaign names adds no Prometheus series."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.events import Decoder
from streams.topics import Topics
from tests.conftest import event
from tests.fixtures_kafka import WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import produce_raw, read_json

pytestmark = pytest.mark.kafka

LIMIT = 65_536


def corpus(seed: int) -> list[bytes | None]:
    rng = random.Random(seed)
    good = orjson.dumps([event("page_view", event_id=f"ok-{i}",
                               occurred_at="2026-11-23T10:00:00Z") for i in range(3)])
    out: list[bytes | None] = [None, b"", b"null", b"[]", b"{}", b"[[[]]]"]
    out += [rng.randbytes(rng.randrange(1, 400)) for _ in range(40)]
    out += [good[:rng.randrange(1, len(good))] for _ in range(20)]
    out += [b"[" * d + b"]" * d for d in (10, 33, 1000, 20_000)]
    out += [b'{"a":' * d + b"1" + b"}" * d for d in (40, 5000)]
    nested = orjson.dumps(event("page_view", event_id="nested", extra="X"))
    out.append(nested.replace(b'"X"', b"[" * 100 + b"]" * 100))
    out.append(orjson.dumps(event("page_view", event_id="huge", pad="x" * (LIMIT + 10))))
    out.append(orjson.dumps([event("page_view", event_id=f"many-{i}") for i in range(60)]))
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        out.append(orjson.dumps(event("spend", cost=4242.5)).replace(b"4242.5", literal))
    for frag in (b"\\ud800", b"\\udfff", b"\xed\xa0\x80", b"\xff\xfe", b"\\u0000"):
        out.append(orjson.dumps(event("page_view", event_id="MARK")).replace(b"MARK", frag))
    out.append(orjson.dumps(event("page_view", event_id="future",
                                  occurred_at="2999-01-01T00:00:00Z")))
    out.append(orjson.dumps(event("page_view", event_id="ancient",
                                  occurred_at="1970-01-01T00:00:01Z")))
    out.append(orjson.dumps(event("page_view", event_id="odd-🙂-\u202e-\u0301",
                                  utm_campaign="\u202eevil\u200b🙂", visitor_id="ü🙂")))
    out.append(orjson.dumps(event("form_submit", event_id="wrong-topic")))
    # a flood of distinct campaign names, all valid
    flood = [event("page_view", event_id=f"flood-{i}", visitor_id=f"fv{i % 40}",
                   utm_campaign=f"flood-{i:05d}", utm_source="ads", utm_medium="cpc",
                   occurred_at=f"2026-11-23T11:{i % 60:02d}:00Z") for i in range(2000)]
    out += [orjson.dumps(flood[i:i + 200]) for i in range(0, len(flood), 200)]
    return out


def test_hostile_messages_reach_the_dlq_and_crash_nothing(
        kafka_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]) -> None:
    env = {**kafka_env, "KPI_MAX_MESSAGE_BYTES": str(LIMIT), "KPI_MAX_BATCH_EVENTS": "50",
           "KPI_LOG_LEVEL": "info"}
    s = settings_from(env)
    topics = Topics(s)
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()

    messages = corpus(7)
    # what the decoder says about each message, independently of the worker
    decoder = Decoder.from_settings(s)
    expected: Counter[str] = Counter()
    accepted = 0
    now = time.time_ns() // 1_000_000
    for raw in messages:
        records, rejects = decoder.decode(raw, "page_view", now)
        expected.update(r.reason for r in rejects)
        accepted += len(records)
    assert expected["malformed_json"] and expected["too_large"] and expected["future_event"]
    assert expected["not_an_object"] and expected["wrong_topic"]

    run(produce_raw(s, topics.input("page_view"), messages))
    total = sum(expected.values())
    wait_for(lambda: w.metric("kpi_streams_rejected_events_total") >= total, 90,
             f"{total} rejects counted")
    dlq = wait_for(lambda: (lambda d: d if len(d) >= total else None)(
        run(read_json(s, topics.dlq(topics.input("page_view"))))), 60, "the DLQ records")
    got = Counter(doc["reason"] for _, doc in dlq)
    assert got == expected
    for reason, n in expected.items():
        assert w.metric("kpi_streams_rejected_events_total", input="page_view",
                        reason=reason) == n
    assert all(doc["topic"] == topics.input("page_view") and doc["offset"] >= 0
               for _, doc in dlq)
    wait_for(lambda: w.metric("kpi_streams_events_total", input="page_view") >= accepted,
             60, "accepted events counted")
    w.assert_alive()
    log = w.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    # campaign names never become Prometheus labels
    metrics_text = w.get("/metrics").decode()
    assert "flood-0" not in metrics_text
    series = [ln for ln in metrics_text.splitlines() if ln and not ln.startswith("#")]
    assert len(series) < 5000, len(series)
