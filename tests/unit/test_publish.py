"""The KPI topic gets each key's latest value at its cadence, finals at once, and
nothing it already has; a replay puts only finals on it.

Part one drives :class:`TopicPublisher` with hand-made documents; part two runs a
simulated day through the in-process pipeline, round by round as the worker's
merge stage does, and counts what would reach the topic.
"""

from __future__ import annotations

from typing import Any

from streams.events import Decoder
from streams.kpis.publish import PublishConfig, TopicPublisher, catching_up
from streams.local import LocalPipeline, decode_all
from streams.settings import load_settings
from streams.simulate import DAY, HOUR, Options, generate

WINDOWS = frozenset({"1h", "1d", "1mo", "15m", "24h", "7d", "30d"})


def doc(value: float, final: bool = False, start: str = "2026-11-23T10:00:00Z") -> dict:
    return {"value": value, "numerator": value, "denominator": 1, "final": final,
            "window_start": start}


def pub() -> TopicPublisher:
    return TopicPublisher(PublishConfig(WINDOWS, fast_ms=5_000, slow_ms=60_000))


H = "leads|1h|2026-11-23T10:00:00Z|"
D = "leads|1d|2026-11-23T00:00:00Z|"
V = "leads|24h|"


def test_open_cells_wait_for_their_cadence_and_only_the_latest_goes() -> None:
    p = pub()
    t0 = 1_000_000
    assert p.offer([(H, doc(1)), (D, doc(1)), (V, doc(1))]) == []
    assert p.offer([(H, doc(2)), (D, doc(2))]) == []
    out = dict(p.due(t0, catching_up=False))  # the first round after a start: all
    assert out[H]["value"] == 2 and out[D]["value"] == 2 and out[V]["value"] == 1
    assert p.waiting() == 0
    p.offer([(H, doc(3)), (D, doc(3))])
    assert [k for k, _ in p.due(t0 + 4_000, False)] == []  # 4 s after the last: not yet
    assert [k for k, _ in p.due(t0 + 5_000, False)] == [H]  # 1h: every 5 s
    assert [k for k, _ in p.due(t0 + 59_000, False)] == []  # 1d: every 60 s
    assert [k for k, _ in p.due(t0 + 60_000, False)] == [D]


def test_an_unchanged_value_is_not_sent_again() -> None:
    p = pub()
    p.offer([(H, doc(1))])
    assert len(p.due(5_000, False)) == 1
    p.offer([(H, doc(1))])  # recomputed, same value (another KPI of the cell changed)
    assert p.due(10_000, False) == []
    p.offer([(H, doc(2)), (H, doc(1))])  # changed and back again within one interval
    assert p.due(15_000, False) == []
    # a rolling view that moved on keeps its value but not its window: sent
    p.offer([(V, doc(1))])
    p.due(60_000, False)
    p.offer([(V, doc(1, start="2026-11-22T12:00:00Z"))])
    assert [k for k, _ in p.due(120_000, False)] == [V]


def test_finals_and_tombstones_go_at_once_and_restatements_too() -> None:
    p = pub()
    p.offer([(H, doc(1))])
    assert p.offer([(H, doc(4, final=True))]) == [(H, doc(4, final=True))]
    assert p.waiting() == 0  # the open value it replaced is not sent after it
    # a restatement (late cost) of a final bucket is a new final: sent, once
    assert p.offer([(H, doc(5, final=True))]) == [(H, doc(5, final=True))]
    p.offer([(D, doc(1))])
    assert p.offer([(D, None)]) == [(D, None)]
    assert p.due(10**9, False) == []
    assert p.offer([("leads|1m|2026-11-23T10:00:00Z|", doc(1, final=True))]) == []


def test_catching_up_holds_open_values_until_it_has_caught_up() -> None:
    p = pub()
    p.offer([(H, doc(1)), (V, doc(1))])
    assert p.due(10**6, catching_up=True) == []
    assert len(p.offer([(D, doc(2, final=True))])) == 1  # finals still go
    assert {k for k, _ in p.due(10**6 + 1, catching_up=False)} == {H, V}


def test_catching_up_means_behind_while_data_arrives() -> None:
    wall = 10 * DAY
    assert catching_up(wall, wall - DAY, wall - 1_000, HOUR, 10_000)
    assert not catching_up(wall, wall - DAY, wall - 60_000, HOUR, 10_000)  # replay over
    assert not catching_up(wall, wall - 60_000, wall, HOUR, 10_000)  # live
    assert not catching_up(wall, None, wall, HOUR, 10_000)


START = 1_790_812_800_000  # 2026-10-01T00:00:00Z


def _replay(live: bool) -> tuple[int, int, dict[str, int]]:
    """Feed a simulated half day in batches, emitting and offering after each batch as
    the merge stage does; return (events, messages to the topic, sends per key)."""
    events = [e for b in generate(START, START + DAY // 2,
                                  Options(seed=4, sessions_per_day=2000)) for e in b]
    recs = decode_all(Decoder.from_settings(load_settings({})), events, START + 400 * DAY)
    lp = LocalPipeline(kpi_partitions=1, publish=set(WINDOWS))
    m = lp.merge[0]
    p = pub()
    sends: dict[str, int] = {}

    def send(out: list[tuple[str, Any]]) -> None:
        for key, _ in out:
            sends[key] = sends.get(key, 0) + 1

    wall = START if live else START + 30 * DAY
    for i in range(0, len(recs), 200):
        lp.feed(recs[i:i + 200], wall_ms=wall)
        wall += 1_000
        send(p.offer(m.emit(wall, publish=set(WINDOWS))))
        send(p.due(wall, catching_up=not live))
    # the replay is over: every source's watermark moves on (idle partitions), the
    # buckets become final, and what was held back goes out
    for name in list(m.src_wm):
        m.src_wm[name] = START + 400 * DAY
    while m.pending or m.rolls_todo or m.views_todo:
        send(p.offer(m.emit(wall, publish=set(WINDOWS))))
    send(p.due(wall + 3_600_000, catching_up=False))
    return len(recs), sum(sends.values()), sends


def test_a_replay_puts_each_key_on_the_topic_about_once() -> None:
    n, messages, sends = _replay(live=False)
    assert n > 5_000
    assert messages / n < 1.5, (messages, n)
    assert messages / len(sends) <= 2, (messages, len(sends))
