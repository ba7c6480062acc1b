"""Stage 3: merge partial aggregates into cells and turn cells into KPI snapshots. Pure.

A *cell* is one bucket of one dim, ``(size, start, dim)``, holding the integer
components of every family that reported into it. All cells of a dim live on
the same stage-3 partition, so KPIs that combine families (CPL = spend / leads)
and rolling views (24h = the last 24 hour cells) are computed locally.

Partials carry their source and a sequence number; a partial seen before is
ignored, so a stage-1 replay after a crash cannot count twice. Partials also
carry their source partitions' watermarks, from which cell finality follows.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from datasketches import hll_sketch, hll_union

from . import buckets as B
from .catalogue import KPI, KPIS, Comps, Modes, evaluate, kpis_for
from .deltas import MICRO

CellKey = tuple[str, int, str]  # (size, start, dim)
HLL_LG_K = 14  # relative standard error ~0.8 %; the contract allows 2 %
SESSION_FAMILIES = frozenset({"web", "lead"})


@lru_cache(maxsize=1 << 16)
def iso_s(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_key(kpi: str, window: str, start: int, dim: str) -> str:
    """``kpi|bucket|window_start|dim=value`` (the total has nothing after the last bar)."""
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
    rolling: tuple[str, ...] = ("15m", "24h", "7d", "30d")


@dataclass
class Cell:
    comps: Comps = field(default_factory=dict)
    revs: dict[str, int] = field(default_factory=dict)
    final: bool = False
    sketch: Any = None  # hll_sketch of distinct users (web family)

    def to_json(self) -> dict[str, Any]:
        sk = None if self.sketch is None else base64.b64encode(
            self.sketch.serialize_compact()).decode()
        return {"c": self.comps, "r": self.revs, "f": self.final, "h": sk}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cell:
        sk = None if d.get("h") is None else hll_sketch.deserialize(base64.b64decode(d["h"]))
        return cls(d["c"], d["r"], d["f"], sk)


def cell_store_key(key: CellKey) -> str:
    return f"{key[0]}|{key[1]}|{key[2]}"


def parse_store_key(text: str) -> CellKey:
    size, start, dim = text.split("|", 2)
    return (size, int(start), dim)


class MergePartition:
    """The cells of one stage-3 partition and everything needed to publish them."""

    def __init__(self, cfg: MergeConfig) -> None:
        self.cfg = cfg
        self.cells: dict[CellKey, Cell] = {}
        self.src_wm: dict[str, int | None] = {}  # "topic/partition" -> watermark
        self.applied: dict[str, list[int]] = {}  # source -> last [sequence, piece] applied
        self.rolling_revs: dict[str, list[int]] = {}  # snapshot key -> [revision, final]
        self.pending: set[CellKey] = set()  # changed since the last emission
        self._mode_docs = {k.name: cfg.modes.for_kpi(k) for k in KPIS}
        self.dirty: set[str] = set()  # store keys to persist

    # -- watermarks and finality -------------------------------------------------
    def topic_ready(self, topic: str, deadline: int) -> bool:
        for p in range(self.cfg.partitions):
            name = f"{topic}/{p}"
            if name not in self.src_wm:
                return False  # not heard from yet: cannot vouch for it
            wm = self.src_wm[name]
            if wm is not None and wm < deadline:
                return False
        return True

    def is_final(self, end: int, families: set[str] | frozenset[str]) -> bool:
        if not families:
            return False
        deadline = end + self.cfg.lateness_ms
        if families & SESSION_FAMILIES:
            deadline += self.cfg.session_timeout_ms
        topics = {t for f in families for t in self.cfg.feeds.get(f, ())}
        return bool(topics) and all(self.topic_ready(t, deadline) for t in topics)

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
                if size in expiry and B.bucket_end(start, size) < expiry[size]:
                    continue  # past retention: do not bring an expired bucket back
                cell = self.cells[key] = Cell()
            fam = cell.comps.setdefault(family, {})
            for comp, value in comps.items():
                fam[comp] = fam.get(comp, 0) + value
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

    def _touch(self, key: CellKey) -> None:
        self.pending.add(key)
        self.dirty.add(cell_store_key(key))

    # -- snapshots ----------------------------------------------------------------
    def emit(self, now_wall_ms: int) -> list[tuple[str, dict[str, Any] | None]]:
        """Snapshots of changed cells, cells that just became final, and their rolling views.

        A ``None`` document is a tombstone: the key no longer exists because every
        contribution to it was retracted (a session that moved to another channel).
        """
        out: list[tuple[str, dict[str, Any] | None]] = []
        computed_at = _iso_ms(now_wall_ms)
        touched_rolling: set[tuple[str, int, str]] = set()
        candidates = set(self.pending)
        for ckey, c in self.cells.items():
            if not c.final:
                candidates.add(ckey)
        for key in sorted(candidates):
            maybe = self.cells.get(key)
            if maybe is None:
                continue
            cell = maybe
            size, start, dim = key
            end = B.bucket_end(start, size)
            newly_final = not cell.final and self.is_final(end, set(present(cell.comps)))
            if key not in self.pending and not newly_final:
                continue
            if newly_final:
                cell.final = True
                self.dirty.add(cell_store_key(key))
            out += self._cell_snapshots(key, cell, computed_at)
            for window in self.cfg.rolling:
                if B.ROLLING[window][0] == size:
                    touched_rolling.add((window, start, dim))
        self.pending.clear()
        out += self._rolling_snapshots(touched_rolling, computed_at)
        return out

    def _cell_snapshots(self, key: CellKey, cell: Cell,
                        computed_at: str) -> list[tuple[str, dict[str, Any] | None]]:
        size, start, dim = key
        end = B.bucket_end(start, size)
        live = present(cell.comps)
        out: list[tuple[str, dict[str, Any] | None]] = []
        kpis = kpis_for(dim, live)
        for kpi in kpis:
            rev = _next_rev(cell.revs.get(kpi.name))
            cell.revs[kpi.name] = rev
            out.append(self._snapshot(kpi, size, start, end, dim, live, cell.final,
                                      rev, computed_at))
        names = {k.name for k in kpis}
        for name, rev in cell.revs.items():
            if rev >= 0 and name not in names:
                cell.revs[name] = -rev - 1  # retracted: remember the revision it reached
                out.append((snapshot_key(name, size, start, dim), None))
        self.dirty.add(cell_store_key(key))
        return out

    def _snapshot(self, kpi: KPI, window: str, start: int, end: int, dim: str, comps: Comps,
                  final: bool, rev: int, computed_at: str) -> tuple[str, dict[str, Any]]:
        value, num, den = evaluate(kpi, comps, self.cfg.modes)
        unit = self.cfg.currency if kpi.unit == "CURRENCY" else kpi.unit
        dims = _dims_doc(dim)
        doc = {
            "kpi": kpi.name, "bucket": window, "window_start": iso_s(start),
            "window_end": iso_s(end), "dims": dims, "value": value, "numerator": num,
            "denominator": den, "unit": unit, "final": final,
            "mode": dict(self._mode_docs[kpi.name]), "computed_at": computed_at,
            "schema_version": 1, "revision": rev,
        }
        return snapshot_key(kpi.name, window, start, dim), doc

    def rolling_comps(self, window: str, end: int, dim: str) -> tuple[Comps, bool]:
        """Merged components of a rolling view and whether any member has data."""
        base, _ = B.ROLLING[window]
        merged: Comps = {}
        union = None
        found = False
        for start in B.rolling_members(window, end):
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

    def _rolling_snapshots(self, touched: set[tuple[str, int, str]],
                           computed_at: str) -> list[tuple[str, dict[str, Any] | None]]:
        """Rolling views over changed base cells, and open views that became final."""
        now = self.event_time_now()
        if now is None:
            return []
        changed: set[tuple[str, int, str]] = set()
        for window, start, dim in touched:
            base = B.ROLLING[window][0]
            # views ending after the bucket that holds "now" lie in the future
            current_end = B.floor(now, base) + B.BUCKETS[base]
            for end in B.rolling_ends_covering(window, start):
                if end <= current_end:
                    changed.add((window, end, dim))
        views = set(changed)
        for skey, (_, fin) in self.rolling_revs.items():
            if not fin:
                _, window, start_s, dim = skey.split("|", 3)
                views.add((window, _parse_iso_s(start_s) + _window_len(window), dim))
        out: list[tuple[str, dict[str, Any] | None]] = []
        for window, end, dim in sorted(views):
            comps, _ = self.rolling_comps(window, end, dim)
            start = end - _window_len(window)
            final = self.is_final(end, set(comps))
            is_changed = (window, end, dim) in changed
            kpis = kpis_for(dim, comps)
            for kpi in kpis:
                skey = snapshot_key(kpi.name, window, start, dim)
                rev, was_final = self.rolling_revs.get(skey, [-1, 0])
                if not is_changed and rev >= 0 and (was_final or not final):
                    continue  # nothing new to say about this view
                rev = _next_rev(rev if skey in self.rolling_revs else None)
                self.rolling_revs[skey] = [rev, int(final)]
                out.append(self._snapshot(kpi, window, start, end, dim, comps, final,
                                          rev, computed_at))
            names = {k.name for k in kpis}
            for name in _names_for(dim):
                skey = snapshot_key(name, window, start, dim)
                entry = self.rolling_revs.get(skey)
                if entry is not None and entry[0] >= 0 and name not in names:
                    self.rolling_revs[skey] = [-entry[0] - 1, 1]
                    out.append((skey, None))
        if out:
            self.dirty.add("\x00rolling")
        return out

    # -- expiry -----------------------------------------------------------------
    def _expiry_horizons(self) -> dict[str, int]:
        low = self.low_watermark()
        if low is None:
            return {}
        return {size: low - keep for size, keep in self.cfg.retention.items()}

    def expire(self) -> int:
        """Delete cells past retention (by event time); returns how many went."""
        horizons = self._expiry_horizons()
        if not horizons:
            return 0
        gone = [k for k in self.cells
                if k[0] in horizons and B.bucket_end(k[1], k[0]) < horizons[k[0]]
                and self.cells[k].final]
        for k in gone:
            del self.cells[k]
            self.pending.discard(k)
            self.dirty.add(cell_store_key(k))
        oldest = horizons.get("1d")
        if oldest is not None:
            stale = [s for s in self.rolling_revs
                     if _parse_iso_s(s.split("|")[2]) < oldest - 31 * B.DAY]
            for s in stale:
                del self.rolling_revs[s]
            if stale:
                self.dirty.add("\x00rolling")
        return len(gone)

    # -- persistence ------------------------------------------------------------
    def dump(self, key: str) -> Any:
        if key == "\x00rolling":
            return self.rolling_revs
        cell = self.cells.get(parse_store_key(key))
        return None if cell is None else cell.to_json()

    def load(self, key: str, value: Any) -> None:
        if key == "\x00rolling":
            self.rolling_revs = value
        else:
            self.cells[parse_store_key(key)] = Cell.from_json(value)

    def meta(self) -> dict[str, Any]:
        return {"src_wm": self.src_wm, "applied": self.applied}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.src_wm = dict(meta.get("src_wm", {}))
        self.applied = dict(meta.get("applied", {}))


@lru_cache(maxsize=4096)
def _dims_doc_cached(dim: str) -> tuple[tuple[str, str], ...]:
    return () if not dim else (tuple(dim.split("=", 1)),)  # type: ignore[return-value]


def _dims_doc(dim: str) -> dict[str, str]:
    return dict(_dims_doc_cached(dim))


def present(comps: Comps) -> Comps:
    """The families of a cell that still hold a non-zero component."""
    return {f: c for f, c in comps.items() if any(c.values())}


def _next_rev(rev: int | None) -> int:
    """Next revision; a retracted key (negative) continues where it stopped."""
    if rev is None:
        return 0
    return rev + 1 if rev >= 0 else -rev


@lru_cache(maxsize=64)
def _names_for(dim: str) -> tuple[str, ...]:
    from .catalogue import BY_DIM, dim_name

    return tuple(k.name for k in BY_DIM.get(dim_name(dim), ()))


def _window_len(window: str) -> int:
    base, n = B.ROLLING[window]
    return B.BUCKETS[base] * n


def _parse_iso_s(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 1000


def _iso_ms(ms: int) -> str:
    from ..events import iso_ms

    return iso_ms(ms)


__all__ = ["MICRO", "Cell", "MergeConfig", "MergePartition", "snapshot_key"]
