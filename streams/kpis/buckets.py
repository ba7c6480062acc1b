"""Event-time bucket arithmetic in the reporting time zone. Pure; times are epoch ms.

The buckets (``1m``, ``1h``, ``1d``) and calendar periods (``1w``, ``1mo``,
``1q``) of a zone are :class:`.localtime.Calendar`'s: local hours and days, DST
included. This module holds the zone the process reports in and what is merged
from those buckets.

Rolling views (``15m``, ``24h``, ``7d``, ``30d``) are unions of the last n
consecutive base buckets ending at a bucket boundary. Calendar periods (``1w``,
``1mo``, ``1q``) are unions of the local ``1d`` buckets of the week (ISO, Monday
start unless configured), month or quarter. Nothing here averages ratios:
callers merge numerators and denominators.

One reporting zone per process: :func:`use` sets it (the worker and the
in-process pipeline call it from ``Settings`` at start). In ``UTC`` every
function is the plain modular arithmetic it always was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# the units, bucket sizes and calendar of a zone: imported from here by their callers
from .localtime import BUCKETS as BUCKETS
from .localtime import CALENDAR as CALENDAR
from .localtime import DAY as DAY
from .localtime import HOUR as HOUR
from .localtime import MINUTE as MINUTE
from .localtime import WEEKDAYS as WEEKDAYS
from .localtime import Calendar as Calendar
from .localtime import check_zone as check_zone

# rolling view -> (bucket it is merged from, how many of them)
ROLLING: dict[str, tuple[str, int]] = {
    "15m": ("1m", 15),
    "24h": ("1h", 24),
    "7d": ("1d", 7),
    "30d": ("1d", 30),
}
ALL_WINDOWS: tuple[str, ...] = (*BUCKETS, *ROLLING, *CALENDAR)
# every view (rolling or calendar) -> the bucket it is merged from
VIEW_BASE: dict[str, str] = {**{w: base for w, (base, _) in ROLLING.items()},
                             **{w: "1d" for w in CALENDAR}}


_ACTIVE = Calendar()


def use(zone: str = "UTC", week_start: int = 0) -> Calendar:
    """Make ``zone`` the process's reporting zone; returns its calendar."""
    global _ACTIVE
    if _ACTIVE.zone != zone or _ACTIVE.week_start != week_start:
        _ACTIVE = Calendar(zone, week_start)
    return _ACTIVE


def active() -> Calendar:
    return _ACTIVE


@contextmanager
def zone(name: str, week_start: int = 0) -> Iterator[Calendar]:
    """Run a block in another reporting zone (tests, tools); restores the old one."""
    global _ACTIVE
    old = _ACTIVE
    _ACTIVE = Calendar(name, week_start)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = old


def iso(t: int) -> str:
    return _ACTIVE.iso(t)


def floor(t: int, size: str) -> int:
    """Start of the ``size`` bucket containing ``t``."""
    return _ACTIVE.floor(t, size)


def bucket_end(start: int, size: str) -> int:
    if size in ROLLING:
        return rolling_end(size, start)
    return _ACTIVE.end(start, size)


def starts(t: int) -> tuple[tuple[str, int], ...]:
    """(size, start) of the 1m, 1h and 1d buckets containing ``t``."""
    return _ACTIVE.starts(t)


def month_start(t: int) -> int:
    return _ACTIVE.floor(t, "1mo")


def month_end(start: int) -> int:
    return _ACTIVE.end(start, "1mo")


def rolling_end(window: str, start: int) -> int:
    """End of the ``window`` view whose first base bucket starts at ``start``."""
    base, n = ROLLING[window]
    cal = _ACTIVE
    if cal.utc or base == "1m":
        return start + BUCKETS[base] * n
    end = start
    for _ in range(n):
        end = cal.end(end, base)
    return end


def rolling_members(window: str, end: int) -> list[int]:
    """Starts of the buckets whose union is the ``window`` view ending at ``end``."""
    base, n = ROLLING[window]
    cal = _ACTIVE
    if cal.utc or base == "1m":
        width = BUCKETS[base]
        return [end - width * (n - i) for i in range(n)]
    out = [cal.floor(end - 1, base)]
    for _ in range(n - 1):
        out.append(cal.floor(out[-1] - 1, base))
    out.reverse()
    return out


def rolling_ends_covering(window: str, bucket_start: int) -> list[int]:
    """Ends of the ``window`` views that include the base bucket at ``bucket_start``."""
    base, n = ROLLING[window]
    cal = _ACTIVE
    if cal.utc or base == "1m":
        width = BUCKETS[base]
        first_end = bucket_start + width
        return [first_end + width * i for i in range(n)]
    out = [cal.end(bucket_start, base)]
    for _ in range(n - 1):
        out.append(cal.end(out[-1], base))
    return out


def _days(start: int, end: int) -> list[int]:
    cal = _ACTIVE
    out = []
    while start < end:
        out.append(start)
        start = cal.end(start, "1d")
    return out


def view_members(window: str, end: int) -> list[int]:
    """Starts of the base buckets of the view ending at ``end``."""
    if window in CALENDAR:
        return _days(_ACTIVE.floor(end - 1, window), end)
    return rolling_members(window, end)


def view_ends_covering(window: str, bucket_start: int) -> list[int]:
    """Ends of the views that include the base bucket starting at ``bucket_start``."""
    if window in CALENDAR:
        cal = _ACTIVE
        return [cal.end(cal.floor(bucket_start, window), window)]
    return rolling_ends_covering(window, bucket_start)


def view_start(window: str, end: int) -> int:
    if window in CALENDAR:
        return _ACTIVE.floor(end - 1, window)
    base, n = ROLLING[window]
    if _ACTIVE.utc or base == "1m":
        return end - BUCKETS[base] * n
    return rolling_members(window, end)[0]


def view_end_at(window: str, t: int) -> int:
    """End of the newest view that holds ``t`` (the calendar period of ``t``, or the
    rolling view ending with the base bucket of ``t``)."""
    cal = _ACTIVE
    if window in CALENDAR:
        return cal.end(cal.floor(t, window), window)
    base = ROLLING[window][0]
    return cal.end(cal.floor(t, base), base)


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


COMPARE_BASES = ("previous", "year")
YEAR_WEEKS = 364 * DAY  # a weekday-aligned year: 52 weeks


def compared_window(window: str, start: int, end: int, basis: str) -> tuple[int, int]:
    """(start, end) of the period a ``window`` bucket or view is compared with.

    ``previous``: the bucket (or view) just before, ending where this one starts.
    ``year``: a weekday-aligned year earlier (364 days) for minutes, hours, days,
    weeks and rolling views; the same calendar month or quarter a year earlier.
    """
    cal = _ACTIVE
    if basis == "previous":
        if window in BUCKETS:
            prev = cal.floor(start - 1, window)
            return prev, start
        return view_start(window, start), start
    if basis != "year":
        raise ValueError(f"unknown comparison {basis!r}: use one of {COMPARE_BASES}")
    if window in ("1mo", "1q"):
        # 360 days back lands inside the same month or quarter of the year before
        s = cal.floor(start - 360 * DAY, window)
        return s, cal.end(s, window)
    if window in BUCKETS:
        # local days: noon of the day a year earlier finds its local midnight
        probe = start - YEAR_WEEKS + (12 * HOUR if window == "1d" else 0)
        s = cal.floor(probe, window)
        return s, cal.end(s, window)
    e = view_end_at(window, end - YEAR_WEEKS - 1)
    return view_start(window, e), e
