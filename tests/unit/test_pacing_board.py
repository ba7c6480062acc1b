"""Targets read out of real merge state (the in-process pipeline): the period comes from
the partition's event time, the value from the calendar view, the document matches its
JSON Schema, a changed pacing is published once, and the gauges are relative to goals."""

from __future__ import annotations

from typing import Any

import jsonschema
from prometheus_client import CollectorRegistry, generate_latest

from streams.events import Decoder
from streams.kpis.targets import parse_targets
from streams.local import LocalPipeline
from streams.outputs.pacing import TargetBoard, TargetCollector, target_key
from streams.schemas import load_schema
from tests.unit.kpitables import form, pv, records

TARGETS = """
targets:
  - kpi: leads
    period: 1mo
    at_least: 9
  - kpi: leads
    period: 1mo
    dims: {channel: paid_search}
    at_least: 30
  - name: bounce
    kpi: bounce_rate
    period: 1mo
    at_most: 0.2
  - kpi: revenue
    period: 1q
    at_least: 1000
"""

# the site's data starts with the month (v0 at 1 Nov 00:00); three leads in its first
# days (direct), then a page view that moves event time (the newest watermark) to
# 11 Nov 00:00: 10 of November's 30 days have passed
EVENTS = [
    pv("v0", "2026-11-01T00:00:00Z"),
    pv("v1", "2026-11-02T10:00:00Z"), form("v1", "c1", "2026-11-02T10:01:00Z"),
    pv("v2", "2026-11-03T10:00:00Z"), form("v2", "c2", "2026-11-03T10:01:00Z"),
    pv("v3", "2026-11-04T10:00:00Z"), pv("v3", "2026-11-04T10:02:00Z"),
    form("v3", "c3", "2026-11-04T10:03:00Z"),
    pv("v4", "2026-11-11T00:00:00Z"),
]


def _board(decoder: Decoder) -> tuple[LocalPipeline, TargetBoard]:
    lp = LocalPipeline(partitions=1)
    lp.feed(records(decoder, EVENTS))
    lp.emit()
    board = TargetBoard(parse_targets(TARGETS, "targets.yaml"),
                        lambda: dict(enumerate(lp.merge)), lp.kpi_partitions,
                        clock=lambda: 1_800_000_000.0)
    return lp, board


def test_pacing_from_the_merge_state(decoder: Decoder) -> None:
    _, board = _board(decoder)
    docs = {d["target"]: d for d in board.evaluate()}
    assert set(docs) == {"leads-1mo", "leads-1mo-channel-paid_search", "bounce", "revenue-1q"}
    leads = docs["leads-1mo"]
    assert (leads["window_start"], leads["window_end"], leads["as_of"]) == \
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-11-11T00:00:00Z")
    # 3 leads after 10 of 30 days: expected 9 x 1/3 = 3, projected 3 x 3 = 9: on pace
    assert leads["elapsed"] == round(1 / 3, 4)
    assert (leads["value"], leads["expected"], leads["projected"]) == (3, 3, 9)
    assert (leads["attainment"], leads["status"]) == (round(3 / 9, 4), "on_pace")
    paid = docs["leads-1mo-channel-paid_search"]  # no paid lead at all yet
    assert paid["dims"] == {"channel": "paid_search"} and paid["status"] == "no_data"
    # 5 sessions; v1 and v2 converted, v3 saw two pages: v0 and v4 bounced. A ratio
    # does not accumulate: expected is the goal, projected the value; 0.4 > 0.2 x 1.05
    bounce = docs["bounce"]
    assert bounce["value"] == 0.4 and bounce["expected"] == 0.2
    assert (bounce["projected"], bounce["status"]) == (0.4, "behind")
    # the data reaches back to November's start, not to the quarter's (1 Oct)
    assert [d["target"] for d in docs.values() if not d["covered"]] == ["revenue-1q"]
    q = docs["revenue-1q"]  # Q4: 1 Oct .. 1 Jan, 41 of 92 days passed, no revenue
    assert (q["window_start"], q["window_end"]) == ("2026-10-01T00:00:00Z",
                                                   "2027-01-01T00:00:00Z")
    assert q["elapsed"] == round(41 / 92, 4) and q["status"] == "no_data"
    schema = load_schema("kpi_target")
    for doc in docs.values():
        jsonschema.validate(doc, schema)


