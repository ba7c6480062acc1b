"""How a setting's text, as written in the environment, becomes its value.

Each parser takes the text and returns the value or raises :class:`ValueError`
with the reason; :func:`streams.settings.load_settings` adds the variable's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_duration_ms(text: str) -> int:
    """Parse ``"10m"``, ``"30s"``, ``"500ms"``, ``"7d"`` (bare numbers are seconds)."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 10m, 2h, 7d)")
    number, unit = m.groups()
    return int(float(number) * _UNIT_MS[unit or "s"])


def format_duration_ms(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def boolean(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def one_of(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value

    return parse


def optional_text(text: str) -> str | None:
    return text or None


def optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


def expanded_path(text: str) -> Path:
    return Path(text).expanduser()


def byte_size(text: str) -> int:
    """A size: 64MB, 512MiB, 1g, or a number of bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 64MB, 1GB)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    value = int(float(m.group(1)) * scale)
    if value < 1 << 20:
        raise ValueError(f"must be at least 1MB, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def optional_port(text: str) -> int | None:
    if not text.strip():
        return None
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port between 1 and 65535, got {value}")
    return value


def group_session_ms(text: str) -> int:
    # the broker refuses less than its group.min.session.timeout.ms (6 s by default);
    # Faust refuses more than its request timeout (90 s)
    value = parse_duration_ms(text)
    if not 6_000 <= value <= 90_000:
        raise ValueError(f"must be between 6s and 90s, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value}")
    return value


def currency_code(text: str) -> str:
    value = text.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"not an ISO 4217 currency code: {text!r}")
    return value


def zone_name(text: str) -> str:
    from ..kpis.buckets import check_zone

    name = text.strip()
    check_zone(name)
    return name


def weekday_index(text: str) -> int:
    from ..kpis.buckets import WEEKDAYS

    value = text.strip().lower()
    if value not in ("monday", "sunday"):
        raise ValueError(f"{text!r}: a week starts on monday (ISO) or sunday")
    return WEEKDAYS.index(value)


def window_list(text: str) -> tuple[str, ...]:
    allowed = ("1m", "1h", "1d", "1w", "1mo", "1q", "15m", "24h", "7d", "30d")
    values = tuple(w.strip() for w in text.split(",") if w.strip())
    unknown = [w for w in values if w not in allowed]
    if unknown:
        raise ValueError(f"unknown window(s) {unknown}; use {', '.join(allowed)}")
    return values


def goal_set(text: str) -> tuple[str, ...]:
    return tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be more than 0, got {value}")
    return value


def text_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def networks(text: str) -> tuple[Any, ...]:
    from ..traffic import parse_networks

    return parse_networks(text)


DEAL_STAGES = ("mql", "sal", "sql", "opportunity", "won", "lost")
DEAL_KINDS = ("new_business", "renewal", "expansion")


def pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``key=value,...`` pairs (a value may hold spaces, not commas)."""
    found = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{item!r} is not key=value")
        found.append((key.strip(), value.strip()))
    return tuple(found)


def pairs_of(*allowed: str) -> Callable[[str], tuple[tuple[str, str], ...]]:
    """``a=b,c=d`` pairs whose values are one of ``allowed``."""
    def parse(text: str) -> tuple[tuple[str, str], ...]:
        found = pairs(text)
        for key, value in found:
            if value not in allowed:
                raise ValueError(f"'{key}={value}': {value!r} is not one of "
                                 f"{', '.join(allowed)}")
        return found

    return parse


