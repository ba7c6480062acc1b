"""Good, bad and duplicate events through a real broker and a real worker process."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from streams.kafka import ensure_topics
from streams.topics import Topics
from tests.conftest import REMOVE, event
from tests.fixtures_kafka import WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import produce_events, produce_raw, read_json, snapshots

pytestmark = pytest.mark.kafka

T0 = "2026-11-23T10:00:"


def test_topics_created_with_partitions_and_policies(kafka_env: dict[str, str]) -> None:
    s = settings_from(kafka_env)
    created = run(ensure_topics(s))
    topics = Topics(s)
    assert topics.input("page_view") in created and topics.snapshots in created
    assert all(name.startswith(s.namespace + ".") for name in created)

    async def describe() -> dict:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        from streams.kafka import client_kwargs

        admin = AIOKafkaAdminClient(**client_kwargs(s))
        await admin.start()
        try:
            meta = await admin.describe_topics([topics.input("page_view"), topics.snapshots])
            cfgs = await admin.describe_configs([
                ConfigResource(ConfigResourceType.TOPIC, topics.snapshots),
                ConfigResource(ConfigResourceType.TOPIC, topics.state("web")),
                ConfigResource(ConfigResourceType.TOPIC, topics.input("page_view"))])
            return {"meta": meta, "cfgs": cfgs}
        finally:
            await admin.close()

    info = run(describe())
    parts = {m["topic"]: len(m["partitions"]) for m in info["meta"]}
    assert parts[topics.input("page_view")] == 3 and parts[topics.snapshots] == 3
    policies = {}
    for resp in info["cfgs"]:
        for res in resp.resources:
            entries = {e[0]: e[1] for e in res[4]}
            policies[res[3]] = entries["cleanup.policy"]
    assert policies[topics.snapshots] == "compact"
    assert policies[topics.state("web")] == "compact"
    assert policies[topics.input("page_view")] == "delete"
    # a second call creates nothing: workers may all call it at start
    assert run(ensure_topics(s)) == []


def test_good_bad_and_duplicate_events_round_trip(kafka_env: dict[str, str], tmp_path: Path,
                                                  workers: list[WorkerProcess]) -> None:
    s = settings_from(kafka_env)
    topics = Topics(s)
    w = WorkerProcess(kafka_env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()

    views = [event("page_view", visitor_id=f"v{i}", occurred_at=f"{T0}{i:02d}Z")
             for i in range(20)]
    dup = dict(views[3])  # a tracker retry: same event_id
    forms = [event("form_submit", visitor_id="v1", contact_id="c1",
                   occurred_at=f"{T0}30Z")]
    spend = [event("spend", cost=50.0, currency="USD")]
    bad_events = [
        event("page_view", visitor_id=REMOVE),  # missing_field
        event("page_view", page_type="homepage"),  # invalid_value
        event("spend", currency="XYZ"),  # unknown_currency
        event("spend", cost=-10.0),  # negative_amount
        event("email_event", type="read"),  # invalid_value
    ]
    run(produce_events(s, [*views, dup, *forms, *spend, *bad_events]))
    raw_bad = [b"{not json", b"[1, 2]", orjson.dumps(event("page_view", event_type="page_veiw"))]
    run(produce_raw(s, topics.input("page_view"), raw_bad))

    wait_for(lambda: w.metric("kpi_streams_events_total", input="page_view",
                              outcome="accepted") >= 20, 60, "page views accepted")
    wait_for(lambda: w.metric("kpi_streams_rejected_events_total") >= 9, 60, "rejects")
    assert w.metric("kpi_streams_events_total", input="page_view", outcome="accepted") == 20
    assert w.metric("kpi_streams_events_total", input="page_view", outcome="duplicate") == 1
    assert w.metric("kpi_streams_events_total", input="form_submit", outcome="accepted") == 1
    assert w.metric("kpi_streams_events_total", input="spend", outcome="accepted") == 1
    assert w.metric("kpi_streams_rejected_events_total", input="page_view",
                    reason="malformed_json") == 1
    assert w.metric("kpi_streams_rejected_events_total", input="page_view",
                    reason="not_an_object") == 2
    assert w.metric("kpi_streams_rejected_events_total", input="spend",
                    reason="negative_amount") == 1

    # every reject is on its topic's DLQ, with the reason and the original bytes
    def dlq(event_type: str) -> list:
        return [doc for _, doc in run(read_json(s, topics.dlq(topics.input(event_type))))]

    pv = wait_for(lambda: (lambda d: d if len(d) >= 6 else None)(dlq("page_view")), 30,
                  "page view DLQ")
    reasons = sorted(d["reason"] for d in pv)
    assert reasons == ["invalid_value", "malformed_json", "missing_field", "not_an_object",
                       "not_an_object", "unknown_event_type"]
    malformed = next(d for d in pv if d["reason"] == "malformed_json")
    assert base64.b64decode(malformed["original"]) == b"{not json"
    assert malformed["topic"] == topics.input("page_view") and malformed["offset"] >= 0
    missing = next(d for d in pv if d["reason"] == "missing_field")
    assert missing["field"] == "visitor_id"
    assert orjson.loads(base64.b64decode(missing["original"]))["event_id"] == \
        bad_events[0]["event_id"]
    sp = dlq("spend")
    assert sorted((d["reason"], d["field"]) for d in sp) == [
        ("negative_amount", "cost"), ("unknown_currency", "currency")]
    em = dlq("email_event")
    assert [(d["reason"], d["field"]) for d in em] == [("invalid_value", "type")]

    # the duplicate and the bad events changed nothing: 20 page views, not 21
    def pageviews() -> float | None:
        snaps = run(snapshots(s))
        doc = snaps.get("pageviews|1h|2026-11-23T10:00:00Z|")
        return doc["numerator"] if doc and doc["numerator"] == 20 else None

    wait_for(pageviews, 60, "pageviews snapshot of 20")
    snaps = run(snapshots(s))
    spend_doc = snaps["spend|1h|2026-11-23T09:00:00Z|"]
    assert spend_doc["numerator"] == pytest.approx(46.0)  # 50 USD at 0.92
    assert spend_doc["unit"] == "EUR"
    w.assert_alive()  # bad input never crashes the worker
