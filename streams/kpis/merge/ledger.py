"""The active-customer ledger: net new customers per bucket, summed to any instant."""

from __future__ import annotations

from collections.abc import Callable

from .. import buckets as B
from ..catalogue import Comps, Context
from .state import PartitionAttrs


class LedgerMixin(PartitionAttrs):
    """Active customers of a ``MergePartition`` (kpi-catalogue section 8)."""

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

    window_comps: Callable[[str, int, int, str], Comps | None]

    def context(self, dim: str, start: int, end: int, window: str | None = None) -> Context:
        def previous() -> Comps | None:
            if window is None:
                return None
            p0, p1 = B.compared_window(window, start, end, "previous")
            return self.window_comps(window, p0, p1, dim)

        return Context(self.active_at(dim, start), self.active_at(dim, end), end - start,
                       self.cfg.modes.attribution, previous)
