"""Erasure requests (pure): the control record, and what a web partition removes."""

from __future__ import annotations

import orjson

from streams import erasure
from streams.events import Decoder
from streams.kpis.visitors import hot_name
from streams.kpis.web import WebConfig, WebPartition
from tests.unit.kpitables import form, pv, records


def test_control_records_are_recognised_and_nothing_else_is() -> None:
    doc = erasure.request("visitor", "v1", "r1", "2026-11-23T10:00:00Z")
    assert erasure.parse(erasure.encode(doc)) == doc
    assert erasure.encode(doc).startswith(erasure.CONTROL_PREFIX)
    for junk in (b'{"kpi_control": "erase"}', b'{"kpi_control":"drop","kind":"visitor",'
                 b'"subject":"v1"}', b'{"event_type":"page_view"}', None,
                 b'{"kpi_control":"erase","kind":"visitor","subject":""}'):
        assert erasure.parse(junk) is None
    audit = erasure.applied(doc, "web", 3, 2, "2026-11-23T10:00:01Z")
    assert "v1" not in orjson.dumps(audit).decode()  # a hash, not the id
    assert audit["subject"] == erasure.subject_hash("v1")


def test_a_web_partition_forgets_a_visitor_and_its_contacts_visitors(
        decoder: Decoder) -> None:
    part = WebPartition(WebConfig())
    evs = [pv("v1", "2026-11-23T10:00:00Z"), pv("v1", "2026-11-23T10:01:00Z",
                                                 traffic_type="bot"),
           pv("v2", "2026-11-23T10:00:00Z"), form("v2", "c9", "2026-11-23T10:02:00Z"),
           pv("v3", "2026-11-23T10:00:00Z")]
    part.process([("t", r) for r in records(decoder, evs)], 1_795_460_000_000)
    keys, removed = part.erase_visitor("v1")
    assert removed == 2 and hot_name("v1") in keys  # its human and its bot traffic
    keys, removed = part.erase_contact("c9")
    assert (keys, removed) == ({hot_name("v2")}, 1)
    assert set(part.visitors) == {"v3"}
    assert part.erase_visitor("v1") == (set(), 0)  # a repeat changes nothing


def test_a_plan_names_every_partition_that_holds_the_person() -> None:
    from streams.produce import partition_for
    from streams.settings import load_settings
    from streams.topics import Topics

    topics = Topics(load_settings({}))
    doc, targets, expected = erasure.plan("visitor", "v1", "r1", "t", topics, 6)
    p = partition_for("v1", 6)
    assert (targets, expected) == ([(topics.input("page_view"), p)], {f"web/{p}"})
    doc, targets, expected = erasure.plan("contact", "c1", "r2", "t", topics, 6)
    p = partition_for("c1", 6)
    assert (topics.input("deal_update"), p) in targets and (topics.customers, p) in targets
    assert len(targets) == 2 + 6 and len(expected) == 2 + 6
    assert doc["kind"] == "contact" and doc["request_id"] == "r2"
