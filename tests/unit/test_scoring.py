"""Lead scoring (section 11): rules, decay, the visitor-to-contact link, MQL crossings
emitted once, the lead-quality KPIs, and the validation of the rules file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.events import Decoder
from streams.kpis.scoring import ScoringConfigError, load_scoring, parse_scoring
from streams.local import LocalPipeline
from tests.conftest import event
from tests.unit.kpitables import FAR, form, ms, pv, records, snap

RULES = {
    "half_life_days": 10,
    "mql_threshold": 50,
    "grades": {"A": 60, "B": 30, "C": 0},
    "rules": [
        {"name": "pricing", "on": "page_view", "when": {"page_type": "pricing"}, "points": 10},
        {"name": "blog", "on": "page_view", "when": {"page_type": "blog"}, "points": 1},
        {"name": "demo", "on": "form_submit", "when": {"goal": "demo_request"}, "points": 30},
        {"name": "click", "on": "email_event", "when": {"type": "click"}, "points": 5},
        {"name": "bounce", "on": "email_event", "when": {"type": "bounce"}, "points": -20},
        {"name": "guest", "on": "engagement", "when": {"kind": "event_attendance"},
         "points": 20},
    ],
}
CFG = parse_scoring(RULES)
D0 = "2026-11-20T10:00:00Z"
D1 = "2026-11-21T10:00:00Z"
HL = 10 * 1440.0  # half-life in minutes


def decay(minutes: float) -> float:
    return 0.5 ** (minutes / HL)


EVENTS = [
    # c1's visitor, before anyone knows who it is: pricing, then a blog post
    pv("v1", "2026-11-20T10:00:00Z", page_type="pricing"),
    pv("v1", "2026-11-20T10:05:00Z", page_type="blog"),
    # a day later: pricing again, then the demo form names contact c1
    pv("v1", "2026-11-21T10:00:00Z", page_type="pricing"),
    form("v1", "c1", "2026-11-21T10:02:00Z", goal="demo_request"),
    # c2 is known from e-mail and a conference badge scan only
    event("email_event", message_id="m2", campaign="nl", type="click",
          occurred_at="2026-11-21T10:03:00Z", contact_id="c2"),
    event("email_event", message_id="m3", campaign="nl", type="click",
          occurred_at="2026-11-21T10:04:00Z", contact_id="c2"),
    event("engagement", channel="offline", campaign="fair", content_id="booth",
          kind="event_attendance", occurred_at="2026-11-21T10:04:30Z", contact_id="c2"),
    # c3: a bounce counts against
    event("email_event", message_id="m4", campaign="nl", type="bounce",
          occurred_at="2026-11-21T10:05:00Z", contact_id="c3"),
    pv("v3", "2026-11-21T10:05:30Z", page_type="pricing"),
    form("v3", "c3", "2026-11-21T10:06:00Z", goal="demo_request"),
]

# c1 at the form (10:02 on day 1): every fact so far, decayed
C1_AT_FORM = 10 * decay(1440 + 2) + 1 * decay(1440 - 3) + 10 * decay(2) + 30
# one hour after the lead
C1_AFTER_HOUR = 10 * decay(1440 + 62) + 1 * decay(1440 + 57) + 10 * decay(62) + 30 * decay(60)
C3_AFTER_HOUR = -20 * decay(61) + 10 * decay(60.5) + 30 * decay(60)


def run(decoder: Decoder, events: list[dict[str, Any]],
        batches: int = 1) -> tuple[LocalPipeline, dict[str, Any]]:
    lp = LocalPipeline(scoring=CFG)
    recs = records(decoder, events)
    size = max(1, -(-len(recs) // batches))
    for i in range(0, len(recs), size):
        lp.feed(recs[i:i + size])
    return lp, lp.finish(FAR)


def funnel_of(lp: LocalPipeline, contact: str) -> Any:
    from streams.produce import partition_for

    return lp.funnel[partition_for(contact, lp.partitions)]


def test_hand_computed_table() -> None:
    assert pytest.approx(50.26, abs=0.01) == C1_AT_FORM  # the arithmetic, checked by eye


def test_pre_contact_behaviour_counts_once_linked(decoder: Decoder) -> None:
    lp, _ = run(decoder, EVENTS)
    c1 = funnel_of(lp, "c1").contact_score("c1", ms("2026-11-21T10:02:00Z"))
    assert c1["score"] == pytest.approx(C1_AT_FORM, abs=1e-3)
    assert c1["known_since"] == "2026-11-21T10:02:00.000Z"
    assert {r["rule"]: r["times"] for r in c1["rules"]} == {"pricing": 2, "blog": 1,
                                                              "demo": 1}


def test_decay_halves_a_score_every_half_life(decoder: Decoder) -> None:
    lp, _ = run(decoder, EVENTS)
    f = funnel_of(lp, "c2")
    now = ms("2026-11-21T10:04:30Z")
    assert f.contact_score("c2", now)["score"] == pytest.approx(
        5 * decay(1.5) + 5 * decay(0.5) + 20, abs=1e-3)
    later = f.contact_score("c2", now + 10 * 86_400_000)["score"]
    assert later == pytest.approx(f.contact_score("c2", now)["score"] / 2, abs=1e-6)
    # 5 + 5 + 20 would be grade B (30), but the clicks have decayed a little: 29.998
    assert f.contact_score("c2", now)["grade"] == "C"


def test_a_crossing_is_emitted_once_with_its_rules(decoder: Decoder) -> None:
    lp, snaps = run(decoder, EVENTS)
    assert [q["contact_id"] for q in lp.qualified] == ["c1"]
    q = lp.qualified[0]
    assert q["qualified_at"] == "2026-11-21T10:02:00.000Z"
    assert q["score"] == pytest.approx(C1_AT_FORM, abs=1e-3)
    assert q["grade"] == "B" and q["threshold"] == 50
    assert [r["rule"] for r in q["rules"]] == ["demo", "pricing", "blog"]
    # more activity later never emits c1 again
    lp.feed(records(decoder, [pv("v1", "2026-11-21T12:00:00Z", page_type="pricing")]))
    lp.finish(FAR + 1)
    assert [q["contact_id"] for q in lp.qualified] == ["c1"]
    doc = snap(snaps, "scored_mqls", "1h", "2026-11-21T10:00:00Z")
    assert (doc["value"], doc["numerator"]) == (1, 1)


def test_new_lead_scores_and_grades(decoder: Decoder) -> None:
    _, snaps = run(decoder, EVENTS)
    h = "2026-11-21T10:00:00Z"
    doc = snap(snaps, "avg_new_lead_score", "1h", h)
    assert doc["denominator"] == 2  # c1 and c3 became leads (demo requests)
    assert doc["value"] == pytest.approx((C1_AFTER_HOUR + C3_AFTER_HOUR) / 2, abs=1e-3)
    share = {g: snap(snaps, "lead_grade_share", "1h", h, f"grade={g}") for g in "ABC"}
    assert {g: (d["numerator"], d["denominator"]) for g, d in share.items()} == {
        "A": (0, 2), "B": (1, 2), "C": (1, 2)}
    assert share["B"]["value"] == 0.5


def test_empty_denominators_are_null(decoder: Decoder) -> None:
    # a contact that is scored but never becomes a lead: no lead-score KPIs at all,
    # and a bucket with MQL crossings only has no average to report
    _, snaps = run(decoder, EVENTS[4:7])
    assert not any(k.startswith("avg_new_lead_score|") for k in snaps)
    assert not any(k.startswith("scored_mqls|") for k in snaps)


@pytest.mark.parametrize("batches", [2, 3, 10])
def test_arrival_in_batches_changes_nothing(decoder: Decoder, batches: int) -> None:
    lp1, snaps1 = run(decoder, EVENTS)
    lp2, snaps2 = run(decoder, EVENTS, batches)
    assert lp2.qualified == lp1.qualified
    keys = [k for k in snaps1 if k.split("|")[0] in ("scored_mqls", "avg_new_lead_score",
                                                      "lead_grade_share")]
    assert keys and all(snaps2[k]["numerator"] == snaps1[k]["numerator"] for k in keys)


# -- the rules file -----------------------------------------------------------------------
def test_the_built_in_rules_load() -> None:
    cfg = load_scoring(Path("streams/config/lead_scoring.json"))
    assert cfg.mql_threshold > 0 and cfg.rules and cfg.grades[0][0] == "A"


@pytest.mark.parametrize(("change", "message"), [
    ({"half_life_days": 0}, "half_life_days must be a positive number"),
    ({"mql_threshold": "high"}, "mql_threshold"),
    ({"grades": {}}, "grades must map"),
    ({"rules": []}, "rules must be a non-empty list"),
    ({"rules": [{"name": "x", "on": "tweet", "points": 1}]}, "on must be one of"),
    ({"rules": [{"name": "x", "on": "page_view", "when": {"url": "/pricing"},
                 "points": 1}]}, "page_view has no field 'url'"),
    ({"rules": [{"name": "x", "on": "page_view", "when": {"page_type": "pricng"},
                 "points": 1}]}, "['pricng'] not among"),
    ({"rules": [{"name": "x", "on": "form_submit", "points": 0}]}, "non-zero number"),
    ({"rules": [{"name": "x", "on": "form_submit", "points": 1},
                {"name": "x", "on": "form_submit", "points": 2}]}, "used twice"),
    ({"extra": 1}, "unknown keys"),
])
def test_bad_rules_files_name_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ScoringConfigError, match=message.replace("[", r"\[").replace(
            "]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        parse_scoring({**RULES, **change})


def test_worker_refuses_a_bad_rules_file_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps({**RULES, "rules": [{"name": "x", "on": "page_view",
                                                  "when": {"colour": "red"}, "points": 1}]}))
    r = subprocess.run([sys.executable, "-m", "streams.cli", "score", "c1"],
                       env={"KPI_LEAD_SCORING": str(bad), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "page_view has no field 'colour'" in r.stderr


def test_pre_contact_behaviour_survives_the_visitor_going_cold(decoder: Decoder) -> None:
    """v1's pricing and blog views of day 0 wait in the cold store (with its touches)
    until the day-1 form names c1; then they count exactly as if v1 had stayed hot."""
    lp = LocalPipeline(scoring=CFG)
    lp.feed(records(decoder, EVENTS[:2]))
    lp.feed(records(decoder, [pv("other", "2026-11-21T09:00:00Z")]))  # day 0 is closed
    lp.expire()
    web = next(w for w in lp.web if w.cold.count())
    assert "v1" not in web.visitors and web.cold.count() == 1
    lp.feed(records(decoder, EVENTS[2:]))
    lp.finish(FAR)
    c1 = funnel_of(lp, "c1").contact_score("c1", ms("2026-11-21T10:02:00Z"))
    assert c1["score"] == pytest.approx(C1_AT_FORM, abs=1e-3)
    assert {r["rule"]: r["times"] for r in c1["rules"]} == {"pricing": 2, "blog": 1,
                                                              "demo": 1}
