"""Stage 3: merge partial aggregates into cells and turn cells into KPI snapshots. Pure.

A *cell* is one bucket of one dim, ``(size, start, dim)``, holding the integer
components of every family that reported into it. All cells of a dim live on
the same stage-3 partition, so KPIs that combine families (CPL = spend / leads)
and rolling views (24h = the last 24 hour cells) are computed locally.

Partials carry their source and a sequence number; a partial seen before is
ignored, so a stage-1 replay after a crash cannot count twice. Partials also
carry their source partitions' watermarks, from which cell finality follows.

Every KPI of a cell (or rolling view) is published together, so one revision
counter per cell serves all its keys: each publication raises it by one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from datasketches import hll_sketch, hll_union

from . import buckets as B
from .catalogue import BY_DIM, KPI, KPIS, Comps, Context, Modes, dim_name, evaluate, kpis_for

CellKey = tuple[str, int, str]  # (size, start, dim)
ViewKey = tuple[str, int, str]  # (window, end, dim): calendar months
RollKey = tuple[str, str]  # (window, dim): a rolling view, updated in place
HLL_LG_K = 14  # relative standard error ~0.8 %; the contract allows 2 %
SESSION_FAMILIES = frozenset({"web", "lead"})
Snapshot = tuple[str, dict[str, Any] | None]  # (key, document or None for a tombstone)
NEVER = 1 << 62


def iso_s(ms: int) -> str:
    """RFC 3339 in the reporting zone, with its offset at that instant (``Z`` in UTC)."""
    return B.iso(ms)


def snapshot_key(kpi: str, window: str, start: int, dim: str) -> str:
    """``kpi|bucket|window_start|dim=value`` (the total has nothing after the last bar).

    A rolling view (``15m``, ``24h``, ``7d``, ``30d``) is one key per (kpi, view, dims),
    ``kpi|view|dim=value``, updated in place as the view moves: its current window is
    in the document, so a compacted topic keeps one record per view.
    """
    if window in B.ROLLING:
        return f"{kpi}|{window}|{dim}"
    return f"{kpi}|{window}|{iso_s(start)}|{dim}"


@dataclass(frozen=True)
class MergeConfig:
    feeds: dict[str, tuple[str, ...]]  # family -> input topics whose partitions feed it
    partitions: int  # partitions of every input topic
    lateness_ms: int = 600_000
    session_timeout_ms: int = 1_800_000
    retention: dict[str, int] = field(default_factory=lambda: {
        "1m": 2 * B.DAY, "1h": 90 * B.DAY, "1d": 730 * B.DAY})
    modes: Modes = field(default_factory=Modes)
    currency: str = "EUR"
    rolling: tuple[str, ...] = ("15m", "24h", "7d", "30d", *B.CALENDAR)


@dataclass
class Cell:
    comps: Comps = field(default_factory=dict)
    rev: int = -1  # revision of the last publication (-1: never published)
    fams: list[str] = field(default_factory=list)  # families present when last published
    final: bool = False
    sketch: Any = None  # hll_sketch of distinct users (web family)
    # changed (or became final) since last published: kept with the cell, so a
    # restart publishes what a crash left unpublished
    unpublished: bool = False

    def to_json(self) -> dict[str, Any]:
        sk = None if self.sketch is None else base64.b64encode(
            self.sketch.serialize_compact()).decode()
        return {"c": self.comps, "r": self.rev, "p": self.fams, "f": self.final, "h": sk,
                "u": self.unpublished}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cell:
        sk = None if d.get("h") is None else hll_sketch.deserialize(base64.b64decode(d["h"]))
        return cls(d["c"], d["r"], d["p"], d["f"], sk, d.get("u", False))


def cell_store_key(key: CellKey) -> str:
    return f"{key[0]}|{key[1]}|{key[2]}"


def view_store_key(key: ViewKey) -> str:
    return f"r|{key[0]}|{key[1]}|{key[2]}"


def roll_store_key(key: RollKey) -> str:
    return f"v|{key[0]}|{key[1]}"


@dataclass
class ViewState:
    """What was last published for one rolling view (one key per KPI, moved in place)."""

    rev: int  # revision of the last publication
    end: int  # end of the window last published
    fams: list[str]  # families present then (their KPIs get tombstones when gone)
    final: bool = False

    def to_json(self) -> list[Any]:
        return [self.rev, self.end, self.fams, self.final]

    @classmethod
    def from_json(cls, d: list[Any]) -> ViewState:
        return cls(int(d[0]), int(d[1]), list(d[2]), bool(d[3]))


def parse_store_key(text: str) -> tuple[str, int, str]:
    size, start, dim = text.split("|", 2)
    return (size, int(start), dim)


class CountedByKind(dict):
    """A dict of tuple keys that keeps how many keys share each first element (a
    bucket size, a view window), so ``state_keys`` on the worker's 1 s timer costs
    one entry per kind instead of a pass over every cell."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self:
            self.counts[key[0]] = self.counts.get(key[0], 0) + 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.counts[key[0]] -= 1

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self.counts[key[0]] -= 1
        return super().pop(key, *default)


