"""Targets and pacing: goals per KPI and calendar period, and how the period is going. Pure.

Targets are read from one YAML (or JSON) file (``KPI_TARGETS``): a mapping whose
``targets`` list holds entries of ``kpi``, ``period`` (1w | 1mo | 1q), exactly one
of ``at_least`` / ``at_most``, and optionally ``dims`` (one of the KPI's dims),
``name``, ``profile`` (linear | weekday) and ``tolerance`` (the on-pace band).

*Pacing* compares the KPI so far with where it should be now. Sums (counts,
money) accumulate, so their goal is spread over the period by an *elapsed*
share: linear in time, or weighted per local day by a weekday profile learnt
from history. Ratios do not accumulate: the value so far is already the best
estimate of the period's value.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..channels import ConfigError
from .buckets import CALENDAR, Calendar
from .catalogue import BY_NAME
from .deltas import dim

DIRECTIONS = ("at_least", "at_most")
PROFILES = ("linear", "weekday")
STATUSES = ("ahead", "on_pace", "behind", "early", "no_data")
KEYS = frozenset({"name", "kpi", "period", "dims", *DIRECTIONS, "tolerance", "profile"})


class TargetsError(ConfigError):
    """A targets file that cannot be used; the message names the file, line and reason."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    kpi: str
    period: str
    dims: tuple[tuple[str, str], ...]  # () for the total
    goal: float
    direction: str  # at_least | at_most
    tolerance: float = 0.05
    profile: str = "linear"
    line: int = 0  # where it is defined, for messages

    @property
    def dim_label(self) -> str:
        """The dim as the engine writes a snapshot's (``channel=paid_search``, "" total)."""
        return dim(*self.dims[0]) if self.dims else ""


# --- reading: a safe loader whose mappings and lists remember their lines ------
class _Map(dict[Any, Any]):
    __slots__ = ("line", "lines")
    line: int  # 1-based, of the mapping's first key
    lines: dict[Any, int]  # key -> its line


class _List(list[Any]):
    __slots__ = ("lines",)
    lines: list[int]  # the line of each item


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: Any, node: Any) -> Iterator[_Map]:
    data = _Map()
    data.line, data.lines = node.start_mark.line + 1, {}
    yield data  # first, so that aliases inside it can refer to it
    # PyYAML keeps the last of two equal keys; a target with two at_least is a typo
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if (key.tag, key.value) in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key.value!r}", key.start_mark)
            seen.add((key.tag, key.value))
    data.update(loader.construct_mapping(node))
    data.lines = {loader.construct_object(k): k.start_mark.line + 1 for k, _ in node.value}


