"""Persistence: each cell and view as one store entry, and the partition's metadata."""

from __future__ import annotations

from typing import Any

from .. import buckets as B
from .state import (
    Cell,
    CellIndexMixin,
    CountedByKind,
    ViewState,
    parse_store_key,
)


class PersistenceMixin(CellIndexMixin):
    """Dumping and loading the state of a ``MergePartition`` (keys from ``state``)."""

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
            return None if roll is None else roll.to_state()
        if key.startswith("r|"):
            window, end, dim = parse_store_key(key[2:])
            return self.views.get((window, end, dim))
        cell = self.cells.get(parse_store_key(key))
        return None if cell is None else cell.to_state()

    def load(self, key: str, value: Any) -> None:
        if key.startswith("v|"):
            window, dim = key[2:].split("|", 1)
            self.rolls[(window, dim)] = ViewState.from_state(value)
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
        cell = self._add_cell(ckey, Cell.from_state(value))
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
                "cust_base": self._cust_base, "horizon": self.horizon}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.src_wm = dict(meta.get("src_wm", {}))
        self.applied = dict(meta.get("applied", {}))
        self._cust_base = dict(meta.get("cust_base", {}))
        self.horizon = meta.get("horizon")
