"""Channel rules and currency conversion: the configuration half of normalisation.

Both tables are data (``streams/config/*.json`` or files named by settings), so
marketing ops can change what ``utm_medium=newsletter`` means without a release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

CHANNELS: tuple[str, ...] = (
    "organic_search", "paid_search", "organic_social", "paid_social", "email", "display",
    "affiliate", "referral", "direct", "offline", "other",
)
UNATTRIBUTED = "unattributed"
CONFIG_DIR = Path(__file__).resolve().parent / "config"


class ConfigError(ValueError):
    """A rule or rate table is unreadable or inconsistent; the message says where."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _host_regex(patterns: list[str], where: str) -> re.Pattern[str] | None:
    parts = []
    for pat in patterns:
        if not isinstance(pat, str) or not re.fullmatch(r"[a-z0-9.-]+(\.\*)?", pat):
            raise ConfigError(f"{where}: bad host pattern {pat!r}")
        if pat.endswith(".*"):
            parts.append(re.escape(pat[:-2]) + r"\.[a-z0-9.-]+")
        else:
            parts.append(re.escape(pat))
    if not parts:
        return None
    return re.compile(r"(?:^|\.)(?:" + "|".join(parts) + r")$")


@dataclass(frozen=True)
class ChannelRules:
    """Explicit channel > utm_medium > referrer host > direct (kpi-catalogue §2)."""

    utm_medium: dict[str, str]
    search: re.Pattern[str] | None
    social: re.Pattern[str] | None
    internal_hosts: frozenset[str]

    @classmethod
    def load(cls, path: Path | None = None) -> ChannelRules:
        path = path or CONFIG_DIR / "channel_rules.json"
        data = _read_json(path)
        mediums = data.get("utm_medium", {})
        if not isinstance(mediums, dict):
            raise ConfigError(f"{path}: utm_medium must be an object")
        for medium, channel in mediums.items():
            if channel not in CHANNELS:
                raise ConfigError(f"{path}: utm_medium {medium!r} maps to unknown channel "
                                  f"{channel!r} (known: {', '.join(CHANNELS)})")
        return cls(
            utm_medium={k.strip().lower(): v for k, v in mediums.items()},
            search=_host_regex(list(data.get("search_engines", [])), f"{path}: search_engines"),
            social=_host_regex(list(data.get("social_networks", [])),
                               f"{path}: social_networks"),
            internal_hosts=frozenset(h.lower() for h in data.get("internal_hosts", [])),
        )

    def channel(self, explicit: str | None, utm_medium: str | None, referrer: str | None,
                page_url: str | None) -> str:
        """The channel of one touch."""
        if explicit:
            return explicit
        if utm_medium:
            mapped = self.utm_medium.get(utm_medium.strip().lower())
            if mapped is not None:
                return mapped
        if referrer:
            host = _host(referrer)
            if host and not self._internal(host, page_url):
                if self.search is not None and self.search.search(host):
                    return "organic_search"
                if self.social is not None and self.social.search(host):
                    return "organic_social"
                return "referral"
        return "direct"

    def _internal(self, host: str, page_url: str | None) -> bool:
        bare = host.removeprefix("www.")
        if bare in self.internal_hosts or host in self.internal_hosts:
            return True
        if page_url:
            own = _host(page_url)
            if own and own.removeprefix("www.") == bare:
                return True
        return False


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


@dataclass(frozen=True)
class Currency:
    """Converts amounts to the reporting currency through a base-currency rate table."""

    reporting: str
    factors: dict[str, float]  # currency -> reporting units per one unit

    @classmethod
    def load(cls, reporting: str, path: Path | None = None) -> Currency:
        path = path or CONFIG_DIR / "fx_rates.json"
        data = _read_json(path)
        rates = data.get("rates")
        if not isinstance(rates, dict) or not rates:
            raise ConfigError(f"{path}: 'rates' must be a non-empty object")
        for code, rate in rates.items():
            if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
                raise ConfigError(f"{path}: rate of {code} must be a positive number")
        if reporting not in rates:
            raise ConfigError(f"{path}: reporting currency {reporting} is not in the rate "
                              f"table (has {', '.join(sorted(rates))})")
        to_reporting = 1.0 / float(rates[reporting])
        return cls(reporting, {c: float(r) * to_reporting for c, r in rates.items()})

    def convert(self, amount: float, currency: str) -> float | None:
        """Amount in the reporting currency, or None for a currency not in the table."""
        factor = self.factors.get(currency)
        return None if factor is None else amount * factor
