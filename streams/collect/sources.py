"""Who may send what, how fast, and the cookieless visitor id. Pure: time is passed in.

A source token is write-only: it lets its holder send the event types it names
and nothing else (it reads nothing). Tokens come from ``KPI_COLLECT_TOKENS``::

    site:pk_3f9a1c:page_view,form_submit;ops:sk_77e0b2:spend,engagement;crm:sk_1b:*

``name`` labels the source in metrics and logs (the token itself never is).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from ..topics import EVENT_TYPES


@dataclass(frozen=True)
class SourceToken:
    name: str
    token: str
    types: frozenset[str]

    def allows(self, event_type: object) -> bool:
        return isinstance(event_type, str) and event_type in self.types


def parse_tokens(text: str) -> tuple[SourceToken, ...]:
    """``name:token:type,type;...`` -> tokens. Raises ValueError naming the entry."""
    out: list[SourceToken] = []
    names: set[str] = set()
    for n, entry in enumerate(e.strip() for e in text.replace("\n", ";").split(";")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ValueError(f"entry {n + 1} is not name:token:types "
                             f"(e.g. site:pk_3f9a1c:page_view,form_submit)")
        name, token, types_text = (p.strip() for p in parts)
        if types_text == "*":
            types = frozenset(EVENT_TYPES)
        else:
            types = frozenset(t.strip() for t in types_text.split(",") if t.strip())
            unknown = sorted(types - set(EVENT_TYPES))
            if unknown:
                raise ValueError(f"entry {n + 1} ({name}): unknown event type(s) "
                                 f"{', '.join(unknown)}; use {', '.join(EVENT_TYPES)} or *")
        if len(token) < 8:
            raise ValueError(f"entry {n + 1} ({name}): a token needs at least 8 characters")
        if name in names:
            raise ValueError(f"entry {n + 1}: source name {name!r} is used twice")
        names.add(name)
        out.append(SourceToken(name, token, types))
    return tuple(out)


class TokenTable:
    """Looks a presented token up in constant time per candidate (no timing oracle)."""

    def __init__(self, tokens: tuple[SourceToken, ...]) -> None:
        self.tokens = tokens

    def find(self, presented: str | None) -> SourceToken | None:
        if not presented:
            return None
        found = None
        for t in self.tokens:
            if hmac.compare_digest(t.token.encode(), presented.encode()):
                found = t
        return found


class RateLimiter:
    """A token bucket per source: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._level: dict[str, tuple[float, float]] = {}  # source -> (tokens, at)

    def take(self, source: str, now: float) -> float:
        """0.0 if the request may go now, else the seconds until it may."""
        tokens, at = self._level.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._level[source] = (tokens - 1.0, now)
            return 0.0
        self._level[source] = (tokens, now)
        return (1.0 - tokens) / self.rate


DAY_MS = 86_400_000


class CookielessIds:
    """Visitor ids without cookies: a hash of site, IP and user agent with a daily salt.

    As Plausible does it: the salt is random, lives in this process's memory only and
    is replaced at every UTC midnight, so the id of yesterday cannot be recomputed
    by anyone (us included). The cost: the same person is a new visitor every day
    (returning users are unknown across days), sessions that span midnight split, and
    two collector replicas give one person two ids unless the load balancer keeps an
    IP on one replica. The IP is hashed and never stored or produced.
    """

    def __init__(self, random: bytes | None = None) -> None:
        self._fixed = random  # tests pin the salt
        self._day = -1
        self._salt = b""

    def salt(self, now_ms: int) -> bytes:
        day = now_ms // DAY_MS
        if day != self._day:
            self._day = day
            self._salt = (hashlib.sha256(self._fixed + str(day).encode()).digest()
                          if self._fixed is not None else os.urandom(32))
        return self._salt

    def visitor_id(self, site: str, ip: str, user_agent: str, now_ms: int) -> str:
        h = hashlib.blake2b(digest_size=12, key=self.salt(now_ms))
        for part in (site, ip, user_agent):
            h.update(part.encode())
            h.update(b"\x00")
        return "anon-" + h.hexdigest()
