"""Which snapshots a reader asked for: one filter for every way of reading them. Pure.

The HTTP API (``/api/kpis`` and its SSE stream), the merge partitions' read-only
views, target pacing and ``kpi-streams kpis`` (reading the API or the KPI topic)
all select snapshots with a :class:`SnapshotQuery`, so a filter means the same
wherever it is given:

- ``kpis``, ``windows``: any of these (None: all);
- ``dims``: any of these dim keys (``""`` the total, ``"channel=email"``): asking
  for two dims shows both, not their intersection (a snapshot has one dim);
- ``start_ms``/``end_ms``: the bucket starts in ``[start_ms, end_ms)`` (``1m``,
  ``1h``, ``1d`` buckets; rolling and calendar views are the ones at "now");
- ``final``: only final (True) or only open (False) snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..schemas import parse_rfc3339_ms
from .buckets import BUCKETS

# query parameters that name one dimension each (``channel=email``)
DIM_PARAMS: tuple[str, ...] = ("channel", "device", "campaign", "page_type", "goal",
                               "traffic_type")
DEFAULT_LIMIT = 5000


class Params(Protocol):
    """A query string's parameters (aiohttp's and multidict's ``MultiDict``)."""

    def getall(self, key: str, default: Any = ...) -> list[str]: ...

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: str) -> str: ...

    def get(self, key: str, default: Any = None) -> Any: ...


def dim_key(dims: dict[str, str]) -> str:
    """A snapshot document's ``dims`` object as the dim key its cell is stored under."""
    return ",".join(f"{k}={v}" for k, v in dims.items())


@dataclass(frozen=True)
class SnapshotQuery:
    kpis: frozenset[str] | None = None
    windows: frozenset[str] | None = None
    dims: frozenset[str] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    final: bool | None = None
    compare: str | None = None  # previous or year: each document carries a comparison
    attribution: str | None = None  # revenue under another model than the configured one
    limit: int = DEFAULT_LIMIT

    # -- the filter ---------------------------------------------------------------------
    def wants_kpi(self, name: str) -> bool:
        return self.kpis is None or name in self.kpis

    def wants_window(self, window: str, dim: str) -> bool:
        """A window (``1h``, ``24h``, ...) of one dim."""
        if self.windows is not None and window not in self.windows:
            return False
        return self.dims is None or dim in self.dims

    def wants_bucket(self, window: str, start: int, dim: str) -> bool:
        """A bucket of one window, starting at ``start``, of one dim (a rolling or
        calendar view is wanted by its window and dim alone)."""
        if not self.wants_window(window, dim):
            return False
        if window not in BUCKETS:
            return True
        return not ((self.start_ms is not None and start < self.start_ms) or
                    (self.end_ms is not None and start >= self.end_ms))

    def accepts(self, doc: dict[str, Any]) -> bool:
        """A snapshot document (from the topic, the API or the live stream)."""
        if not self.wants_kpi(doc["kpi"]):
            return False
        if self.final is not None and doc["final"] != self.final:
            return False
        start = 0 if self.start_ms is None and self.end_ms is None else \
            parse_rfc3339_ms(doc["window_start"])
        return self.wants_bucket(doc["bucket"], start, dim_key(doc["dims"]))

    def select(self, docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [d for d in docs if self.accepts(d)]

    # -- to and from a query string ------------------------------------------------------
    def params(self) -> dict[str, str]:
        """The query string that asks the HTTP API for this."""
        out: dict[str, str] = {}
        if self.kpis:
            out["kpi"] = ",".join(sorted(self.kpis))
        if self.windows:
            out["bucket"] = ",".join(sorted(self.windows))
        if self.dims is not None:
            out["dim"] = ",".join("total" if d == "" else d for d in sorted(self.dims))
        if self.final is not None:
            out["final"] = "true" if self.final else "false"
        if self.compare:
            out["compare"] = self.compare
        if self.attribution:
            out["attribution"] = self.attribution
        return out

    @classmethod
    def parse(cls, q: Params) -> SnapshotQuery:
        """The filters of ``/api/kpis``: kpi, bucket (repeatable or comma lists),
        channel, device, campaign, page_type, goal, traffic_type, dim ("total" or
        name=value), from/to (RFC 3339), final, limit, compare (previous or year) and
        attribution. Raises ValueError with what is wrong."""
        from .attribution import MODELS
        from .buckets import ALL_WINDOWS, COMPARE_BASES
        from .catalogue import BY_NAME

        def many(name: str) -> set[str] | None:
            values = [v for raw in q.getall(name, []) for v in raw.split(",") if v]
            return set(values) or None

        kpis = many("kpi")
        if kpis and kpis - set(BY_NAME):
            raise ValueError(f"unknown kpi {sorted(kpis - set(BY_NAME))}")
        windows = many("bucket")
        if windows and windows - set(ALL_WINDOWS):
            raise ValueError(f"bucket must be one of {', '.join(ALL_WINDOWS)}")
        dims: set[str] | None = None
        for name in DIM_PARAMS:
            for value in many(name) or ():
                dims = (dims or set()) | {f"{name}={value}"}
        for value in many("dim") or ():
            dims = (dims or set()) | {"" if value == "total" else value}
        bounds = {}
        for name in ("from", "to"):
            if name in q:
                text = q[name]
                # an unescaped "+01:00" in a query string arrives as " 01:00"
                if len(text) > 6 and text[-6] == " " and text[-3] == ":":
                    text = text[:-6] + "+" + text[-5:]
                try:
                    bounds[name] = parse_rfc3339_ms(text)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        final = None
        if "final" in q:
            if q["final"] not in ("true", "false"):
                raise ValueError("final must be true or false")
            final = q["final"] == "true"
        attribution = q.get("attribution")
        if attribution is not None and attribution not in MODELS:
            raise ValueError(f"attribution must be one of {', '.join(MODELS)}")
        compare = q.get("compare")
        if compare is not None and compare not in COMPARE_BASES:
            raise ValueError(f"compare must be one of {', '.join(COMPARE_BASES)}")
        try:
            limit = int(q.get("limit", str(DEFAULT_LIMIT)))
        except ValueError as exc:
            raise ValueError("limit must be an integer") from exc
        if not 1 <= limit <= 100_000:
            raise ValueError("limit must be between 1 and 100000")
        return cls(kpis=frozen(kpis), windows=frozen(windows), dims=frozen(dims),
                   start_ms=bounds.get("from"), end_ms=bounds.get("to"), final=final,
                   compare=compare, attribution=attribution, limit=limit)


def frozen(values: set[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def sort_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    """Snapshots in reading order: by KPI, window, then the bucket's instant (not its
    text: in a DST zone the repeated hour's 02:00+02:00 precedes 02:00+01:00)."""
    return (doc["kpi"], doc["bucket"], parse_rfc3339_ms(doc["window_start"]),
            sorted(doc["dims"].items()))