def _seq(loader: Any, node: Any) -> Iterator[_List]:
    data = _List()
    data.lines = [n.start_mark.line + 1 for n in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _seq)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_targets(text: str, where: str) -> tuple[Target, ...]:
    """Validate the text of a targets file; ``where`` (the file) starts every message."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise TargetsError(f"{where}{at}: not valid YAML ({reason})") from exc

    def bad(line: int, msg: str) -> TargetsError:
        return TargetsError(f"{where} line {line}: {msg}")

    if not isinstance(doc, _Map):
        raise bad(1, "expected a mapping with a 'targets' list")
    if set(doc) != {"targets"}:
        extra = sorted(map(str, set(doc) - {"targets"}))
        raise bad(doc.line, f"unknown keys {extra}" if extra else "'targets' is missing")
    entries = doc["targets"]
    if not isinstance(entries, _List):
        raise bad(doc.lines["targets"], "'targets' must be a list of targets")
    out: list[Target] = []
    first: dict[str, int] = {}  # name -> line, for duplicates
    for line, entry in zip(entries.lines, entries, strict=True):
        if not isinstance(entry, _Map):
            raise bad(line, "each target must be a mapping (kpi, period, at_least|at_most)")
        t = _target(entry, bad)
        if t.name in first:
            raise bad(line, f"target name {t.name!r} is used twice (first on line "
                            f"{first[t.name]})")
        first[t.name] = line
        out.append(t)
    return tuple(out)


def _target(e: _Map, bad: Callable[[int, str], TargetsError]) -> Target:
    def at(key: str) -> int:
        return int(e.lines.get(key, e.line))

    extra = sorted(map(str, set(e) - KEYS))
    if extra:
        raise bad(at(extra[0]), f"unknown keys {extra} (allowed: {', '.join(sorted(KEYS))})")
    name = e.get("kpi")
    if not isinstance(name, str) or not name:
        raise bad(at("kpi"), "kpi is required: the name of a catalogue KPI")
    if name not in BY_NAME:
        near = difflib.get_close_matches(name, BY_NAME, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise bad(at("kpi"), f"unknown KPI {name!r}{hint}")
    kpi = BY_NAME[name]
    period = e.get("period")
    if period not in CALENDAR:
        raise bad(at("period"), f"period must be one of {', '.join(CALENDAR)}, not {period!r}")
    dims = e.get("dims", {})
    allowed = sorted(kpi.dims - {""})
    if not isinstance(dims, dict) or len(dims) > 1:
        raise bad(at("dims"), "dims must be a mapping of at most one dim: value")
    for key, value in dims.items():
        if key not in allowed:
            raise bad(at("dims"), f"{name} has no dim {key!r} (one of {', '.join(allowed)})")
        if not isinstance(value, str) or not value:
            raise bad(at("dims"), f"dims.{key} must be a non-empty string")
    given = [d for d in DIRECTIONS if d in e]
    if len(given) != 1:
        raise bad(at(given[-1]) if given else e.line, "give exactly one of at_least, at_most")
    direction, goal = given[0], e[given[0]]
    if not _number(goal):
        raise bad(at(direction), f"{direction} must be a finite number, not {goal!r}")
    if kpi.aggregation == "sum" and goal <= 0:
        # a sum's goal is spread over the period: a zero or negative one cannot be paced
        raise bad(at(direction), f"{direction} must be > 0 for {name} (a sum)")
    tol = e.get("tolerance", 0.05)
    if not _number(tol) or not 0 <= tol < 1:
        raise bad(at("tolerance"), f"tolerance must be a number in [0, 1), not {tol!r}")
    profile = e.get("profile", "linear")
    if profile not in PROFILES:
        raise bad(at("profile"), f"profile must be one of {', '.join(PROFILES)}, not "
                                 f"{profile!r}")
    pairs = tuple((str(k), str(v)) for k, v in dims.items())
    default = "-".join([name, period, *(p for kv in pairs for p in kv)])
    label = e.get("name", default)
    if not isinstance(label, str) or not label:
        raise bad(at("name"), "name must be a non-empty string")
    return Target(label, name, period, pairs, float(goal), direction, float(tol), profile,
                  e.line)


def load_targets(path: Path) -> tuple[Target, ...]:
    """Read and validate a targets file; every error names the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise TargetsError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    return parse_targets(text, str(path))


# --- pacing ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pacing:
    target: Target
    start_ms: int
    end_ms: int
    now_ms: int
    elapsed: float  # share of the period's expected volume that has passed, 0..1
    value: float | None  # the KPI so far in the period
    expected: float | None  # where the KPI should be now
    projected: float | None  # end-of-period value at the current run rate
    attainment: float | None  # value / goal
    status: str  # ahead | on_pace | behind | no_data
    covered: bool = True  # the data reaches back to the period's start


def _elapsed(start: int, end: int, now: int,
             shares: Sequence[tuple[int, int, float]] | None) -> float:
    total = sum(w for _, _, w in shares) if shares else 0.0
    if total <= 0:  # no profile, or one with no volume at all: linear in time
        return (now - start) / (end - start)
    done = 0.0
    for d0, d1, w in shares or ():
        if now >= d1:
            done += w
        elif now > d0:
            done += w * (now - d0) / (d1 - d0)
    return min(1.0, done / total)


def _status(t: Target, x: float) -> str:
    # abs(): the band stays around the goal for a negative one (a ratio such as ROI)
    hi, lo = t.goal + abs(t.goal) * t.tolerance, t.goal - abs(t.goal) * t.tolerance
    if t.direction == "at_least":
        return "ahead" if x >= hi else "behind" if x < lo else "on_pace"
    return "ahead" if x <= lo else "behind" if x > hi else "on_pace"


