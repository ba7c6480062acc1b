"""What stage 3 holds: keys, constants, the configuration, cells and views, store keys."""

from __future__ import annotations

import base64
import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from datasketches import hll_sketch

from .. import buckets as B
from ..catalogue import Comps, Modes

CellKey = tuple[str, int, str]  # (size, start, dim)
ViewKey = tuple[str, int, str]  # (window, end, dim): calendar months
RollKey = tuple[str, str]  # (window, dim): a rolling view, updated in place
HLL_LG_K = 14  # relative standard error ~0.8 %; the contract allows 2 %
SESSION_FAMILIES = frozenset({"web", "lead"})
Snapshot = tuple[str, dict[str, Any] | None]  # (key, document or None for a tombstone)
NEVER = 1 << 62


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

    def to_state(self) -> list[Any]:
        """The cell as a store value: a list, the sketch as its own compact bytes."""
        sk = None if self.sketch is None else self.sketch.serialize_compact()
        return [self.comps, self.rev, self.fams, self.final, sk, self.unpublished]

    @classmethod
    def from_state(cls, d: list[Any] | dict[str, Any]) -> Cell:
        if isinstance(d, dict):  # written as JSON by a release before the binary store
            h = d.get("h")
            d = [d["c"], d["r"], d["p"], d["f"], None if h is None else base64.b64decode(h),
                 d.get("u", False)]
        comps, rev, fams, final, sk, unpublished = d
        return cls(comps, rev, fams, final,
                   None if sk is None else hll_sketch.deserialize(bytes(sk)), unpublished)


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

    def to_state(self) -> list[Any]:
        return [self.rev, self.end, self.fams, self.final]

    @classmethod
    def from_state(cls, d: list[Any]) -> ViewState:
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


class PartitionAttrs:
    """The attributes of a ``MergePartition`` that its mixins use, declared once for the
    type checker (``MergePartition.__init__`` sets them; nothing is set here)."""

    cfg: MergeConfig
    cells: dict[CellKey, Cell]
    views: dict[ViewKey, list[Any]]
    rolls: dict[RollKey, ViewState]
    rolls_todo: set[RollKey]
    views_todo: set[ViewKey]
    src_wm: dict[str, int | None]
    horizon: int | None
    applied: dict[str, list[int]]
    pending: set[CellKey]
    deferred: set[CellKey]
    open_cells: OpenCells
    dims: set[str]
    newest_final: dict[tuple[str, str], int]
    dirty: set[str]
    _mode_docs: dict[str, dict[str, str]]
    _lows: dict[str, int] | None
    _publish_windows: Any
    emitted_views: list[ViewKey]
    _cust: dict[str, dict[str, dict[int, int]]]
    _cust_base: dict[str, int]


class OpenCells:
    """The cells not final yet, by the end of their bucket. A cell can be final only
    once the low watermark of every input its families come from has passed its end
    plus the lateness: after the watermarks moved, only the cells ending early enough
    for the highest of them need a look (``ending_by``), not every open cell."""

    def __init__(self) -> None:
        self._end: dict[CellKey, int] = {}
        self._by_end: dict[int, set[CellKey]] = {}
        self._ends: list[int] = []  # sorted

    def add(self, key: CellKey, end: int) -> None:
        if key in self._end:
            return
        self._end[key] = end
        keys = self._by_end.get(end)
        if keys is None:
            keys = self._by_end[end] = set()
            bisect.insort(self._ends, end)
        keys.add(key)

    def discard(self, key: CellKey) -> None:
        end = self._end.pop(key, None)
        if end is None:
            return
        keys = self._by_end[end]
        keys.discard(key)
        if not keys:
            del self._by_end[end]
            del self._ends[bisect.bisect_left(self._ends, end)]

    def ending_by(self, end: int) -> list[CellKey]:
        """The open cells whose bucket ends at or before ``end``, oldest first."""
        out: list[CellKey] = []
        for e in self._ends[:bisect.bisect_right(self._ends, end)]:
            out.extend(self._by_end[e])
        return out

    def among(self, keys: set[CellKey]) -> set[CellKey]:
        """Those of ``keys`` that are open (a set operation: a replay's rounds ask it
        of tens of thousands of pending cells)."""
        return keys & self._end.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._end

    def __iter__(self) -> Iterator[CellKey]:
        return iter(list(self._end))

    def __len__(self) -> int:
        return len(self._end)


class CellIndexMixin(PartitionAttrs):
    """A partition's cells and what indexes them: ``open_cells``, ``dims``,
    ``newest_final``, and the emission's ``pending`` and ``deferred``. A cell comes in
    through ``_add_cell``, becomes final through ``_finalise`` and leaves through
    ``_drop_cells``, so the indexes cannot drift from the cells."""

    def _add_cell(self, key: CellKey, cell: Cell) -> Cell:
        self.cells[key] = cell
        self.dims.add(key[2])
        if cell.final:
            self._note_final(key)
        else:
            self.open_cells.add(key, B.bucket_end(key[1], key[0]))
        return cell

    def _finalise(self, key: CellKey, cell: Cell) -> None:
        cell.final = True
        self.open_cells.discard(key)
        self._note_final(key)

    def _drop_cells(self, keys: list[CellKey]) -> list[Cell]:
        """Remove these cells (expired) from the partition and every index; the cells,
        in the same order. ``dims`` keeps a dim whose cells are all gone: a scrape
        reads it as no final cell."""
        lost: set[tuple[str, str]] = set()
        cells = []
        for key in keys:
            size, start, dim = key
            cells.append(self.cells.pop(key))
            self.open_cells.discard(key)  # one its sources skip may expire open
            self.deferred.discard(key)
            self.pending.discard(key)
            if self.newest_final.get((size, dim)) == start:
                lost.add((size, dim))
        if lost:  # the newest final cell of a (size, dim) expired: the next one back
            for size, dim in lost:
                del self.newest_final[(size, dim)]
            for key, cell in self.cells.items():
                if (key[0], key[2]) in lost and cell.final:
                    self._note_final(key)
        return cells

    def _note_final(self, key: CellKey) -> None:
        size, start, dim = key
        if start > self.newest_final.get((size, dim), -NEVER):
            self.newest_final[(size, dim)] = start


def present(comps: Comps) -> Comps:
    """The families of a cell that still hold a non-zero component."""
    return {f: c for f, c in comps.items() if any(c.values())}
