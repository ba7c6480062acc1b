"""``MergePartition``: the cells of one stage-3 partition, from partials to snapshots."""

from __future__ import annotations

from heapq import heappop, heappush
from time import perf_counter
from typing import Any

from datasketches import hll_sketch

from .. import buckets as B
from ..catalogue import KPIS, Modes, kpis_for
from ..messages import Partial, skip_horizons
from ..query import SnapshotQuery, frozen
from .documents import DocumentsMixin, _iso_ms, _names_for_families, snapshot_key
from .ledger import LedgerMixin
from .persistence import PersistenceMixin
from .state import (
    HLL_LG_K,
    NEVER,
    SESSION_FAMILIES,
    Cell,
    CellKey,
    CountedByKind,
    MergeConfig,
    OpenCells,
    RollKey,
    Snapshot,
    ViewKey,
    ViewState,
    cell_store_key,
    present,
    view_store_key,
)
from .views import ViewsMixin

_NO_CELL = Cell()
# what a call bounded by ``until`` publishes at least: cells, then views' documents
MIN_CELLS_PER_ROUND = 100
MIN_DOCS_PER_ROUND = 1_000


class MergePartition(LedgerMixin, DocumentsMixin, ViewsMixin, PersistenceMixin):
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
        # the pending keys oldest first, as (start, size, dim): a heap that a round
        # takes from and pushes only the keys new since the last round to (sorting and
        # walking all of pending every round was about a third of a replay's emission
        # time in the last release's profile). ``_queued``: the keys it holds; one no
        # longer pending is skipped when it comes out
        self._order: list[tuple[int, str, str]] = []
        self._queued: set[CellKey] = set()
        # open cells changed while catching up, their documents not built (finals_only):
        # built once caught up, or when they become final, whichever is first
        self.deferred: set[CellKey] = set()
        self.open_cells = OpenCells()  # not final yet, by the end of their bucket
        # what a scrape of the KPI gauges reads without walking every cell: the dims
        # cells were made for, and the start of the newest final cell per (size, dim)
        self.dims: set[str] = set()
        self.newest_final: dict[tuple[str, str], int] = {}
        self.dirty: set[str] = set()  # store keys to persist
        self._mode_docs = {k.name: cfg.modes.for_kpi(k) for k in KPIS}
        self._lows: dict[str, int] | None = None
        # the lows of the last finality check: while they stay, only a cell changed
        # since (pending) can have become final (its families are the rest of it)
        self._checked_lows: dict[str, int] | None = None
        self.views_todo: set[ViewKey] = set()  # rolling views to publish again
        # (size, dim) -> end of the newest cell expired: nothing recreates those buckets
        self.expired_to: dict[tuple[str, str], int] = {}
        # the newest inputs' horizon a source skipped rows by: a skippable bucket past
        # its retention from there is expired (KPI_REPLAY_SKIP_EXPIRED)
        self.horizon: int | None = None
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

    def unbuilt(self) -> int:
        """Changed cells and rolling views whose documents a round can build now (open
        cells held back while catching up are in ``deferred``, not counted)."""
        return len(self.pending) + len(self.views_todo)

    def unpublished(self) -> int:
        """What the KPI topic still waits for: ``unbuilt`` and the open cells a
        catch-up holds back, whose latest values go when it ends."""
        return self.unbuilt() + len(self.deferred)

    def low_watermark(self) -> int | None:
        marks = [w for w in self.src_wm.values() if w is not None]
        return min(marks) if marks else None

    # -- applying partials ------------------------------------------------------
    def apply(self, partial: Partial) -> bool:
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
        hz = partial.get("hz")
        if hz is not None and (self.horizon is None or hz > self.horizon):
            self.horizon = hz
        expiry = self._expiry_horizons()
        for family, size, start, dim, comps in partial.get("d", ()):
            key = (size, start, dim)
            cell = self.cells.get(key)
            if cell is None:
                end = B.bucket_end(start, size)
                if (size in expiry and end < expiry[size]) or \
                        end <= self.expired_to.get((size, dim), -NEVER):
                    continue  # past retention: do not bring an expired bucket back
                cell = self._add_cell(key, Cell())
            fam = cell.comps.setdefault(family, {})
            for comp, value in comps.items():
                fam[comp] = fam.get(comp, 0) + value
            if family == "cust":
                net = comps.get("nc", 0) - comps.get("ch", 0)
                if net:
                    by_start = self._cust.setdefault(dim, {}).setdefault(size, {})
                    by_start[start] = by_start.get(start, 0) + net
            self._touch(key)
            if family == "funnel" and size in B.BUCKETS:
                # revenue_growth of the next bucket reads this one
                nxt = (size, B.bucket_end(start, size), dim)
                if "funnel" in self.cells.get(nxt, _NO_CELL).comps:
                    self._touch(nxt)
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

    def _touch(self, key: CellKey) -> None:
        self.pending.add(key)
        self.cells[key].unpublished = True
        self.dirty.add(cell_store_key(key))

    # -- snapshots ----------------------------------------------------------------
    def emit(self, now_wall_ms: int, max_cells: int | None = None,
             publish: Any = None, max_views: int | None = None,
             max_docs: int | None = None, views: bool = True,
             finals_only: bool = False, until: float | None = None) -> list[Snapshot]:
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
        ``until`` (a ``time.perf_counter()`` instant) bounds the call in time as
        ``max_docs`` does in documents: past it, no further cell (once
        ``MIN_CELLS_PER_ROUND`` are done) or view (once views built
        ``MIN_DOCS_PER_ROUND`` documents) is started, so every call gets somewhere.
        """
        self._publish_windows = publish
        if not finals_only and self.deferred:
            self.pending |= self.deferred
            self.deferred.clear()
        lows = self._lows = self._topic_lows()
        try:
            out: list[Snapshot] = []
            computed_at = _iso_ms(now_wall_ms)
            if lows != self._checked_lows:
                # a cell is final once every input of its families has passed its end
                # plus the lateness: none ending after the highest of them is
                candidates = self.open_cells.ending_by(
                    max(lows.values(), default=NEVER) - self.cfg.lateness_ms)
            else:
                candidates = list(self.open_cells.among(self.pending))
            self._checked_lows = lows
            for key in candidates:
                candidate = self.cells[key]
                if self.is_final(B.bucket_end(key[1], key[0]), present(candidate.comps)):
                    self._finalise(key, candidate)
                    self._touch(key)
            pending, cells = self.pending, self.cells
            order, queued = self._order, self._queued
            fresh = pending - queued  # changed since the last round took its keys
            if finals_only:
                # open cells wait in ``deferred``: a round while catching up looks at
                # finals only, not at every open cell changed since the last round
                held = {k for k in fresh if (c := cells.get(k)) is not None and not c.final}
                if held:
                    self.deferred |= held
                    pending -= held
                    fresh -= held
            for key in fresh:
                heappush(order, (key[1], key[0], key[2]))
                queued.add(key)
            touched: set[tuple[str, int, str]] = set()
            emitted: list[CellKey] = []
            while order and (max_cells is None or len(emitted) < max_cells):
                if max_docs is not None and len(out) >= max_docs:
                    break
                if until is not None and len(emitted) >= MIN_CELLS_PER_ROUND and \
                        perf_counter() >= until:
                    break
                start, size, dim = heappop(order)
                key = (size, start, dim)
                queued.discard(key)
                if key not in pending:
                    continue  # held back, or expired, since it was queued
                pending.discard(key)
                cell = cells.get(key)
                if cell is not None and finals_only and not cell.final:
                    self.deferred.add(key)  # open, and changed again since it was queued
                    continue
                emitted.append(key)
                if cell is None:
                    continue
                self.deferred.discard(key)
                out += self._cell_snapshots(key, cell, computed_at)
                for window in self.cfg.rolling:
                    if B.VIEW_BASE[window] == size:
                        touched.add((window, start, dim))
            self.emitted_cells = emitted
            cells_docs = len(out)

            def budget() -> int | None:  # documents this call may still build
                docs = None if max_docs is None else max(max_docs - len(out), 0)
                if until is not None and perf_counter() >= until:
                    # views get somewhere too, whatever the cells took
                    floor = max(MIN_DOCS_PER_ROUND - (len(out) - cells_docs), 0)
                    docs = floor if docs is None else min(docs, floor)
                return docs

            months = {t for t in touched if t[0] not in B.ROLLING}
            self.rolls_todo |= {(w, d) for w, _, d in touched if w in B.ROLLING}
            out += self._rolling_snapshots(months, computed_at, max_views, budget())
            if views:
                out += self._live_views(computed_at, budget())
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
    # -- reading without publishing -----------------------------------------------------
    def view(self, *, query: SnapshotQuery | None = None, kpis: set[str] | None = None,
             windows: set[str] | None = None, dims: set[str] | None = None,
             start_ms: int | None = None, end_ms: int | None = None,
             computed_at_ms: int = 0, modes: Modes | None = None,
             compare: str | None = None) -> list[dict[str, Any]]:
        """Current snapshots of stored cells (and rolling views ending at "now").

        Read-only: revisions are the last published ones, nothing is marked dirty.
        ``dims`` holds dim keys (``""`` for the total, ``"channel=email"``). With
        ``compare`` (``previous`` or ``year``) each document carries a ``compare``
        object: the same KPI and dims over the compared period, and the change.
        """
        if query is None:
            query = SnapshotQuery(kpis=frozen(kpis), windows=frozen(windows),
                                  dims=frozen(dims), start_ms=start_ms, end_ms=end_ms,
                                  compare=compare)
        compare = query.compare
        computed_at = _iso_ms(computed_at_ms)
        out: list[dict[str, Any]] = []
        earliest: dict[str, int] = {}  # size -> start of the oldest cell held
        if compare is not None:
            for size, start, _ in self.cells:
                if start < earliest.get(size, NEVER):
                    earliest[size] = start

        def add(doc: dict[str, Any], kpi: Any, window: str, start: int, end: int,
                dim: str) -> None:
            if compare is not None:
                doc["compare"] = self._compared(kpi, window, start, end, dim, doc, compare,
                                                earliest, computed_at, modes)
            out.append(doc)

        for (size, start, dim), cell in self.cells.items():
            if not query.wants_bucket(size, start, dim):
                continue
            live = present(cell.comps)
            for kpi in kpis_for(dim, live):
                if not query.wants_kpi(kpi.name):
                    continue
                end = B.bucket_end(start, size)
                add(self._doc(kpi, size, start, end, dim, live, cell.final, max(cell.rev, 0),
                              computed_at, modes), kpi, size, start, end, dim)
        now = self.event_time_now()
        if now is None:
            return out
        for window in self.cfg.rolling:
            if query.windows is not None and window not in query.windows:
                continue
            end = B.view_end_at(window, now)
            view_dims = {d for (_, _, d) in self.cells} if query.dims is None else query.dims
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
                    if not query.wants_kpi(kpi.name):
                        continue
                    add(self._doc(kpi, window, start, end, dim, comps, final, rev,
                                  computed_at, modes), kpi, window, start, end, dim)
        return out

    # -- expiry -----------------------------------------------------------------
    def _expiry_horizons(self) -> dict[str, int]:
        low = self.low_watermark()
        out = {} if low is None else \
            {size: low - keep for size, keep in self.cfg.retention.items()}
        # the sources skip a bucket ending at or before the skip horizon: so does this
        for size, h in skip_horizons(self.horizon, self.cfg.retention).items():
            out[size] = max(out.get(size, h + 1), h + 1)
        return out

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
        skipped = skip_horizons(self.horizon, keep)

        def skips(size: str, end: int) -> bool:
            # its sources skip it (open or final): it expires before they catch up
            return size in skipped and end <= skipped[size]

        def past(size: str, end: int, fams: Any) -> bool:
            if size not in keep:
                return False
            lows = [fam_low.get(f, -NEVER) for f in fams]
            low = min(lows) if lows else self.low_watermark()
            return low is not None and end < low - keep[size]

        out: list[Snapshot] = []
        gone = [k for k, c in self.cells.items()
                if skips(k[0], B.bucket_end(k[1], k[0])) or
                (c.final and past(k[0], B.bucket_end(k[1], k[0]), present(c.comps)))]
        for (size, start, dim), cell in zip(gone, self._drop_cells(gone), strict=True):
            end = B.bucket_end(start, size)
            if end > self.expired_to.get((size, dim), -NEVER):
                self.expired_to[(size, dim)] = end
            net = self._cust.get(dim, {}).get(size, {}).pop(start, 0)
            if size == "1d" and net:
                self._cust_base[dim] = self._cust_base.get(dim, 0) + net
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

