"""Stage 1 for email: per-message unique opens and clicks. Pure.

Keyed by ``message_id`` (one send to one recipient). Counts of sends,
deliveries, bounces, unsubscribes and complaints fall in the bucket of their
own event; a unique open (click) is the message's first open (click), with
machine opens removed first when the setting says so. An earlier open arriving
later moves the unique open to its bucket, so the result does not depend on
arrival order.

A message whose newest event is older than the allowed lateness moves off the
heap into the cold store as a packed record (campaign, then per event its
time, type, machine flag and id), and comes back when another event of it
arrives; messages are forgotten ``KPI_MESSAGE_TTL`` after their last event.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..records import EmailEvent
from .buckets import DAY, starts
from .deltas import Deltas, add, dim, prune_zero
from .scoring import ScoringConfig, score_message
from .stage import StageOutput
from .visitors import (
    MESSAGE_PREFIX,
    ColdBacked,
    ColdStore,
    MemoryColdStore,
    cold_key,
    cold_name,
    hot_id,
    hot_name,
    read_short,
    short,
    visitor_key,
)
from .watermark import ClockedPartition

FAMILY = "email"
COUNTED = {"sent": "sent", "delivered": "de", "bounce": "bo", "unsubscribe": "un",
           "complaint": "co"}

# (t, event_id, type, machine_open)
EV = tuple[int, str, str, bool]


@dataclass(frozen=True)
class EmailConfig:
    lateness_ms: int = 600_000
    exclude_machine_opens: bool = True
    message_ttl_ms: int = 30 * DAY
    scoring: ScoringConfig | None = None


def message_facts(campaign: str, events: list[EV], cfg: EmailConfig, sign: int,
                  out: Deltas) -> None:
    dims = ("", dim("channel", "email"), dim("campaign", campaign))
    first_open: int | None = None
    first_click: int | None = None
    for t, _, kind, machine in events:
        # every event touches its buckets, so a bucket with only (say) repeat opens still
        # has snapshots (numerator 0) as the catalogue requires
        for size, start in starts(t):
            for d in dims:
                add(out, (FAMILY, size, start, d), "ev", sign)
        comp = COUNTED.get(kind)
        if comp is not None:
            for size, start in starts(t):
                for d in dims:
                    add(out, (FAMILY, size, start, d), comp, sign)
        elif kind == "open":
            if machine and cfg.exclude_machine_opens:
                continue
            for size, start in starts(t):
                for d in dims:
                    add(out, (FAMILY, size, start, d), "op", sign)
            if first_open is None or t < first_open:
                first_open = t
        elif kind == "click" and (first_click is None or t < first_click):
            first_click = t
    for first, comp in ((first_open, "uo"), (first_click, "uc")):
        if first is None:
            continue
        for size, start in starts(first):
            for d in dims:
                add(out, (FAMILY, size, start, d), comp, sign)


TYPES = ("sent", "delivered", "open", "click", "bounce", "unsubscribe", "complaint")
_TYPE = {name: i for i, name in enumerate(TYPES)}
_EVENT = struct.Struct(">qBB")  # t, type code (255: name follows), machine open
_COUNT = struct.Struct(">H")


def encode_message(campaign: str, events: list[EV]) -> bytes:
    """Pack a cold message; ValueError if a field is too long to pack."""
    if len(events) > 65_535:
        raise ValueError("too many events to pack")
    parts = [short(campaign), _COUNT.pack(len(events))]
    for t, event_id, kind, machine in events:
        code = _TYPE.get(kind)
        parts.append(_EVENT.pack(t, 255 if code is None else code, 1 if machine else 0))
        if code is None:
            parts.append(short(kind))
        parts.append(short(event_id))
    return b"".join(parts)


def decode_message(data: bytes) -> tuple[str, list[EV]]:
    campaign, pos = read_short(data, 0)
    (n,) = _COUNT.unpack_from(data, pos)
    pos += _COUNT.size
    events: list[EV] = []
    for _ in range(n):
        t, code, machine = _EVENT.unpack_from(data, pos)
        pos += _EVENT.size
        if code == 255:
            kind, pos = read_short(data, pos)
        else:
            kind = TYPES[code]
        event_id, pos = read_short(data, pos)
        events.append((t, event_id, kind, bool(machine)))
    return campaign, events


class EmailPartition(ColdBacked, ClockedPartition):
    def __init__(self, cfg: EmailConfig, cold: ColdStore | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.messages: dict[str, tuple[str, list[EV]]] = {}  # hot: events recently
        self.cold: ColdStore = cold if cold is not None else MemoryColdStore()
        self._sweep_after: bytes | None = None

    def _message(self, mid: str) -> tuple[str, list[EV]] | None:
        """A hot message, or a cold one taken back into the heap."""
        entry = self.messages.get(mid)
        if entry is None:
            data = self.cold.get(visitor_key(mid))
            if data is not None:
                entry = self.messages[mid] = decode_message(data)
        return entry

    def process(self, items: list[tuple[str, EmailEvent]], wall_ms: int) -> StageOutput:
        out = StageOutput()
        old: dict[str, tuple[str, list[EV]]] = {}
        for topic, rec in items:
            entry = self._message(rec.message_id)
            if entry is not None and any(e[1] == rec.event_id for e in entry[1]):
                out.count("email_event", "duplicate")
                continue
            if not self.admit(out, topic, rec, "email_event", self.cfg.lateness_ms, wall_ms):
                continue
            if entry is None:
                entry = self.messages[rec.message_id] = (rec.campaign, [])
            if rec.message_id not in old:
                old[rec.message_id] = (entry[0], list(entry[1]))
            entry[1].append((rec.t, rec.event_id, rec.type, rec.machine_open))
            entry[1].sort()
            contact = rec.raw.get("contact_id")
            if self.cfg.scoring is not None and isinstance(contact, str) and contact:
                out.leads.append(score_message(self.cfg.scoring, contact, rec.t, rec.event_id,
                                               "email_event", {"type": rec.type,
                                                               "campaign": rec.campaign}))
        for mid, (campaign, before) in old.items():
            message_facts(campaign, before, self.cfg, -1, out.deltas)
            message_facts(campaign, self.messages[mid][1], self.cfg, 1, out.deltas)
            out.dirty.add(hot_name(mid))
        out.deltas = prune_zero(out.deltas)
        return out

    def prune(self, keys: list[str] | None = None) -> set[str]:
        """Forget messages past their TTL; move quiet ones (no event within the allowed
        lateness) to the cold store. Returns the changelog keys changed."""
        wm = self.low_watermark()
        if wm is None:
            return set()
        cutoff = wm - self.cfg.lateness_ms - self.cfg.message_ttl_ms
        quiet = wm - self.cfg.lateness_ms
        changed: set[str] = set()
        for mid, (campaign, evs) in list(self.messages.items()):
            if keys is not None and mid not in keys:
                continue
            if not evs or evs[-1][0] >= quiet:
                continue
            key = visitor_key(mid)
            if evs[-1][0] < cutoff:
                self.cold.delete(key)
            else:
                try:
                    packed = encode_message(campaign, evs)
                except ValueError:
                    continue  # too long to pack: stays hot until its TTL
                self.cold.put(key, packed)
            del self.messages[mid]
            changed |= {hot_name(mid), cold_name(key, MESSAGE_PREFIX)}
        if keys is None:
            changed |= self._sweep_cold(cutoff)
        return changed

    def _sweep_cold(self, cutoff: int, limit: int = 20_000) -> set[str]:
        """Part of a pass over the cold messages: forget those past their TTL."""
        changed: set[str] = set()
        batch = list(self.cold.scan(self._sweep_after, limit))
        for key, data in batch:
            _, evs = decode_message(data)
            if not evs or evs[-1][0] < cutoff:
                self.cold.delete(key)
                changed.add(cold_name(key, MESSAGE_PREFIX))
        # a short batch ends the pass: the next one starts from the beginning
        self._sweep_after = batch[-1][0] if len(batch) == limit else None
        return changed

    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind (the changelog holds one record per entry)."""
        return {"message": len(self.messages),
                "message_cold": self.cold_count()}

    def dump(self, key: str) -> Any:
        if key.startswith(MESSAGE_PREFIX):
            return self.cold.get(cold_key(key))  # packed bytes, written as they are
        entry = self.messages.get(hot_id(key))
        return None if entry is None else [entry[0], entry[1]]

    def load(self, key: str, value: Any) -> None:
        if key.startswith(MESSAGE_PREFIX):
            self.cold.put(cold_key(key), value)
            return
        self.messages[hot_id(key)] = (value[0], [tuple(e) for e in value[1]])

