"""Additive partial aggregates: the currency between the stages.

A delta maps an aggregate key ``(family, size, bucket_start, dim)`` to integer
component changes (counts, and money or attribution credit in millionths), so
merging is exact and independent of order: the same contributions in any order
sum to the same integers. ``dim`` is ``""`` for the total or ``"name=value"``.
Retractions are negative deltas; a state change is always emitted as
"new contributions minus old contributions".
"""

from __future__ import annotations

from collections.abc import Iterable

AggKey = tuple[str, str, int, str]
Deltas = dict[AggKey, dict[str, int]]

MICRO = 1_000_000


def add(out: Deltas, key: AggKey, component: str, value: int) -> None:
    if not value:
        return
    comps = out.get(key)
    if comps is None:
        out[key] = {component: value}
    else:
        comps[component] = comps.get(component, 0) + value


def add_many(out: Deltas, key: AggKey, comps: dict[str, int]) -> None:
    """Add several non-zero components to one key."""
    cur = out.get(key)
    if cur is None:
        out[key] = dict(comps)
        return
    for comp, value in comps.items():
        cur[comp] = cur.get(comp, 0) + value


def merge_into(out: Deltas, other: Deltas, sign: int = 1) -> None:
    for key, comps in other.items():
        target = out.get(key)
        if target is None:
            out[key] = target = {}
        for comp, value in comps.items():
            target[comp] = target.get(comp, 0) + sign * value


def prune_zero(deltas: Deltas) -> Deltas:
    """Drop components that cancelled out (and keys left empty)."""
    out: Deltas = {}
    for key, comps in deltas.items():
        kept = {c: v for c, v in comps.items() if v}
        if kept:
            out[key] = kept
    return out


def diff(new: Deltas, old: Deltas) -> Deltas:
    out: Deltas = {}
    merge_into(out, new)
    merge_into(out, old, -1)
    return prune_zero(out)


def dim(name: str, value: str) -> str:
    return f"{name}={value}"


def split_micro(weights: Iterable[tuple[str, float]], total: int = MICRO) -> list[tuple[str, int]]:
    """Split ``total`` integer units by weight; shares sum to exactly ``total``.

    Largest-remainder rounding, ties broken by position, so the split is a pure
    function of the weights (and thus of the touches, whatever the arrival order).
    """
    items = list(weights)
    s = sum(w for _, w in items)
    if not items or s <= 0:
        return []
    raw = [(name, total * w / s) for name, w in items]
    floors = [(name, int(x)) for name, x in raw]
    rest = total - sum(v for _, v in floors)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i][1] - floors[i][1]), i))
    shares = [v for _, v in floors]
    for i in order[:rest]:
        shares[i] += 1
    merged: dict[str, int] = {}
    for (name, _), v in zip(floors, shares, strict=True):
        merged[name] = merged.get(name, 0) + v
    return [(k, v) for k, v in merged.items() if v]
