"""Long-lived visitor state in its smallest shape: first seen and attribution touches.

A visitor whose sessions can no longer change (older than the allowed lateness,
the session timeout and the open day) is only needed for two questions: "is
this visitor new?" (the time of its first page view ever) and "which sessions
touched it before its lead?" (session starts and channels within the
attribution lookback). That is what stays of most visitors of a site for as
long as ``KPI_VISITOR_TTL`` — the state that grows with the site.

Such a *cold* visitor is kept as one record in a :class:`ColdStore` (RocksDB in
the worker, a dict in tests), keyed by a 64-bit hash of its id, and taken back
into the processor's heap only when it returns. The record is packed binary,
not JSON::

    int64 first page view (ms, -1: none) | uint8 touches | per touch:
    int64 session start (ms) | uint8 channel code (255: name follows as
    uint8 length + UTF-8; 128 + code, or 254 for a named one: the session's
    campaign follows, uint8 length + UTF-8) | [uint16 score facts | per fact:
    int64 t, float64 points, uint16 rule index, event id (uint8 length + UTF-8)]

so a visitor with one touch and no score facts costs 18 bytes of value and
17 of key. Score facts are a visitor's lead-score hits from before it named a
contact, kept for the attribution lookback in case a form links it later. Two visitor
ids share a record only if their 64-bit hashes collide (for ten million
visitors, a chance of about 3 in a million).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Any, Protocol

CHANNELS = ("organic_search", "paid_search", "organic_social", "paid_social", "email",
            "display", "affiliate", "referral", "direct", "offline", "other",
            "unattributed")
_CODE = {name: i for i, name in enumerate(CHANNELS)}
_NAMED = 255
_NAMED_CAMPAIGN = 254  # a named channel, then a campaign
_CAMPAIGN = 128  # added to a channel code: a campaign follows
_HEAD = struct.Struct(">qB")
_TOUCH = struct.Struct(">qB")
_COUNT = struct.Struct(">H")
_FACT = struct.Struct(">qdH")
# changelog keys of cold records: a prefix + 16 hex digits of a 64-bit hash; their
# values are packed bytes, read in place from the local store, never loaded at restore
COLD_PREFIX = "\x01"  # cold visitors (this module)
MESSAGE_PREFIX = "\x02"  # cold e-mail messages (streams/kpis/email.py)
CONTACT_PREFIX = "\x03"  # cold contacts (streams/kpis/funnel.py)
RAW_PREFIXES = (COLD_PREFIX, MESSAGE_PREFIX, CONTACT_PREFIX)
RAW_KEY_PREFIXES = tuple(p.encode() for p in RAW_PREFIXES)  # the same, as key bytes
_ESCAPE = "\\"


def hot_name(visitor_id: str) -> str:
    """The state-changelog key of a hot entry (a visitor, a message): its id, escaped
    if it could be read as a cold key."""
    return _ESCAPE + visitor_id if visitor_id[:1] in (*RAW_PREFIXES, _ESCAPE) \
        else visitor_id


def hot_id(name: str) -> str:
    return name[1:] if name[:1] == _ESCAPE else name


def visitor_key(visitor_id: str) -> bytes:
    """64-bit key of a visitor id in the cold store."""
    return hashlib.blake2b(visitor_id.encode(), digest_size=8).digest()


def cold_name(key: bytes, prefix: str = COLD_PREFIX) -> str:
    """The state-changelog key of a cold record."""
    return prefix + key.hex()


def cold_key(name: str) -> bytes:
    return bytes.fromhex(name[1:])


def short(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"longer than 255 bytes: {text[:40]!r}...")
    return bytes([len(raw)]) + raw


def _short_cut(text: str) -> bytes:
    """``short`` for a value that may be longer (a campaign name): cut at 255 bytes,
    on a character boundary."""
    raw = text.encode()[:255]
    return short(raw.decode(errors="ignore"))


def encode(first: int | None, touches: list[tuple[Any, ...]],
           score: list[Any] | None = None) -> bytes:
    """Pack a cold visitor. ``score``: its lead-score facts ``[t, event_id, rule,
    points]`` from before it named a contact (kept for the attribution lookback, in
    case a form links it later; ``rule`` is the rule's index in the rules file);
    appended as a uint16 count and, per fact, int64 t, float64 points, uint16 rule
    and the event id as length-prefixed UTF-8."""
    if len(touches) > 255:
        touches = touches[-255:]  # the newest matter: the lookback ends at the lead
    parts = [_HEAD.pack(-1 if first is None else first, len(touches))]
    for touch in touches:
        start, channel = touch[0], touch[1]
        campaign = touch[2] if len(touch) > 2 else None
        code = _CODE.get(channel)
        tail = b"" if campaign is None else _short_cut(campaign)
        if code is None:
            parts.append(_TOUCH.pack(start, _NAMED if campaign is None else _NAMED_CAMPAIGN)
                         + short(channel) + tail)
        else:
            parts.append(_TOUCH.pack(start, code if campaign is None else code + _CAMPAIGN)
                         + tail)
    if score:
        facts = score[-65_535:]
        parts.append(_COUNT.pack(len(facts)))
        for t, event_id, rule, points in facts:
            parts.append(_FACT.pack(t, points, rule) + short(event_id))
    return b"".join(parts)


def decode(data: bytes) -> tuple[int | None, list[tuple[Any, ...]], list[list[Any]]]:
    """(first page view, touches, score facts) of a packed cold visitor."""
    first, n = _HEAD.unpack_from(data, 0)
    pos = _HEAD.size
    touches: list[tuple[Any, ...]] = []
    for _ in range(n):
        start, code = _TOUCH.unpack_from(data, pos)
        pos += _TOUCH.size
        if code in (_NAMED, _NAMED_CAMPAIGN):
            channel, pos = read_short(data, pos)
        else:
            channel = CHANNELS[code % _CAMPAIGN]
        if code == _NAMED_CAMPAIGN or _CAMPAIGN <= code < _NAMED_CAMPAIGN:
            campaign, pos = read_short(data, pos)
            touches.append((start, channel, campaign))
        else:
            touches.append((start, channel, None))
    score: list[list[Any]] = []
    if pos < len(data):
        (count,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        for _ in range(count):
            t, points, rule = _FACT.unpack_from(data, pos)
            pos += _FACT.size
            event_id, pos = read_short(data, pos)
            score.append([t, event_id, rule, points])
    return (None if first < 0 else first), touches, score


def read_short(data: bytes, pos: int) -> tuple[str, int]:
    length = data[pos]
    return data[pos + 1:pos + 1 + length].decode(), pos + 1 + length


class ColdStore(Protocol):
    """Where cold visitor records live: bytes keys, bytes values."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, after: bytes | None, limit: int) -> Iterator[tuple[bytes, bytes]]:
        """Up to ``limit`` records in key order, starting after ``after``."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class MemoryColdStore:
    """A :class:`ColdStore` in a dict (unit tests, ``KPI_STATE_STORE=memory``)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def scan(self, after: bytes | None, limit: int) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(k for k in self.data if after is None or k > after)[:limit]
        for k in keys:
            yield k, self.data[k]

    def count(self) -> int:
        return len(self.data)

    def close(self) -> None:
        self.data.clear()


class ColdBacked:
    """What a partition with a cold store does with it, whatever it keeps there:
    release it, hear that a flush reached the local store, and count what is cold
    (exact: the counts travel with the flushes, see :mod:`streams.statestore`)."""

    cold: ColdStore

    def close(self) -> None:
        """Release the cold store (the partition moved away or the worker stops)."""
        self.cold.close()

    def committed(self) -> None:
        """The last flush (with every cold write so far) is in the local store."""
        committed = getattr(self.cold, "committed", None)
        if committed is not None:
            committed()

    def cold_count(self) -> int:
        """Cold records held (exact: the store keeps the count with every write)."""
        return self.cold.count()
