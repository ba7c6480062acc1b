"""Event-time bucket arithmetic. Pure; every time is epoch milliseconds UTC.

Buckets are tumbling and aligned to UTC: ``1m``, ``1h``, ``1d``. Rolling views
are unions of consecutive buckets ending at a bucket boundary; calendar months
(``1mo``) are unions of ``1d`` buckets. Nothing here averages ratios: callers
merge numerators and denominators.
"""

from __future__ import annotations

from datetime import UTC, datetime

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

BUCKETS: dict[str, int] = {"1m": MINUTE, "1h": HOUR, "1d": DAY}
# rolling view -> (bucket it is merged from, how many of them)
ROLLING: dict[str, tuple[str, int]] = {
    "15m": ("1m", 15),
    "24h": ("1h", 24),
    "7d": ("1d", 7),
    "30d": ("1d", 30),
}
ALL_WINDOWS: tuple[str, ...] = (*BUCKETS, *ROLLING, "1mo")


def floor(t: int, size: str) -> int:
    """Start of the ``size`` bucket containing ``t``."""
    width = BUCKETS[size]
    return t - t % width


def bucket_end(start: int, size: str) -> int:
    if size == "1mo":
        return month_end(start)
    if size in ROLLING:
        base, n = ROLLING[size]
        return start + BUCKETS[base] * n
    return start + BUCKETS[size]


def starts(t: int) -> tuple[tuple[str, int], ...]:
    """(size, start) of the 1m, 1h and 1d buckets containing ``t``."""
    return (("1m", t - t % MINUTE), ("1h", t - t % HOUR), ("1d", t - t % DAY))


def month_start(t: int) -> int:
    dt = datetime.fromtimestamp(t / 1000, tz=UTC)
    return int(datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp()) * 1000


def month_end(start: int) -> int:
    dt = datetime.fromtimestamp(start / 1000, tz=UTC)
    year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000


def rolling_members(window: str, end: int) -> list[int]:
    """Starts of the buckets whose union is the ``window`` view ending at ``end``."""
    base, n = ROLLING[window]
    width = BUCKETS[base]
    return [end - width * (n - i) for i in range(n)]


def rolling_ends_covering(window: str, bucket_start: int) -> list[int]:
    """Ends of the ``window`` views that include the base bucket at ``bucket_start``."""
    base, n = ROLLING[window]
    width = BUCKETS[base]
    first_end = bucket_start + width
    return [first_end + width * i for i in range(n)]


# every view (rolling or calendar month) -> the bucket it is merged from
VIEW_BASE: dict[str, str] = {**{w: base for w, (base, _) in ROLLING.items()}, "1mo": "1d"}


def view_members(window: str, end: int) -> list[int]:
    """Starts of the base buckets of the view ending at ``end``."""
    if window == "1mo":
        return list(range(month_start(end - 1), end, DAY))
    return rolling_members(window, end)


def view_ends_covering(window: str, bucket_start: int) -> list[int]:
    """Ends of the views that include the base bucket starting at ``bucket_start``."""
    if window == "1mo":
        return [month_end(month_start(bucket_start))]
    return rolling_ends_covering(window, bucket_start)


def view_start(window: str, end: int) -> int:
    if window == "1mo":
        return month_start(end - 1)
    base, n = ROLLING[window]
    return end - BUCKETS[base] * n


def view_end_at(window: str, t: int) -> int:
    """End of the newest view that holds ``t`` (the month of ``t``, or the rolling view
    ending with the base bucket of ``t``)."""
    if window == "1mo":
        return month_end(month_start(t))
    base = ROLLING[window][0]
    return floor(t, base) + BUCKETS[base]


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))