def test_only_changed_pacing_is_published_again(decoder: Decoder) -> None:
    lp, board = _board(decoder)
    first = board.changed(board.evaluate())
    assert {k for k, _ in first} == {target_key(t) for t in board.targets}
    assert "target|leads-1mo|1mo" in dict(first)
    assert board.changed(board.evaluate()) == []  # only the clock moved
    lp.feed(records(decoder, [pv("v5", "2026-11-12T09:00:00Z"),
                              form("v5", "c5", "2026-11-12T09:01:00Z"),
                              pv("v6", "2026-11-13T00:00:00Z")]))
    lp.emit()
    again = dict(board.changed(board.evaluate()))
    assert again["target|leads-1mo|1mo"]["value"] == 4
    board.forget(["target|leads-1mo|1mo"])  # the send failed: the next round resends
    assert [k for k, _ in board.changed(board.evaluate())] == ["target|leads-1mo|1mo"]


def test_gauges_are_relative_to_the_goal(decoder: Decoder) -> None:
    _, board = _board(decoder)
    registry = CollectorRegistry()
    registry.register(TargetCollector(board))
    text = generate_latest(registry).decode()

    def sample(name: str, target: str, **extra: Any) -> float:
        labels = f'target="{target}"'
        for line in text.splitlines():
            if line.startswith(name + "{") and labels in line and \
                    all(f'{k}="{v}"' in line for k, v in extra.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no {name} for {target} in\n{text}")

    assert sample("kpi_streams_target_attainment_ratio", "leads-1mo") == round(3 / 9, 4)
    assert sample("kpi_streams_target_expected_ratio", "bounce") == 1.0
    assert sample("kpi_streams_target_projected_ratio", "leads-1mo") == 1.0
    assert sample("kpi_streams_target_behind", "bounce") == 1.0
    assert sample("kpi_streams_target_behind", "leads-1mo") == 0.0
    assert sample("kpi_streams_target_status", "leads-1mo-channel-paid_search",
                  status="no_data") == 1.0


def test_data_that_starts_mid_month_is_paced_over_the_days_it_covers(decoder: Decoder) -> None:
    """Without v0 the data starts on 2 Nov 10:00 (the oldest hour held): 206 of the
    month's 720 hours are observed by 11 Nov 00:00, and 3 leads in them run at
    3 x 720 / 206 = 10.49 a month, on pace for 9 rather than "behind" for lack of the
    days before the data."""
    lp = LocalPipeline(partitions=1)
    lp.feed(records(decoder, EVENTS[1:]))
    lp.emit()
    board = TargetBoard(parse_targets(TARGETS, "targets.yaml"),
                        lambda: dict(enumerate(lp.merge)), lp.kpi_partitions,
                        clock=lambda: 1_800_000_000.0)
    leads = next(d for d in board.evaluate() if d["target"] == "leads-1mo")
    assert leads["covered"] is False and leads["value"] == 3
    assert leads["expected"] == round(9 * 206 / 720, 6)
    assert leads["projected"] == round(3 * 720 / 206, 6)
    assert leads["status"] == "ahead"  # 10.49 >= 9 x 1.05


def test_a_board_asked_before_the_data_came_sees_it_when_it_comes(decoder: Decoder) -> None:
    """The wall asks for targets as soon as the worker starts: "no data yet" must not be
    remembered (the clock does not move here, well inside the half-minute memory)."""
    lp = LocalPipeline(partitions=1)
    board = TargetBoard(parse_targets(TARGETS, "targets.yaml"),
                        lambda: dict(enumerate(lp.merge)), lp.kpi_partitions,
                        clock=lambda: 1_800_000_000.0)
    early = next(d for d in board.evaluate() if d["target"] == "leads-1mo")
    assert early["status"] == "no_data" and early["value"] is None
    lp.feed(records(decoder, EVENTS))
    lp.emit()
    leads = next(d for d in board.evaluate() if d["target"] == "leads-1mo")
    assert leads["covered"] and leads["projected"] == 9 and leads["status"] == "on_pace"
