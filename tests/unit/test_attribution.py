"""Attribution models against hand-computed credit (kpi-catalogue sections 7 and 10)."""

from __future__ import annotations

import pytest

from streams.events import Decoder
from streams.kpis.attribution import MODELS, credit, touches_for
from streams.kpis.deltas import MICRO, split_micro
from tests.unit.kpitables import form, pv, run_pipeline, value

DAY = 86_400_000
HL = 7 * DAY
LEAD = 100 * DAY
# three sessions before the lead, then the form's own channel
TOUCHES = [(LEAD - 20 * DAY, "organic_search"), (LEAD - 7 * DAY, "direct"),
           (LEAD - 1 * DAY, "paid_social"), (LEAD, "email")]


def as_fractions(shares: list[tuple[str, int]]) -> dict[str, float]:
    assert sum(v for _, v in shares) == MICRO
    return {c: v / MICRO for c, v in shares}


@pytest.mark.parametrize(("model", "want"), [
    ("first_touch", {"organic_search": 1.0}),
    ("last_touch", {"email": 1.0}),
    ("last_non_direct", {"email": 1.0}),
    ("linear", {"organic_search": 0.25, "direct": 0.25, "paid_social": 0.25, "email": 0.25}),
    ("position_based", {"organic_search": 0.4, "direct": 0.1, "paid_social": 0.1,
                        "email": 0.4}),
])
def test_models(model: str, want: dict[str, float]) -> None:
    got = as_fractions(credit(model, TOUCHES, LEAD, HL))
    assert got == pytest.approx(want, abs=1e-6)


def test_time_decay() -> None:
    # weights 2^(-20/7), 2^(-1), 2^(-1/7), 1
    w = [2 ** (-20 / 7), 0.5, 2 ** (-1 / 7), 1.0]
    s = sum(w)
    want = {"organic_search": w[0] / s, "direct": w[1] / s, "paid_social": w[2] / s,
            "email": w[3] / s}
    assert as_fractions(credit("time_decay", TOUCHES, LEAD, HL)) == pytest.approx(
        want, abs=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_no_touch_is_direct(model: str) -> None:
    assert credit(model, [], LEAD, HL) == [("direct", MICRO)]


def test_position_based_one_and_two_touches() -> None:
    assert as_fractions(credit("position_based", TOUCHES[:1], LEAD, HL)) == {
        "organic_search": 1.0}
    assert as_fractions(credit("position_based", TOUCHES[:2], LEAD, HL)) == {
        "organic_search": 0.5, "direct": 0.5}


def test_last_non_direct_skips_direct_and_falls_back() -> None:
    touches = [(1, "paid_search"), (2, "direct")]
    assert credit("last_non_direct", touches, 3, HL) == [("paid_search", MICRO)]
    assert credit("last_non_direct", [(1, "direct")], 3, HL) == [("direct", MICRO)]


def test_touch_window() -> None:
    sessions = [(LEAD - 31 * DAY, "display"), (LEAD - 30 * DAY, "referral"),
                (LEAD + 1, "email")]
    assert touches_for(sessions, LEAD, None, 30 * DAY) == [(LEAD - 30 * DAY, "referral")]
    assert touches_for(sessions, LEAD, "offline", 30 * DAY)[-1] == (LEAD, "offline")


def test_credit_splits_sum_exactly() -> None:
    shares = split_micro([("a", 1.0), ("b", 1.0), ("c", 1.0)])
    assert sum(v for _, v in shares) == MICRO
    assert sorted(v for _, v in shares) == [333_333, 333_333, 333_334]


def test_linear_lead_credit_through_the_pipeline(decoder: Decoder) -> None:
    evs = [pv("A", "2026-11-20T09:00:00Z", referrer="https://www.google.com/"),
           pv("A", "2026-11-22T09:00:00Z", utm_medium="cpc"),
           pv("A", "2026-11-23T09:00:00Z", utm_medium="email"),
           form("A", "cA", "2026-11-23T09:01:00Z")]
    from streams.kpis.catalogue import Modes

    snaps = run_pipeline(decoder, evs, attribution="linear",
                         modes=Modes(attribution="linear"))
    h = "2026-11-23T09:00:00Z"
    for channel in ("organic_search", "paid_search", "email"):
        assert value(snaps, "leads", "1h", h, f"channel={channel}") == pytest.approx(
            1 / 3, abs=1e-6)
    assert value(snaps, "leads", "1h", h) == 1
    first = run_pipeline(decoder, evs)
    assert value(first, "leads", "1h", h, "channel=organic_search") == 1


def test_a_leads_credit_is_worked_out_once_for_the_same_touches(
        decoder: Decoder, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.kpis import attribution
    from streams.kpis.web import WebConfig, WebPartition
    from tests.unit.kpitables import FAR, records

    calls: list[int] = []
    real = attribution.all_models

    def counted(touches: list, lead_t: int, half_life_ms: int) -> tuple:
        calls.append(lead_t)
        return real(touches, lead_t, half_life_ms)

    monkeypatch.setattr(attribution, "all_models", counted)
    web = WebPartition(WebConfig())
    topic = "page_views"

    def step(events: list) -> list:
        return web.process([(topic, r) for r in records(decoder, events)], FAR).leads

    first = step([pv("A", "2026-11-23T10:00:00Z", utm_medium="cpc", utm_source="g"),
                  form("A", "cA", "2026-11-23T10:01:00Z")])
    assert len(first) == 1 and len(calls) == 1
    # the same session grows: the lead's touches are the same, nothing is sent again
    assert step([pv("A", "2026-11-23T10:02:00Z")]) == [] and len(calls) == 1
    # a late page view from a search engine now starts the session: the touch changes,
    # so the credit is worked out again and a new candidate goes out
    again = step([pv("A", "2026-11-23T09:55:00Z", referrer="https://www.google.com/")])
    assert len(calls) == 2 and len(again) == 1
    assert again[0]["credit"]["first_touch"] == [["organic_search", 1_000_000]]
    assert first[0]["credit"]["first_touch"] == [["paid_search", 1_000_000]]