def pace(target: Target, aggregation: str, value: float | None, start_ms: int, end_ms: int,
         now_ms: int, shares: Sequence[tuple[int, int, float]] | None = None,
         observed_from_ms: int | None = None, min_observed_ms: int = 0) -> Pacing:
    """How ``target`` is doing at ``now_ms`` with ``value`` so far in [start_ms, end_ms).

    ``shares`` are the period's local days as (start, end, weight), used whatever
    the profile (the caller builds them with :func:`weekday_weights`); None is
    linear in time. ``aggregation`` is the KPI's: sums are projected at the run
    rate, ratios and computed KPIs are compared as they are.

    ``observed_from_ms``: where the data starts, when that is inside the period (a
    site that began sending events on the 20th). A sum's run rate is then taken over
    the part observed, and its expected value is the goal's share of that part: the
    days before the data are unknown, not zero (``covered`` is False). With less than
    ``min_observed_ms`` of it a sum is ``early``: a run rate of a few hours says
    nothing about a month (no expected or projected value).
    """
    if end_ms <= start_ms:
        raise ValueError(f"empty period [{start_ms}, {end_ms})")
    if aggregation not in ("sum", "ratio", "computed"):
        raise ValueError(f"unknown aggregation {aggregation!r}")
    now = min(max(now_ms, start_ms), end_ms)
    elapsed = _elapsed(start_ms, end_ms, now, shares)
    covered = observed_from_ms is None or observed_from_ms <= start_ms
    observed = elapsed if covered else elapsed - _elapsed(
        start_ms, end_ms, min(max(observed_from_ms or 0, start_ms), now), shares)
    goal = target.goal
    attainment = None if value is None or goal == 0 else value / goal
    if aggregation != "sum":
        expected: float | None = goal
        projected = value
    else:
        expected = goal * observed
        projected = None if value is None or observed <= 0 else value / observed
    early = not covered and aggregation == "sum" and \
        now - max(observed_from_ms or 0, start_ms) < min_observed_ms
    if early:
        expected = projected = None
    if value is None:
        status = "no_data"
    elif early:
        status = "early"
    elif projected is None:
        # a sum at the very start has no run rate yet: only a goal already met (at_least)
        # or already overrun (at_most) is news
        if target.direction == "at_least":
            status = "ahead" if value >= goal else "on_pace"
        else:
            status = "behind" if value > goal + abs(goal) * target.tolerance else "on_pace"
    else:
        status = _status(target, projected)
    return Pacing(target, start_ms, end_ms, now_ms, elapsed, value, expected, projected,
                  attainment, status, covered)


def period_days(calendar: Calendar, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """The local days (start, end) of the period [start_ms, end_ms) in ``calendar``'s zone."""
    out = []
    day = calendar.floor(start_ms, "1d")
    while day < end_ms:
        nxt = calendar.end(day, "1d")
        out.append((day, nxt))
        day = nxt
    return out


def weekday_weights(daily: Mapping[int, float], days: Sequence[tuple[int, int]],
                    calendar: Calendar) -> list[tuple[int, int, float]]:
    """Weights of ``days`` from history: the mean of the past days of the same local weekday.

    ``daily`` maps a local day's start to that day's KPI value (the caller passes the
    eight weeks before the period). A weekday without history gets the mean of the
    others; with no history at all every day weighs 1 (linear by day).
    """
    def weekday(t: int) -> int:
        return datetime.fromtimestamp(t // 1000, calendar.tz).weekday()

    seen: dict[int, list[float]] = {}
    for t, v in daily.items():
        seen.setdefault(weekday(t), []).append(v)
    # a day cannot carry negative volume (refunds): it would move elapsed backwards
    means = {wd: max(0.0, sum(vs) / len(vs)) for wd, vs in seen.items()}
    fill = sum(means.values()) / len(means) if means else 1.0
    return [(d0, d1, means.get(weekday(d0), fill)) for d0, d1 in days]


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def pacing_fields(p: Pacing) -> dict[str, Any]:
    """The JSON-ready fields of a pacing (rounded; None where there is nothing to say)."""
    t = p.target
    return {"target": t.name, "goal": t.goal, "direction": t.direction,
            "tolerance": t.tolerance, "profile": t.profile, "elapsed": round(p.elapsed, 4),
            "value": _round(p.value, 6), "expected": _round(p.expected, 6),
            "projected": _round(p.projected, 6), "attainment": _round(p.attainment, 4),
            "status": p.status, "covered": p.covered}
