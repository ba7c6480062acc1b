"""Local-time bucket boundaries of one IANA zone. Pure; times are epoch ms.

Buckets are tumbling: ``1m``, ``1h``, ``1d``. ``1h`` and ``1d`` are aligned to
local time in the reporting zone (``KPI_TIMEZONE``): a DST day is 23 or 25 hours
long, the repeated autumn hour is two buckets (two distinct UTC instants), and
zones with half- or quarter-hour offsets get true local hours. ``1m`` is a UTC
minute, which is a local minute in every zone with a whole-minute offset.
Calendar periods (``1w``, ``1mo``, ``1q``) start at the local midnight of the
week's first day (ISO, Monday unless configured), of the month or of the quarter.

In ``UTC`` every boundary is the plain modular arithmetic. :mod:`.buckets` holds
the process's reporting zone and the views merged from these buckets.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

# nominal widths; a local hour or day can be shorter or longer (use bucket_end)
BUCKETS: dict[str, int] = {"1m": MINUTE, "1h": HOUR, "1d": DAY}
# calendar periods, merged from local days
CALENDAR: tuple[str, ...] = ("1w", "1mo", "1q")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_SLOT = 15 * MINUTE  # every modern offset and transition is on a quarter hour of UTC
_CACHE_MAX = 1 << 16


def check_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or ValueError saying what is wrong and what would do."""
    if not name or name != name.strip():
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Warsaw)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        near = sorted(z for z in available_timezones()
                      if z.lower().endswith(name.lower().rsplit("/", 1)[-1]))[:3]
        hint = f"; did you mean {', '.join(near)}?" if near else \
            " (an IANA name such as Europe/Warsaw, Asia/Tehran or UTC)"
        raise ValueError(f"unknown time zone {name!r}{hint}") from exc


