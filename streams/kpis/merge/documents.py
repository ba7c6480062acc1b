"""Snapshot keys and documents: what one cell or view publishes for each KPI."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .. import buckets as B
from ..catalogue import BY_DIM, KPI, Comps, Context, Modes, dim_name, evaluate, kpis_for
from ..localtime import iso_ms
from .state import NEVER, Cell, CellKey, PartitionAttrs, Snapshot, cell_store_key, present


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


class DocumentsMixin(PartitionAttrs):
    """Building the snapshot documents of a ``MergePartition``."""

    _topic_lows: Callable[[], dict[str, int]]
    window_comps: Callable[[str, int, int, str], Comps | None]
    context: Callable[[str, int, int, str | None], Context]

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
                                   lambda: self.context(dim, start, end, window))
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

    def _compared(self, kpi: KPI, window: str, start: int, end: int, dim: str,
                  doc: dict[str, Any], basis: str, earliest: dict[str, int],
                  computed_at: str, modes: Modes | None) -> dict[str, Any]:
        """The ``compare`` object of a document: the KPI over the compared period, the
        change, and whether the data held covers that period (``covered``: the oldest
        bucket held starts at or before it)."""
        s0, s1 = B.compared_window(window, start, end, basis)
        base = window if window in B.BUCKETS else B.VIEW_BASE[window]
        out: dict[str, Any] = {"basis": basis, "window_start": iso_s(s0),
                               "window_end": iso_s(s1),
                               "covered": earliest.get(base, NEVER) <= s0}
        comps = self.window_comps(window, s0, s1, dim)
        prev = None if comps is None or kpi.families.isdisjoint(comps) else \
            self._doc(kpi, window, s0, s1, dim, comps, False, 0, computed_at, modes)
        return {**out, **change_against(doc, prev)}

    def cost_complete(self, end: int) -> bool:
        """Whether every spend partition's watermark has passed ``end``: cost is
        reported after the fact, and until then a low CPL is no good news
        (catalogue section 10). A partition that never carried spend does not hold
        it back, as for finality."""
        lows = self._lows if self._lows is not None else self._topic_lows()
        return all(lows.get(t, -NEVER) >= end for t in self.cfg.feeds.get("spend", ()))


def change_against(doc: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    """The compared part of a ``compare`` object: the other period's value, numerator
    and denominator, the change and the relative change (nulls without ``prev``)."""
    if prev is None:
        return {"value": None, "numerator": None, "denominator": None, "change": None,
                "relative_change": None}
    now, before = doc["value"], prev["value"]
    change = None if now is None or before is None else now - before
    return {"value": before, "numerator": prev["numerator"],
            "denominator": prev["denominator"], "change": change,
            "relative_change": None if change is None or not before
            else change / abs(before)}


@lru_cache(maxsize=4096)
def _dims_doc_cached(dim: str) -> tuple[tuple[str, str], ...]:
    return () if not dim else (tuple(dim.split("=", 1)),)  # type: ignore[return-value]


def _dims_doc(dim: str) -> dict[str, str]:
    return dict(_dims_doc_cached(dim))



@lru_cache(maxsize=4096)
def _names_for_families(dim: str, families: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the KPIs a cell with these families publishes for this dim."""
    fams = set(families)
    return tuple(k.name for k in BY_DIM.get(dim_name(dim), ()) if not k.families.isdisjoint(fams))


def _iso_ms(ms: int) -> str:
    return iso_ms(ms)
