"""What the stages send each other, as types: partials and watermark heartbeats. Pure.

- A :class:`Partial` carries one flush's additive deltas and sketch hashes from a
  stage-1/2 partition to one merge (stage-3) partition, with the sender's
  watermarks. ``src`` and ``seq`` (and ``part``, for a flush split in pieces)
  make a replayed partial recognisable, so nothing counts twice.
- A :class:`Heartbeat` tells a derived stage (funnel, customers) how far its
  upstream partition's event time has come, after the data it sent before.

Both the Faust worker and the in-process pipeline build partials with
:func:`partial_messages`, so they split and route them the same way.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from . import buckets as B
from .deltas import AggKey, Deltas

PARTIAL_MAX_ITEMS = 4000  # keys or hashes per partial message, to stay well under 1 MB

Watermarks = dict[str, int | None]  # "topic/partition" -> event time (None: no event yet)
DeltaRow = list[Any]  # [family, size, start, dim, {component: int}]
SketchRow = list[Any]  # [family, size, start, dim, [hash, ...]]


class Partial(TypedDict):
    """One flush's deltas for one merge partition (or one piece of them)."""

    src: str  # "<stage>/<partition>" of the sender
    seq: int  # the sender's flush sequence number
    part: int  # piece of that flush (a big flush is split)
    wm: Watermarks  # the sender's watermarks, after this data
    d: list[DeltaRow]
    h: list[SketchRow]
    # the inputs' horizon the sender skipped by (see :func:`drop_past_retention`)
    hz: NotRequired[int]


class Heartbeat(TypedDict):
    """A watermark report to a derived stage, sent after the data it vouches for."""

    hb: str  # "<stage>/<partition>" of the sender
    wm: Watermarks


@lru_cache(maxsize=1 << 16)
def dim_partition(dim: str, partitions: int) -> int:
    """Merge partition of a dim: every cell of one dim lives on one partition. (Dims
    are few, and this runs for every row of every flush: remembered.)"""
    return zlib.crc32(dim.encode()) % partitions


def partial_messages(partitions: int, src: str, seq: int, wm: Watermarks, deltas: Deltas,
                     sketches: dict[AggKey, set[int]], full: bool = True,
                     horizon: int | None = None) -> list[tuple[int, Partial]]:
    """Split one flush's deltas by merge partition, as ``(partition, partial)``.

    With ``full`` every partition gets a message (a watermark heartbeat if nothing
    else); otherwise only those with data do, and they carry the watermark too.
    ``horizon``: the inputs' horizon rows were skipped by, told to every partition."""
    by_part_d: dict[int, list[DeltaRow]] = defaultdict(list)
    by_part_h: dict[int, list[SketchRow]] = defaultdict(list)
    for (family, size, start, dim), comps in deltas.items():
        by_part_d[dim_partition(dim, partitions)].append([family, size, start, dim, comps])
    for (family, size, start, dim), hashes in sketches.items():
        by_part_h[dim_partition(dim, partitions)].append(
            [family, size, start, dim, list(hashes)])  # (a sketch takes any order)
    out: list[tuple[int, Partial]] = []
    for p in range(partitions):
        d, h = by_part_d.get(p, []), by_part_h.get(p, [])
        if not (full or d or h):
            continue
        for i, (dd, hh) in enumerate(_split(d, h)):
            msg = Partial(src=src, seq=seq, part=i, wm=wm, d=dd, h=hh)
            if horizon is not None:
                msg["hz"] = horizon
            out.append((p, msg))
    return out


def _split(d: list[DeltaRow], h: list[SketchRow]
           ) -> list[tuple[list[DeltaRow], list[SketchRow]]]:
    """Pieces of at most ``PARTIAL_MAX_ITEMS`` rows and hashes (a row counts one)."""
    if len(d) + sum(len(row[4]) + 1 for row in h) < PARTIAL_MAX_ITEMS:
        return [(d, h)]  # the common case: one piece, as it is
    pieces: list[tuple[list[DeltaRow], list[SketchRow]]] = []
    cur_d: list[DeltaRow] = []
    cur_h: list[SketchRow] = []
    size = 0
    for row in d:
        cur_d.append(row)
        size += 1
        if size >= PARTIAL_MAX_ITEMS:
            pieces.append((cur_d, cur_h))
            cur_d, cur_h, size = [], [], 0
    for row in h:
        hashes = row[4]
        for i in range(0, max(len(hashes), 1), PARTIAL_MAX_ITEMS):
            chunk = hashes[i:i + PARTIAL_MAX_ITEMS]
            cur_h.append([*row[:4], chunk])
            size += len(chunk) + 1
            if size >= PARTIAL_MAX_ITEMS:
                pieces.append((cur_d, cur_h))
                cur_d, cur_h, size = [], [], 0
    if cur_d or cur_h or not pieces:
        pieces.append((cur_d, cur_h))
    return pieces


# Bucket sizes a replay may skip. Nothing is derived from an expired minute cell; an
# expired day cell moves its net new customers into the running base, so day (and
# hour, with its 24h view) cells are always built.
SKIPPABLE_SIZES: tuple[str, ...] = ("1m",)


def skip_horizons(horizon: int | None, retention: dict[str, int]) -> dict[str, int]:
    """Per skippable bucket size, the end at or before which a bucket is past its
    retention measured from the inputs' ``horizon`` (None: nothing is skipped)."""
    if horizon is None:
        return {}
    return {size: horizon - retention[size] for size in SKIPPABLE_SIZES if size in retention}


def drop_past_retention(deltas: Deltas, sketches: dict[AggKey, set[int]],
                        horizons: dict[str, int], by_size: dict[str, int] | None = None
                        ) -> int:
    """Remove the rows of buckets already past their retention (``horizons``, from
    :func:`skip_horizons`); returns how many (and adds them up per bucket size in
    ``by_size``).

    The inputs' horizon (``streams.agents.horizon``) is an event time the watermarks
    reach once the worker has read what the newest input topic holds now, less a
    margin; minute cells are kept for their retention behind it, so a replay of last
    month builds no minute cells of last month (92 % of the rows it would send).
    Hours, days and everything published from them are the same either way."""
    if not horizons:
        return 0
    dropped = 0
    for rows in (deltas, sketches):
        gone = [key for key in rows if (h := horizons.get(key[1])) is not None and
                key[2] < h and B.bucket_end(key[2], key[1]) <= h]
        for key in gone:
            del rows[key]
            if by_size is not None:
                by_size[key[1]] = by_size.get(key[1], 0) + 1
        dropped += len(gone)
    return dropped


def heartbeat(src: str, wm: Watermarks) -> Heartbeat:
    return Heartbeat(hb=src, wm=wm)


def is_heartbeat(doc: dict[str, Any]) -> bool:
    return "hb" in doc
