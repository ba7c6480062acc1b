"""Emission rounds are bounded, and what a round leaves over survives a crash.

A replay of history changes tens of thousands of cells and rolling views at
once; the merge stage publishes them in rounds of bounded size. These tests
check that (a) publishing in small rounds ends in the same latest snapshots as
publishing everything at once, and (b) a worker that dies between rounds, and
is restored from its state changelog, still publishes everything left over.
"""

from __future__ import annotations

from typing import Any

from streams.kpis.merge import MergePartition, cell_store_key, roll_store_key, view_store_key
from streams.local import LocalPipeline
from streams.simulate import DAY
from tests.unit.kpitables import simulated

START = 1_790_812_800_000  # 2026-10-01T00:00:00Z


def _fed() -> LocalPipeline:
    return simulated(START, DAY // 4, seed=9, sessions_per_day=1500, kpi_partitions=1)


def _latest(rounds: list[list[tuple[str, Any]]]) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for out in rounds:
        for key, doc in out:
            latest[key] = doc
    return {k: (d["numerator"], d["denominator"], d["final"]) for k, d in latest.items()
            if d is not None}


def _restore(m: MergePartition) -> MergePartition:
    """A new partition built only from what the changelog would hold."""
    fresh = MergePartition(m.cfg)
    for key in m.cells:
        fresh.load(cell_store_key(key), m.dump(cell_store_key(key)))
    for vkey in m.views:
        fresh.load(view_store_key(vkey), m.dump(view_store_key(vkey)))
    for rkey in m.rolls:
        fresh.load(roll_store_key(rkey), m.dump(roll_store_key(rkey)))
    fresh.load_meta(m.meta())
    return fresh


def test_small_rounds_end_where_one_big_round_ends() -> None:
    whole = _fed().merge[0]
    reference = _latest([whole.emit(0)])
    assert len(reference) > 5000

    m = _fed().merge[0]
    rounds = []
    for _ in range(10_000):
        out = m.emit(0, max_cells=50, max_views=30, max_docs=500)
        assert len(out) <= 500 + 120  # one cell or view may finish past the budget
        rounds.append(out)
        if not m.pending and not m.views_todo and not m.rolls_todo:
            break
    assert len(rounds) > 10
    assert _latest(rounds) == reference


def test_rounds_bounded_in_time_get_somewhere_and_end_where_one_round_ends() -> None:
    """A round given a time budget (``until``) stops starting cells and views once it
    is spent, but publishes at least MIN_CELLS_PER_ROUND cells (and views up to
    MIN_DOCS_PER_ROUND documents), so even rounds whose budget is gone before they
    begin work off the backlog, views included."""
    from time import perf_counter

    from streams.kpis.merge.partition import MIN_CELLS_PER_ROUND, MIN_DOCS_PER_ROUND

    whole = _fed().merge[0]
    reference = _latest([whole.emit(0)])
    m = _fed().merge[0]
    pending = len(m.pending)
    first = m.emit(0, until=perf_counter())  # the budget is spent from the start
    assert len(m.emitted_cells) == MIN_CELLS_PER_ROUND
    assert len(m.pending) == pending - MIN_CELLS_PER_ROUND
    # the month views of those cells were published too, up to their own share
    months = [k for k, _ in first if k.split("|")[1] == "1mo"]
    assert months and m.emitted_views
    assert len([k for k, _ in first if k.split("|")[1] not in ("1m", "1h", "1d")]) \
        <= MIN_DOCS_PER_ROUND + 100  # one view may finish past it
    rounds = [first]
    for _ in range(10_000):
        rounds.append(m.emit(0, until=perf_counter()))
        if not m.pending and not m.views_todo and not m.rolls_todo:
            break
    assert len(rounds) > 10
    assert _latest(rounds) == reference
    # with time to spare, the budget changes nothing
    roomy = _fed().merge[0]
    assert _latest([roomy.emit(0, until=perf_counter() + 3600)]) == reference


def test_leftovers_survive_a_crash_between_rounds() -> None:
    whole = _fed().merge[0]
    reference = _latest([whole.emit(0)])

    m = _fed().merge[0]
    rounds = [m.emit(0, max_cells=200, max_views=100, max_docs=2000)]
    assert m.pending and m.views_todo, "the first round should leave work over"
    # the worker dies here; a new one restores the partition from its changelog and
    # republishes the last round (its outputs might not have been sent)
    m2 = _restore(m)
    m2.republish([list(k) for k in m.emitted_cells], [list(v) for v in m.emitted_views])
    assert m2.pending == m.pending | set(m.emitted_cells)
    assert m.views_todo <= m2.views_todo
    for _ in range(10_000):
        rounds.append(m2.emit(0, max_cells=200, max_views=100, max_docs=2000))
        if not m2.pending and not m2.views_todo and not m2.rolls_todo:
            break
    assert _latest(rounds) == reference


def test_catching_up_builds_only_finals_and_the_rest_once_caught_up() -> None:
    """While a replay is being caught up with (and nobody listens live), open cells'
    documents are not built: they wait, still marked unpublished, and the latest
    snapshots end where publishing everything at once ends."""
    reference = _latest([_fed().merge[0].emit(0)])
    m = _fed().merge[0]
    behind = m.emit(0, finals_only=True)
    assert behind and all(doc is None or doc["final"] or key.split("|")[1] not in
                          ("1m", "1h", "1d") for key, doc in behind)
    assert m.deferred and all(not m.cells[k].final for k in m.deferred)
    assert all(m.cells[k].unpublished for k in m.deferred)  # a crash forgets nothing
    built_behind = len(behind)
    caught_up = m.emit(0)
    assert not m.deferred
    assert _latest([behind, caught_up]) == reference
    assert built_behind < len(reference)  # the open cells were not built twice


def test_a_round_catching_up_spends_its_budget_on_finals_alone() -> None:
    """Catching up, the open cells leave a round's queue before it starts: each round
    of ``max_cells`` builds that many finals, however many open cells changed since
    the last. (Every round used to sort every changed cell, open or not, and spend its
    budget holding open ones back.)"""
    m = _fed().merge[0]
    m.emit(0, max_cells=50, finals_only=True)
    open_cells = {k for k, c in m.cells.items() if not c.final}
    finals = len(m.cells) - len(open_cells)
    assert open_cells and finals > 500
    assert m.deferred == open_cells and not m.pending & open_cells
    assert len(m.emitted_cells) == 50 and all(m.cells[k].final for k in m.emitted_cells)
    rounds = 1
    while m.pending:
        m.emit(0, max_cells=50, finals_only=True)
        assert all(m.cells[k].final for k in m.emitted_cells)
        rounds += 1
    assert rounds == -(-finals // 50)  # no round goes on anything but finals
    assert m.deferred == open_cells


def test_open_cells_a_live_round_left_queued_are_held_back_once_catching_up() -> None:
    """A live round that hit its budget leaves open cells queued; if catching up
    starts (a backlog lands), the rounds that follow still build no open cell's
    document, and hold those cells back with the rest."""
    m = _fed().merge[0]
    m.emit(0, max_cells=50)  # live: open cells too, 50 of them
    queued_open = {k for k in m.pending if not m.cells[k].final}
    assert queued_open
    built: list[tuple[str, Any]] = []
    while m.pending:
        built += m.emit(0, max_cells=500, finals_only=True)
    assert queued_open <= m.deferred
    assert all(doc is None or doc["final"] or key.split("|")[1] not in ("1m", "1h", "1d")
               for key, doc in built)


def test_a_cell_whose_families_change_becomes_final_though_the_watermarks_stand() -> None:
    """Finality follows the input watermarks and the cell's own families. While the
    watermarks stand, a round checks only cells changed since the last one: a cell
    whose slow family was retracted to zero is final at the next round."""
    from streams.kpis.merge import MergeConfig

    cfg = MergeConfig(feeds={"eng": ("engagements",), "spend": ("spend",)}, partitions=1)
    m = MergePartition(cfg)
    start = START
    far = START + 10 * DAY
    marks = {"engagements/0": far, "spend/0": start}  # spend's input is far behind
    cell = ("1h", start, "")

    def partial(seq: int, comps: dict[str, dict[str, int]]) -> Any:
        return {"src": "t/0", "seq": seq, "part": 0, "wm": marks,
                "d": [[fam, "1h", start, "", c] for fam, c in comps.items()], "h": []}

    m.apply(partial(1, {"eng": {"ae": 3}, "spend": {"cost": 5}}))
    m.emit(0)
    assert not m.cells[cell].final  # held back by spend
    m.emit(0)  # the watermarks stand: nothing changed, nothing to check
    assert not m.cells[cell].final
    m.apply(partial(2, {"spend": {"cost": -5}}))  # the spend is retracted
    out = m.emit(0)
    assert m.cells[cell].final, "the cell has only its engagement left, whose input passed"
    assert any(doc and doc["final"] for _, doc in out)
