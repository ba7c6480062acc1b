"""Erasure requests: what ``kpi-streams erase`` sends, and what the stages answer. Pure.

A request is a control record on an input topic, so it reaches the stage partition
that holds the person's state in order with that person's events: a visitor's on
the page-view partition its id hashes to; a contact's on the deal-update partition
its id hashes to (where the funnel stage keeps contacts) and on every page-view
partition (a contact's visitors are wherever their ids hash). The partition removes
the state, its flush writes tombstones to the changelog and an ``applied`` record to
the audit topic, atomically with the offset of the request: a crash repeats the
erasure, which changes nothing the second time.

Aggregated KPIs stay as they are: they hold counts and sums, no personal data. The
audit topic holds a hash of the id, never the id, so it can answer "was X erased?"
(hash X and look) without keeping X.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

CONTROL_PREFIX = b'{"kpi_control":'
KINDS = ("visitor", "contact")


def subject_hash(subject: str) -> str:
    return "sha256:" + hashlib.sha256(subject.encode()).hexdigest()


def request(kind: str, subject: str, request_id: str, at: str) -> dict[str, Any]:
    """The control record (its first key must be ``kpi_control``: see CONTROL_PREFIX)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    return {"kpi_control": "erase", "kind": kind, "subject": subject,
            "request_id": request_id, "requested_at": at}


def encode(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)  # dicts keep their order: kpi_control comes first


def parse(value: bytes | None) -> dict[str, Any] | None:
    """The control record in ``value``, or None when it is an ordinary message."""
    if value is None or not value.startswith(CONTROL_PREFIX):
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if (not isinstance(doc, dict) or doc.get("kpi_control") != "erase"
            or doc.get("kind") not in KINDS or not isinstance(doc.get("subject"), str)
            or not doc["subject"]):
        return None
    return doc


def plan(kind: str, subject: str, request_id: str, at: str, topics: Any,
         partitions: int) -> tuple[dict[str, Any], list[tuple[str, int]], set[str]]:
    """(request, the (topic, partition)s to send it to, the stage partitions that must
    confirm it). A visitor's state is on the page-view partition its id hashes to; a
    contact's in the funnel (its deal-update partition), in the customer stage when it
    is its own customer (B2C), and its visitors on any page-view partition."""
    from .produce import partition_for

    doc = request(kind, subject, request_id, at)
    p = partition_for(subject, partitions)
    if kind == "visitor":
        return doc, [(topics.input("page_view"), p)], {f"web/{p}"}
    targets = [(topics.input("deal_update"), p), (topics.customers, p)]
    targets += [(topics.input("page_view"), i) for i in range(partitions)]
    expected = {f"funnel/{p}", f"customers/{p}"} | {f"web/{i}" for i in range(partitions)}
    return doc, targets, expected


def requested(doc: dict[str, Any], targets: list[str]) -> dict[str, Any]:
    """The audit record of a request, as the CLI writes it."""
    return {"event": "requested", "request_id": doc["request_id"], "kind": doc["kind"],
            "subject": subject_hash(doc["subject"]), "at": doc["requested_at"],
            "targets": targets}


def applied(doc: dict[str, Any], stage: str, partition: int, removed: int,
            at: str) -> dict[str, Any]:
    """The audit record of one stage partition having carried a request out."""
    return {"event": "applied", "request_id": doc.get("request_id"), "kind": doc["kind"],
            "subject": subject_hash(doc["subject"]), "stage": stage,
            "partition": partition, "entries_removed": removed, "at": at}
