"""Lead scores, MQL crossings and lead-quality KPIs do not depend on arrival order
within the allowed lateness, nor on duplicates, nor on how events are batched."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import Decoder
from streams.local import LocalPipeline
from streams.produce import partition_for
from streams.settings import load_settings
from tests.conftest import event
from tests.unit.test_scoring import CFG

DECODER = Decoder.from_settings(load_settings({}))
T0 = 1_795_435_200_000  # 2026-11-23T12:00:00Z
FAR = T0 + 400 * 86_400_000
SCORED = ("scored_mqls", "avg_new_lead_score", "lead_grade_share")


def _iso(ms: int) -> str:
    from streams.events import iso_ms

    return iso_ms(ms)


@st.composite
def scenario(draw: Any) -> list[dict[str, Any]]:
    """Visitors browsing, some filling forms; contacts clicking e-mails; within 5 min."""
    events: list[dict[str, Any]] = []
    for v in range(draw(st.integers(2, 6))):
        vid = f"v{v}"
        for i in range(draw(st.integers(1, 8))):
            events.append(event("page_view", event_id=f"pv-{v}-{i}", visitor_id=vid,
                                page_type=draw(st.sampled_from(["pricing", "pricing", "blog",
                                                                 "other"])),
                                occurred_at=_iso(T0 + draw(st.integers(0, 300_000)))))
        if draw(st.booleans()):
            events.append(event("form_submit", event_id=f"fs-{v}", visitor_id=vid,
                                contact_id=f"c{v % 3}",
                                goal=draw(st.sampled_from(["demo_request", "demo_request",
                                                           "other"])),
                                occurred_at=_iso(T0 + draw(st.integers(0, 300_000)))))
    for i in range(draw(st.integers(0, 5))):
        events.append(event("email_event", event_id=f"em-{i}", message_id=f"m{i}",
                            campaign="nl", type=draw(st.sampled_from(["click", "bounce"])),
                            contact_id=f"c{draw(st.integers(0, 2))}",
                            occurred_at=_iso(T0 + draw(st.integers(0, 300_000)))))
    return events


def _run(events: list[dict[str, Any]], batches: int) -> tuple[list[Any], dict[str, Any],
                                                               dict[str, Any]]:
    recs = []
    for ev in events:
        r, _ = DECODER.decode(orjson.dumps(ev), None, FAR)
        recs += r
    lp = LocalPipeline(scoring=CFG)
    size = max(1, -(-len(recs) // batches))
    for i in range(0, len(recs), size):
        lp.feed(recs[i:i + size])
    snaps = lp.finish(FAR)
    kpis = {k: (d["numerator"], d["denominator"]) for k, d in snaps.items()
            if k.split("|")[0] in SCORED}
    scores = {}
    for c in ("c0", "c1", "c2"):
        doc = lp.funnel[partition_for(c, lp.partitions)].contact_score(c, T0 + 3_600_000)
        scores[c] = None if doc is None else round(doc["score"], 9)
    return sorted(lp.qualified, key=lambda q: q["contact_id"]), kpis, scores


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.randoms(use_true_random=False), st.integers(1, 5))
def test_scores_do_not_depend_on_arrival(events: list[dict[str, Any]], rnd: Any,
                                         batches: int) -> None:
    in_order = sorted(events, key=lambda e: e["occurred_at"])
    shuffled = list(events) + [e for e in events if rnd.random() < 0.2]  # duplicates
    rnd.shuffle(shuffled)
    assert _run(shuffled, batches) == _run(in_order, 1)
