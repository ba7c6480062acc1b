"""What every webhook adapter receives and returns. Pure: no Kafka, no clock.

An adapter turns one provider request (an e-mail service's or a CRM's webhook)
into events in the catalogue's format. It verifies the provider's signature where
the provider signs, and refuses the whole request (:class:`HookRejected`) when the
signature or the body is wrong; a provider event it deliberately does not turn
into an event (SendGrid's ``deferred``, a CRM stage that is not mapped) is listed
in :attr:`HookResult.skipped` with the reason, so nothing disappears unseen.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HookRequest:
    """One webhook call as the collector received it."""

    method: str
    url: str  # the full URL the provider called (scheme://host/path?query): what it signed
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    now_ms: int  # the collector's clock, for signature timestamp windows


class HookRejected(Exception):
    """The whole request is refused (answered with ``status``; nothing is produced)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class Skipped:
    """A provider event that maps to no event of ours, and why."""

    index: int
    reason: str
    detail: str = ""


@dataclass
class HookResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @classmethod
    def of(cls, items: list[Any],
           each: Callable[[int, Any], dict[str, Any] | Skipped]) -> HookResult:
        """Map every provider event to an event of ours or a :class:`Skipped`."""
        out = cls()
        for i, item in enumerate(items):
            ev = each(i, item)
            if isinstance(ev, Skipped):
                out.skipped.append(ev)
            else:
                out.events.append(ev)
        return out


def text_value(value: Any) -> str | None:
    """A non-empty string, stripped (integers too: providers pass ids and custom args as
    numbers); anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def number(value: Any) -> int | float | None:
    """A finite number, or a string of digits as an int; anything else (bools) None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


MAX_ID = 200  # longest event or message id an adapter produces


def bounded(prefix: str, raw: str) -> str:
    """``prefix + raw``, or ``prefix + sha256:<hex>`` when that is over MAX_ID characters
    (still deterministic, so repeats of a provider event still dedupe)."""
    if len(prefix) + len(raw) <= MAX_ID:
        return prefix + raw
    return prefix + "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def short(value: Any) -> str:
    """A provider value, shortened for a skip reason or an error detail."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