class MergePartition:
    """The cells of one stage-3 partition and everything needed to publish them."""

    def __init__(self, cfg: MergeConfig) -> None:
        self.cfg = cfg
        self.cells: dict[CellKey, Cell] = CountedByKind()
        # calendar month view -> [rev, final, fams(, unpublished)]; rev -1: never
        # published yet
        self.views: dict[ViewKey, list[Any]] = CountedByKind()
        # rolling view (window, dim) -> what was last published for it
        self.rolls: dict[RollKey, ViewState] = CountedByKind()
        self.rolls_todo: set[RollKey] = set()  # rolling views to evaluate again
        self.src_wm: dict[str, int | None] = {}  # "topic/partition" -> watermark
        self.applied: dict[str, list[int]] = {}  # source -> last [sequence, piece] applied
        self.pending: set[CellKey] = set()  # changed since the last emission
        # open cells changed while catching up, their documents not built (finals_only):
        # built once caught up, or when they become final, whichever is first
        self.deferred: set[CellKey] = set()
        self.open_cells: set[CellKey] = set()  # not final yet
        self.dirty: set[str] = set()  # store keys to persist
        self._mode_docs = {k.name: cfg.modes.for_kpi(k) for k in KPIS}
        self._lows: dict[str, int] | None = None
        self.views_todo: set[ViewKey] = set()  # rolling views to publish again
        # (size, dim) -> end of the newest cell expired: nothing recreates those buckets
        self.expired_to: dict[tuple[str, str], int] = {}
        self._publish_windows: Any = None
        self.emitted_cells: list[CellKey] = []
        self.emitted_views: list[ViewKey] = []
        # net new customers (millionths) per dim and bucket, and what expired 1d cells
        # held: active customers at any time is a running sum (kpi-catalogue section 8)
        self._cust: dict[str, dict[str, dict[int, int]]] = {}
        self._cust_base: dict[str, int] = {}

    # -- watermarks and finality -------------------------------------------------
    def _topic_lows(self) -> dict[str, int]:
        """Per input topic, the watermark every one of its partitions has passed."""
        lows: dict[str, int] = {}
        topics = {t for ts in self.cfg.feeds.values() for t in ts}
        for topic in topics:
            low = NEVER
            for p in range(self.cfg.partitions):
                name = f"{topic}/{p}"
                if name not in self.src_wm:
                    low = -NEVER  # not heard from yet: cannot vouch for it
                    break
                wm = self.src_wm[name]
                if wm is not None:  # a partition without events does not hold back
                    low = min(low, wm)
            lows[topic] = low
        return lows

    def is_final(self, end: int, families: Any) -> bool:
        if not families:
            return False
        lows = self._lows if self._lows is not None else self._topic_lows()
        deadline = end + self.cfg.lateness_ms
        if not SESSION_FAMILIES.isdisjoint(families):
            deadline += self.cfg.session_timeout_ms
        topics = [t for f in families for t in self.cfg.feeds.get(f, ())]
        return bool(topics) and all(lows.get(t, -NEVER) >= deadline for t in topics)

    def _family_lows(self) -> dict[str, int]:
        """Per family, the watermark all of its source partitions have passed."""
        lows = self._topic_lows()
        return {fam: min((lows.get(t, -NEVER) for t in topics), default=-NEVER)
                for fam, topics in self.cfg.feeds.items()}

    def event_time_now(self) -> int | None:
        marks = [w for w in self.src_wm.values() if w is not None]
        return max(marks) if marks else None

    def low_watermark(self) -> int | None:
        marks = [w for w in self.src_wm.values() if w is not None]
        return min(marks) if marks else None

    # -- applying partials ------------------------------------------------------
    def apply(self, partial: dict[str, Any]) -> bool:
        """Apply one partial message; False if it was a replay already applied."""
        src = partial["src"]
        mark = [partial["seq"], partial.get("part", 0)]
        if mark <= self.applied.get(src, [-1, 0]):
            return False
        self.applied[src] = mark
        for name, wm in partial.get("wm", {}).items():
            old = self.src_wm.get(name)
            if name not in self.src_wm or (wm is not None and (old is None or wm > old)):
                self.src_wm[name] = wm
        expiry = self._expiry_horizons()
        for family, size, start, dim, comps in partial.get("d", ()):
            key = (size, start, dim)
            cell = self.cells.get(key)
            if cell is None:
                end = B.bucket_end(start, size)
                if (size in expiry and end < expiry[size]) or \
                        end <= self.expired_to.get((size, dim), -NEVER):
                    continue  # past retention: do not bring an expired bucket back
                cell = self.cells[key] = Cell()
                self.open_cells.add(key)
            fam = cell.comps.setdefault(family, {})
            for comp, value in comps.items():
                fam[comp] = fam.get(comp, 0) + value
            if family == "cust":
                net = comps.get("nc", 0) - comps.get("ch", 0)
                if net:
                    by_start = self._cust.setdefault(dim, {}).setdefault(size, {})
                    by_start[start] = by_start.get(start, 0) + net
            self._touch(key)
        for _family, size, start, dim, hashes in partial.get("h", ()):
            key = (size, start, dim)
            cell = self.cells.get(key)
            if cell is None:
                continue
            if cell.sketch is None:
                cell.sketch = hll_sketch(HLL_LG_K)
            for h in hashes:
                cell.sketch.update(h)
            self._touch(key)
        return True

    def active_at(self, dim: str, t: int) -> float:
        """Active customers (millionths) at time ``t``: whole days, then hours, then
        minutes, each from the finest buckets that cover the stretch exactly."""
        sizes = self._cust.get(dim)
        total = float(self._cust_base.get(dim, 0))
        if not sizes:
            return total
        day0, hour0 = B.floor(t, "1d"), B.floor(t, "1h")
        # a local day or hour may be shorter or longer than nominal: a cell before
        # day0 (hour0) is a whole day (hour) before it
        total += sum(v for s, v in sizes.get("1d", {}).items() if s < day0)
        total += sum(v for s, v in sizes.get("1h", {}).items() if day0 <= s < hour0)
        total += sum(v for s, v in sizes.get("1m", {}).items()
                     if hour0 <= s and s + B.MINUTE <= t)
        return total

    def context(self, dim: str, start: int, end: int) -> Context:
        return Context(self.active_at(dim, start), self.active_at(dim, end), end - start,
                       self.cfg.modes.attribution)

    def _touch(self, key: CellKey) -> None:
        self.pending.add(key)
        self.cells[key].unpublished = True
        self.dirty.add(cell_store_key(key))

    # -- snapshots ----------------------------------------------------------------
    def emit(self, now_wall_ms: int, max_cells: int | None = None,
             publish: Any = None, max_views: int | None = None,
             max_docs: int | None = None, views: bool = True,
             finals_only: bool = False) -> list[Snapshot]:
        """Snapshots of changed cells, cells that just became final, and their rolling views.

        A ``None`` document is a tombstone: the key no longer exists because every
        contribution to it was retracted (a session that moved to another channel).
        At most ``max_cells`` cells and ``max_views`` rolling views are published per
        call (oldest first), and publishing stops once about ``max_docs`` documents
        are built; the rest stay pending for the next call (and are marked in the
        state, so a crash does not forget them), so a replay of history does not
        build one enormous batch of snapshots. ``emitted_cells`` and ``emitted_views`` say what
        this call published. ``publish`` limits the documents built to these windows
        (the others are still advanced: revisions, finality). With ``views`` false the
        rolling views are not evaluated in this call; the ones touched wait for the next.
        With ``finals_only`` (catching up, and nobody listening live) the documents of
        open cells are not built: those cells wait in ``deferred`` (still marked
        unpublished in the state) until they become final or a call without it.
        """
        self._publish_windows = publish
        if not finals_only and self.deferred:
            self.pending |= self.deferred
            self.deferred.clear()
        self._lows = self._topic_lows()
        try:
            out: list[Snapshot] = []
            computed_at = _iso_ms(now_wall_ms)
            for key in list(self.open_cells):
                cell = self.cells.get(key)
                if cell is None:
                    self.open_cells.discard(key)
                    continue
                if self.is_final(B.bucket_end(key[1], key[0]), present(cell.comps)):
                    cell.final = True
                    self.open_cells.discard(key)
                    self._touch(key)
            todo = sorted(self.pending, key=lambda k: (k[1], k[0], k[2]))
            if max_cells is not None:
                todo = todo[:max_cells]
            touched: set[tuple[str, int, str]] = set()
            done = 0
            for key in todo:
                if max_docs is not None and len(out) >= max_docs:
                    break
                done += 1
                self.pending.discard(key)
                cell = self.cells.get(key)
                if cell is None:
                    continue
                if finals_only and not cell.final:
                    self.deferred.add(key)
                    continue
                self.deferred.discard(key)
                out += self._cell_snapshots(key, cell, computed_at)
                for window in self.cfg.rolling:
                    if B.VIEW_BASE[window] == key[0]:
                        touched.add((window, key[1], key[2]))
            self.emitted_cells = todo[:done]
            budget = None if max_docs is None else max(max_docs - len(out), 0)
            months = {t for t in touched if t[0] not in B.ROLLING}
            self.rolls_todo |= {(w, d) for w, _, d in touched if w in B.ROLLING}
            out += self._rolling_snapshots(months, computed_at, max_views, budget)
            if views:
                budget = None if max_docs is None else max(max_docs - len(out), 0)
                out += self._live_views(computed_at, budget)
            return out
        finally:
            self._lows = None

    def republish(self, cells: list[Any], views: list[Any]) -> None:
        """Publish these again at the next emission (their snapshots may have been lost)."""
        for size, start, dim in cells:
            if (size, start, dim) in self.cells:
                self.pending.add((size, start, dim))
        for window, end, dim in views:
            self.views_todo.add((window, end, dim))

    def _publish(self, keys: tuple[str, int, int, str], comps: Comps, rev_state: Any,
                 final: bool, computed_at: str) -> list[Snapshot]:
        """Snapshots of one cell or view, and tombstones for KPIs that disappeared."""
        window, start, end, dim = keys
        if self._publish_windows is not None and window not in self._publish_windows:
            return []
        kpis = kpis_for(dim, comps)
        out: list[Snapshot] = [self._snapshot(k, window, start, end, dim, comps, final,
                                              rev_state, computed_at) for k in kpis]
        live = {k.name for k in kpis}
        return out + [(snapshot_key(name, window, start, dim), None)
                      for name in _names_for_families(dim, tuple(rev_state[1]))
                      if name not in live]

    def _cell_snapshots(self, key: CellKey, cell: Cell, computed_at: str) -> list[Snapshot]:
        size, start, dim = key
        live = present(cell.comps)
        cell.rev += 1
        cell.unpublished = False
        out = self._publish((size, start, B.bucket_end(start, size), dim), live,
                            (cell.rev, cell.fams), cell.final, computed_at)
        cell.fams = sorted(live)
        self.dirty.add(cell_store_key(key))
        return out

    def _snapshot(self, kpi: KPI, window: str, start: int, end: int, dim: str, comps: Comps,
                  final: bool, rev_state: Any, computed_at: str) -> Snapshot:
        doc = self._doc(kpi, window, start, end, dim, comps, final, rev_state[0], computed_at)
        return snapshot_key(kpi.name, window, start, dim), doc

    def _doc(self, kpi: KPI, window: str, start: int, end: int, dim: str, comps: Comps,
             final: bool, rev: int, computed_at: str,
             modes: Modes | None = None) -> dict[str, Any]:
        if modes is None or not kpi.every_model:
            modes = self.cfg.modes  # other KPIs exist only under the configured model
        value, num, den = evaluate(kpi, comps, modes,
                                   lambda: self.context(dim, start, end))
        unit = self.cfg.currency if kpi.unit == "CURRENCY" else kpi.unit
        doc = {
            "kpi": kpi.name, "bucket": window, "window_start": iso_s(start),
            "window_end": iso_s(end), "dims": _dims_doc(dim), "value": value,
            "numerator": num, "denominator": den, "unit": unit, "final": final,
            "mode": (dict(self._mode_docs[kpi.name]) if modes is self.cfg.modes
                     else modes.for_kpi(kpi)), "computed_at": computed_at,
            "schema_version": 1, "revision": rev, "tz": B.active().zone,
        }
        if kpi.cost_based:
            doc["cost_complete"] = self.cost_complete(end)
        return doc

    def cost_complete(self, end: int) -> bool:
        """Whether every spend partition's watermark has passed ``end``: cost is
        reported after the fact, and until then a low CPL is no good news
        (catalogue section 10). A partition that never carried spend does not hold
        it back, as for finality."""
        lows = self._lows if self._lows is not None else self._topic_lows()
        return all(lows.get(t, -NEVER) >= end for t in self.cfg.feeds.get("spend", ()))

    def rolling_comps(self, window: str, end: int, dim: str) -> tuple[Comps, bool]:
        """Merged components of a rolling view and whether any member has data."""
        base = B.VIEW_BASE[window]
        merged: Comps = {}
        union = None
        found = False
        for start in B.view_members(window, end):
            cell = self.cells.get((base, start, dim))
            if cell is None:
                continue
            live = present(cell.comps)
            if not live:
                continue
            found = True
            for family, comps in live.items():
                fam = merged.setdefault(family, {})
                for comp, value in comps.items():
                    fam[comp] = fam.get(comp, 0) + value
            if cell.sketch is not None:
                if union is None:
                    union = hll_union(HLL_LG_K)
                union.update(cell.sketch)
        if "web" in merged:
            # distinct users do not add up across buckets: use the sketch union
            est = union.get_result().get_estimate() if union is not None else 0.0
            merged["web"]["us"] = round(est)
        return merged, found

    def _live_views(self, computed_at: str, max_docs: int | None = None) -> list[Snapshot]:
        """Rolling views whose members changed or whose window moved, at their current
        window (ending with the base bucket that holds the watermark). A view whose
        window no longer holds any data is deleted: tombstones for its keys. Past about
        ``max_docs`` documents the rest wait in ``rolls_todo`` for the next call."""
        now = self.event_time_now()
        if now is None:
            return []
        publish = self._publish_windows
        todo = self.rolls_todo
        self.rolls_todo = set()
        for rkey, held in self.rolls.items():
            if held.end != B.view_end_at(rkey[0], now):
                todo.add(rkey)
        out: list[Snapshot] = []
        for rkey in sorted(todo):
            if max_docs is not None and len(out) >= max_docs:
                self.rolls_todo.add(rkey)
                continue
            window, dim = rkey
            if publish is not None and window not in publish:
                continue  # not published: the API computes it on demand
            end = B.view_end_at(window, now)
            comps, found = self.rolling_comps(window, end, dim)
            state = self.rolls.get(rkey)
            if not found:
                if state is not None:
                    out += [(snapshot_key(n, window, 0, dim), None)
                            for n in _names_for_families(dim, tuple(state.fams))]
                    del self.rolls[rkey]
                    self.dirty.add(roll_store_key(rkey))
                continue
            final = self.is_final(end, set(comps))
            rev = 0 if state is None else state.rev + 1
            prev_fams = [] if state is None else state.fams
            start = B.view_start(window, end)
            out += self._publish((window, start, end, dim), comps, (rev, prev_fams), final,
                                 computed_at)
            self.rolls[rkey] = ViewState(rev, end, sorted(comps), final)
            self.dirty.add(roll_store_key(rkey))
        return out

    def _rolling_snapshots(self, touched: set[tuple[str, int, str]], computed_at: str,
                           max_views: int | None = None,
                           max_docs: int | None = None) -> list[Snapshot]:
        """Calendar-month views over changed base cells, and open ones that became
        final (keyed by their start, like buckets)."""
        now = self.event_time_now()
        self.emitted_views = []
        if now is None:
            return []
        changed: set[ViewKey] = set()
        publish = self._publish_windows
        for window, start, dim in touched:
            if publish is not None and window not in publish:
                continue  # not published: nothing to track (the API computes it on demand)
            # views ending after the one that holds "now" lie in the future
            current_end = B.view_end_at(window, now)
            for end in B.view_ends_covering(window, start):
                if end <= current_end:
                    changed.add((window, end, dim))
        todo = changed | self.views_todo
        self.views_todo = set()
        for vkey, vstate in self.views.items():
            if not vstate[1] and self.is_final(vkey[1], vstate[2]):
                todo.add(vkey)
        ordered = sorted(todo, key=lambda v: (v[1], v[0], v[2]))
        limit = len(ordered) if max_views is None else min(max_views, len(ordered))
        out: list[Snapshot] = []
        done = 0
        for vkey in ordered[:limit]:
            if max_docs is not None and len(out) >= max_docs:
                break
            done += 1
            window, end, dim = vkey
            comps, found = self.rolling_comps(window, end, dim)
            state: list[Any] | None = self.views.get(vkey)
            if state is not None and state[0] < 0:  # a placeholder: nothing published yet
                if not found:
                    del self.views[vkey]
                    self.dirty.add(view_store_key(vkey))
                    continue
                state = None
            if not found and state is None:
                continue
            final = self.is_final(end, set(comps))
            rev = 0 if state is None else state[0] + 1
            prev_fams = [] if state is None else state[2]
            start = B.view_start(window, end)
            out += self._publish((window, start, end, dim), comps, (rev, prev_fams), final,
                                 computed_at)
            self.views[vkey] = [rev, final, sorted(comps)]
            self.dirty.add(view_store_key(vkey))
        for vkey in ordered[done:]:  # the next round publishes these
            self.views_todo.add(vkey)
            old = self.views.get(vkey)
            if old is None:
                self.views[vkey] = [-1, False, [], True]
            elif len(old) < 4 or not old[3]:
                self.views[vkey] = [*old[:3], True]
            else:
                continue
            self.dirty.add(view_store_key(vkey))
        self.emitted_views = ordered[:done]
        return out

    # -- reading without publishing -----------------------------------------------------
    def view(self, *, kpis: set[str] | None = None, windows: set[str] | None = None,
             dims: set[str] | None = None, start_ms: int | None = None,
             end_ms: int | None = None, computed_at_ms: int = 0,
             modes: Modes | None = None) -> list[dict[str, Any]]:
        """Current snapshots of stored cells (and rolling views ending at "now").

        Read-only: revisions are the last published ones, nothing is marked dirty.
        ``dims`` holds dim keys (``""`` for the total, ``"channel=email"``).
        """
        computed_at = _iso_ms(computed_at_ms)
        out: list[dict[str, Any]] = []
        for (size, start, dim), cell in self.cells.items():
            if windows is not None and size not in windows:
                continue
            if dims is not None and dim not in dims:
                continue
            if (start_ms is not None and start < start_ms) or (
                    end_ms is not None and start >= end_ms):
                continue
            live = present(cell.comps)
            for kpi in kpis_for(dim, live):
                if kpis is not None and kpi.name not in kpis:
                    continue
                out.append(self._doc(kpi, size, start, B.bucket_end(start, size), dim, live,
                                     cell.final, max(cell.rev, 0), computed_at, modes))
        now = self.event_time_now()
        if now is None:
            return out
        for window in self.cfg.rolling:
            if windows is not None and window not in windows:
                continue
            end = B.view_end_at(window, now)
            view_dims = {d for (_, _, d) in self.cells} if dims is None else dims
            for dim in sorted(view_dims):
                comps, found = self.rolling_comps(window, end, dim)
                if not found:
                    continue
                start = B.view_start(window, end)
                if window in B.ROLLING:
                    roll = self.rolls.get((window, dim))
                    rev = 0 if roll is None else roll.rev
                    final = roll is not None and roll.end == end and roll.final
                else:
                    state = self.views.get((window, end, dim), [0, False, []])
                    rev, final = max(state[0], 0), bool(state[1])
                for kpi in kpis_for(dim, comps):
                    if kpis is not None and kpi.name not in kpis:
                        continue
                    out.append(self._doc(kpi, window, start, end, dim, comps,
                                         final, rev, computed_at, modes))
        return out

    # -- expiry -----------------------------------------------------------------
    def _expiry_horizons(self) -> dict[str, int]:
        low = self.low_watermark()
        if low is None:
            return {}
        return {size: low - keep for size, keep in self.cfg.retention.items()}

    def expire(self) -> list[Snapshot]:
        """Delete cells and rolling views past retention (by event time).

        Returns tombstones for their keys on the KPI topic, so the compacted topic
        stays as bounded as the state.
        """
        horizons = self._expiry_horizons()
        if not horizons:
            return []
        # A final cell expires once the sources of *its* families are past its end plus
        # the retention: a sparse topic (engagements keyed by campaign) holds back only
        # the cells it contributes to, not every cell of the partition.
        fam_low = self._family_lows()
        keep = self.cfg.retention

        def past(size: str, end: int, fams: Any) -> bool:
            if size not in keep:
                return False
            lows = [fam_low.get(f, -NEVER) for f in fams]
            low = min(lows) if lows else self.low_watermark()
            return low is not None and end < low - keep[size]

        out: list[Snapshot] = []
        gone = [k for k, c in self.cells.items()
                if c.final and past(k[0], B.bucket_end(k[1], k[0]), present(c.comps))]
        for size, start, dim in gone:
            end = B.bucket_end(start, size)
            if end > self.expired_to.get((size, dim), -NEVER):
                self.expired_to[(size, dim)] = end
            cell = self.cells.pop((size, start, dim))
            net = self._cust.get(dim, {}).get(size, {}).pop(start, 0)
            if size == "1d" and net:
                self._cust_base[dim] = self._cust_base.get(dim, 0) + net
            self.pending.discard((size, start, dim))
            self.dirty.add(cell_store_key((size, start, dim)))
            out += [(snapshot_key(n, size, start, dim), None)
                    for n in _names_for_families(dim, tuple(cell.fams))]
        for vkey in [v for v, s in self.views.items() if s[1]]:
            window, end, dim = vkey
            if past(B.VIEW_BASE[window], end, self.views[vkey][2]):
                state = self.views.pop(vkey)
                self.dirty.add(view_store_key(vkey))
                start = B.view_start(window, end)
                out += [(snapshot_key(n, window, start, dim), None)
                        for n in _names_for_families(dim, tuple(state[2]))]
        return out

    # -- persistence ------------------------------------------------------------
    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind: cells by bucket size, rolling views by window."""
        assert isinstance(self.cells, CountedByKind) and isinstance(self.views, CountedByKind)
        assert isinstance(self.rolls, CountedByKind)
        return {**{"cell_" + size: n for size, n in self.cells.counts.items()},
                **{"view_" + window: n for window, n in self.views.counts.items()},
                **{"view_" + window: n for window, n in self.rolls.counts.items()}}

    def dump(self, key: str) -> Any:
        if key.startswith("v|"):
            window, dim = key[2:].split("|", 1)
            roll = self.rolls.get((window, dim))
            return None if roll is None else roll.to_json()
        if key.startswith("r|"):
            window, end, dim = parse_store_key(key[2:])
            return self.views.get((window, end, dim))
        cell = self.cells.get(parse_store_key(key))
        return None if cell is None else cell.to_json()

    def load(self, key: str, value: Any) -> None:
        if key.startswith("v|"):
            window, dim = key[2:].split("|", 1)
            self.rolls[(window, dim)] = ViewState.from_json(value)
            # what was last published may not have reached the topic: evaluate again
            self.rolls_todo.add((window, dim))
            return
        if key.startswith("r|"):
            window, end, dim = parse_store_key(key[2:])
            if window in B.ROLLING:
                # a rolling view keyed by its end (before views moved in place): gone
                self.dirty.add(key)
                return
            self.views[(window, end, dim)] = value
            if not value[1] and value[0] >= 0:
                self.views_todo.add((window, end, dim))  # open: publish it again
            if len(value) > 3 and value[3]:  # deferred when the worker stopped
                self.views_todo.add((window, end, dim))
            return
        ckey = parse_store_key(key)
        cell = self.cells[ckey] = Cell.from_json(value)
        if not cell.final:
            self.open_cells.add(ckey)
        # an open cell's latest value may still have been waiting for its turn on the
        # KPI topic when the worker stopped (the topic is written at a cadence, not at
        # every change): publish it once more
        if cell.unpublished or not cell.final:
            self.pending.add(ckey)
        cust = cell.comps.get("cust")
        if cust:
            net = cust.get("nc", 0) - cust.get("ch", 0)
            if net:
                self._cust.setdefault(ckey[2], {}).setdefault(ckey[0], {})[ckey[1]] = net

    def meta(self) -> dict[str, Any]:
        return {"src_wm": self.src_wm, "applied": self.applied,
                "cust_base": self._cust_base}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.src_wm = dict(meta.get("src_wm", {}))
        self.applied = dict(meta.get("applied", {}))
        self._cust_base = dict(meta.get("cust_base", {}))


@lru_cache(maxsize=4096)
def _dims_doc_cached(dim: str) -> tuple[tuple[str, str], ...]:
    return () if not dim else (tuple(dim.split("=", 1)),)  # type: ignore[return-value]


def _dims_doc(dim: str) -> dict[str, str]:
    return dict(_dims_doc_cached(dim))


def present(comps: Comps) -> Comps:
    """The families of a cell that still hold a non-zero component."""
    return {f: c for f, c in comps.items() if any(c.values())}


@lru_cache(maxsize=4096)
def _names_for_families(dim: str, families: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the KPIs a cell with these families publishes for this dim."""
    fams = set(families)
    return tuple(k.name for k in BY_DIM.get(dim_name(dim), ()) if not k.families.isdisjoint(fams))


def _iso_ms(ms: int) -> str:
    from ..events import iso_ms

    return iso_ms(ms)