class Calendar:
    """Local-time bucket boundaries of one IANA zone.

    Boundaries of ``1h`` are the instants where the local minute and second are 0
    (in the offset of that instant), plus offset transitions; of ``1d`` and the
    calendar periods, the first instant of the local date. Results are cached per
    quarter hour of UTC, so a replay pays the zone arithmetic once per slot.
    """

    def __init__(self, zone: str = "UTC", week_start: int = 0) -> None:
        self.zone = zone
        self.tz = check_zone(zone)
        if not 0 <= week_start <= 6:
            raise ValueError("week_start is 0 (Monday) to 6 (Sunday)")
        self.week_start = week_start
        self.utc = zone in ("UTC", "Etc/UTC")
        self._slots: dict[int, tuple[int, int, int, int] | None] = {}
        self._iso: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"Calendar({self.zone!r}, week_start={WEEKDAYS[self.week_start]})"

    # --- offsets -------------------------------------------------------------
    def offset(self, t: int) -> int:
        """The zone's UTC offset at instant ``t``, in ms."""
        if self.utc:
            return 0
        off = datetime.fromtimestamp(t // 1000, self.tz).utcoffset()
        return int(off.total_seconds()) * 1000 if off is not None else 0

    def _transition(self, lo: int, hi: int) -> int:
        """The first instant in (lo, hi] whose offset differs from lo's (seconds)."""
        base = self.offset(lo)
        a, b = lo // 1000, hi // 1000  # offset(a) == base, offset(b) != base
        while b - a > 1:
            m = (a + b) // 2
            if self.offset(m * 1000) == base:
                a = m
            else:
                b = m
        return b * 1000

    def iso(self, t: int) -> str:
        """RFC 3339 with the zone's offset at ``t`` (``Z`` in UTC), whole seconds."""
        text = self._iso.get(t)
        if text is None:
            if self.utc:
                text = datetime.fromtimestamp(t // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                text = datetime.fromtimestamp(t // 1000, self.tz).isoformat()
            if len(self._iso) >= _CACHE_MAX:
                self._iso.clear()
            self._iso[t] = text
        return text

    # --- local hours ---------------------------------------------------------
    def _hour_floor(self, t: int) -> int:
        off = self.offset(t)
        f = t - (t + off) % HOUR
        if self.offset(f) != off:  # a transition not on a local hour (Lord Howe)
            f = self._transition(f, t)
        return f

    def _hour_end(self, start: int) -> int:
        off = self.offset(start)
        c = start + HOUR - (start + off) % HOUR
        if self.offset(c - 1) != off:
            c = self._transition(start, c - 1)
        return c

    # --- local days and calendar periods -------------------------------------
    def _midnight(self, d: date) -> int:
        # fold=0: a midnight that does not exist (a spring-forward at 00:00) resolves
        # to the transition, the first instant of that local date
        return int(datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()) * 1000

    def _first_day(self, d: date, size: str) -> date:
        if size == "1d":
            return d
        if size == "1w":
            return d - timedelta(days=(d.weekday() - self.week_start) % 7)
        if size == "1mo":
            return d.replace(day=1)
        if size == "1q":
            return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
        raise ValueError(f"not a calendar bucket: {size}")

    @staticmethod
    def _next_day(d: date, size: str) -> date:
        if size == "1d":
            return d + timedelta(days=1)
        if size == "1w":
            return d + timedelta(days=7)
        months = 1 if size == "1mo" else 3
        m = d.month - 1 + months
        return date(d.year + m // 12, m % 12 + 1, 1)

    def _local_date(self, t: int) -> date:
        return datetime.fromtimestamp(t // 1000, self.tz).date()

    def _period_floor(self, t: int, size: str) -> int:
        first = self._first_day(self._local_date(t), size)
        f = self._midnight(first)
        if f > t:  # a repeated hour before midnight (a fall-back at 00:00)
            first = self._first_day(first - timedelta(days=1), size)
            f = self._midnight(first)
        while True:  # the same, the other way round
            nxt = self._next_day(first, size)
            n = self._midnight(nxt)
            if n > t:
                return f
            first, f = nxt, n

    def _period_end(self, start: int, size: str) -> int:
        first = self._first_day(self._local_date(start), size)
        return self._midnight(self._next_day(first, size))

    # --- cached hour and day of a quarter-hour slot ----------------------------
    def _slot(self, t: int) -> tuple[int, int, int, int] | None:
        s = t // _SLOT
        if s in self._slots:
            return self._slots[s]
        lo, hi = s * _SLOT, s * _SLOT + _SLOT - 1
        h0, d0 = self._hour_floor(lo), self._period_floor(lo, "1d")
        h1, d1 = self._hour_end(h0), self._period_end(d0, "1d")
        hit = (h0, h1, d0, d1) if hi < h1 and hi < d1 else None
        if len(self._slots) >= _CACHE_MAX:
            self._slots.clear()
        self._slots[s] = hit
        return hit

    # --- the public arithmetic -----------------------------------------------
    def floor(self, t: int, size: str) -> int:
        """Start of the ``size`` bucket (or calendar period) containing ``t``."""
        if size == "1m":
            return t - t % MINUTE
        if self.utc and size in ("1h", "1d"):
            return t - t % BUCKETS[size]
        if size in ("1h", "1d"):
            hit = self._slot(t)
            if hit is not None:
                return hit[0] if size == "1h" else hit[2]
            return self._hour_floor(t) if size == "1h" else self._period_floor(t, "1d")
        if size in CALENDAR:
            if self.utc and size == "1w":
                # 1970-01-05 was a Monday
                return t - (t - (4 + self.week_start) * DAY) % (7 * DAY)
            return self._period_floor(t, size)
        raise ValueError(f"not a bucket: {size}")

    def end(self, start: int, size: str) -> int:
        """End of the bucket or period that starts at ``start``."""
        if size == "1m":
            return start + MINUTE
        if self.utc and size in ("1h", "1d"):
            return start + BUCKETS[size]
        if size in ("1h", "1d"):
            hit = self._slot(start)
            if hit is not None:
                return hit[1] if size == "1h" else hit[3]
            return self._hour_end(start) if size == "1h" else self._period_end(start, "1d")
        if size in CALENDAR:
            if self.utc and size == "1w":
                return start + 7 * DAY
            return self._period_end(start, size)
        raise ValueError(f"not a bucket: {size}")

    def starts(self, t: int) -> tuple[tuple[str, int], ...]:
        """(size, start) of the 1m, 1h and 1d buckets containing ``t``."""
        if self.utc:
            return (("1m", t - t % MINUTE), ("1h", t - t % HOUR), ("1d", t - t % DAY))
        hit = self._slot(t)
        if hit is not None:
            return (("1m", t - t % MINUTE), ("1h", hit[0]), ("1d", hit[2]))
        return (("1m", t - t % MINUTE), ("1h", self._hour_floor(t)),
                ("1d", self._period_floor(t, "1d")))

    def back(self, start: int, size: str, n: int) -> int:
        """The start of the bucket ``n`` buckets before the one starting at ``start``."""
        if self.utc or size == "1m":
            return start - BUCKETS[size] * n
        for _ in range(n):
            start = self.floor(start - 1, size)
        return start


def iso_ms(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds and a Z."""
    from datetime import UTC, datetime

    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
