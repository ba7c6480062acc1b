"""Erasure on the real broker: a person's state goes, from every stage and changelog.

A visitor browses, becomes a lead as a contact, and the contact's deal is won.
``kpi-streams erase --visitor ... --contact ...`` then removes the visitor (web
stage) and the contact (funnel stage and the visitors whose forms named it): the
state topics end with tombstones for them, the audit topic has the request and
one ``applied`` record per stage partition, and the aggregated KPIs are what they
were. Nowhere we publish, log or label (KPI topic, audit topic, /metrics, the
worker's log) carries the ids.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.events import iso_ms
from streams.readback import read_topic
from streams.topics import Topics
from tests.conftest import event
from tests.fixtures_kafka import ROOT, WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import produce_events

pytestmark = pytest.mark.kafka

VISITOR, CONTACT, OTHER = "v-erase-7f3a", "c-erase-7f3a", "v-keep-19b2"


def _latest(s: Any, topic: str) -> dict[bytes, bytes | None]:
    out: dict[bytes, bytes | None] = {}
    for msg in run(read_topic(s, topic)):
        if msg.key is not None:
            out[msg.key] = msg.value
    return out


def test_erase_removes_a_person_and_leaves_the_kpis(kafka_env: dict[str, str],
                                                    tmp_path: Path,
                                                    workers: list[WorkerProcess]) -> None:
    s = settings_from(kafka_env)
    w = WorkerProcess(kafka_env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    now = time.time_ns() // 1_000_000
    t = [iso_ms(now - 600_000 + i * 60_000) for i in range(5)]
    events = [
        event("page_view", visitor_id=VISITOR, occurred_at=t[0]),
        event("page_view", visitor_id=VISITOR, occurred_at=t[1], page_type="pricing"),
        event("form_submit", visitor_id=VISITOR, contact_id=CONTACT, occurred_at=t[2],
              goal="demo_request"),
        event("page_view", visitor_id=OTHER, occurred_at=t[2]),
        # B2C: the contact is its own customer
        event("deal_update", deal_id="d-erase", contact_id=CONTACT, customer_id=CONTACT,
              stage="won", amount=1200.0, created_at=t[3], occurred_at=t[4]),
    ]
    run(produce_events(s, events))

    def kpi(name: str) -> float | None:
        doc = orjson.loads(w.get(f"/api/kpis?kpi={name}&bucket=1d&dim=total"))
        values = [d["value"] for d in doc["snapshots"]]
        return values[-1] if values else None

    wait_for(lambda: kpi("pageviews") == 3 and kpi("leads") == 1 and kpi("revenue"), 60,
             "the visit, the lead and the won deal in the KPIs")
    topics = Topics(s)
    web_state, funnel_state = topics.state("web"), topics.state("funnel")
    # the person is in the state topics (their changelogs) before
    wait_for(lambda: _latest(s, web_state).get(VISITOR.encode()), 30,
             "the visitor's state on the web changelog")
    wait_for(lambda: _latest(s, funnel_state).get(CONTACT.encode()), 30,
             "the contact's state on the funnel changelog")
    wait_for(lambda: _latest(s, topics.state("customers")).get(CONTACT.encode()), 30,
             "the contact as a customer on the customer changelog")
    before = {k: kpi(k) for k in ("pageviews", "sessions", "users", "leads", "revenue")}

    out = subprocess.run([sys.executable, "-m", "streams.cli", "erase", "--visitor", VISITOR,
                          "--contact", CONTACT, "--timeout", "60"],
                         env={**w.env}, cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "every stage partition confirmed" in out.stderr

    # tombstones: the last record of each of the person's keys is empty
    web, funnel = _latest(s, web_state), _latest(s, funnel_state)
    customers = _latest(s, topics.state("customers"))
    assert VISITOR.encode() in web and web[VISITOR.encode()] is None
    assert CONTACT.encode() in funnel and funnel[CONTACT.encode()] is None
    assert CONTACT.encode() in customers and customers[CONTACT.encode()] is None
    live = [v for v in (*web.values(), *funnel.values(), *customers.values())
            if v is not None]
    assert not any(VISITOR.encode() in v or CONTACT.encode() in v for v in live)
    assert web.get(OTHER.encode()) is not None  # nobody else was touched
    scores = _latest(s, topics.lead_scores)
    assert scores.get(CONTACT.encode(), None) is None
    # the audit trail: hashes, not ids; one applied record per stage partition
    audit = [orjson.loads(m.value) for m in run(read_topic(s, topics.erasures))]
    assert {a["event"] for a in audit} == {"requested", "applied"}
    applied = [a for a in audit if a["event"] == "applied"]
    # visitor: its web partition; contact: funnel, customers and every web partition
    assert len(applied) == 1 + 2 + s.input_partitions
    assert sum(a["entries_removed"] for a in applied) >= 2
    raw_audit = b"".join(m.value for m in run(read_topic(s, topics.erasures)))
    assert VISITOR.encode() not in raw_audit and CONTACT.encode() not in raw_audit
    # the KPIs are what they were
    time.sleep(2)
    assert {k: kpi(k) for k in before} == before
    # the API answers about the KPIs, not about people
    assert VISITOR.encode() not in w.get("/api/kpis?bucket=1d")
    # nothing we publish, label or log carries the ids
    for msg in run(read_topic(s, topics.snapshots)):
        assert msg.value is None or (VISITOR.encode() not in msg.value
                                     and CONTACT.encode() not in msg.value)
    metrics = w.get("/metrics")
    assert VISITOR.encode() not in metrics and CONTACT.encode() not in metrics
    log = w.log_path.read_bytes()
    assert VISITOR.encode() not in log and CONTACT.encode() not in log
    w.assert_alive()
