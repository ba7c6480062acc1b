"""Rolling views (moved in place) and calendar-month views over base cells."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasketches import hll_union

from .. import buckets as B
from ..catalogue import Comps
from .documents import _names_for_families, snapshot_key
from .state import (
    HLL_LG_K,
    PartitionAttrs,
    Snapshot,
    ViewKey,
    ViewState,
    present,
    roll_store_key,
    view_store_key,
)


class ViewsMixin(PartitionAttrs):
    """The rolling and calendar views of a ``MergePartition``."""

    event_time_now: Callable[[], int | None]
    is_final: Callable[[int, Any], bool]
    _publish: Callable[[tuple[str, int, int, str], Comps, Any, bool, str], list[Snapshot]]

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

    def window_comps(self, window: str, start: int, end: int, dim: str) -> Comps | None:
        """Components of any bucket or view by its window, or None if it holds no data."""
        if window in B.BUCKETS:
            cell = self.cells.get((window, start, dim))
            live = present(cell.comps) if cell is not None else {}
            return live or None
        comps, found = self.rolling_comps(window, end, dim)
        return comps if found else None

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
