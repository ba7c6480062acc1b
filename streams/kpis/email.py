"""Stage 1 for email: per-message unique opens and clicks. Pure.

Keyed by ``message_id`` (one send to one recipient). Counts of sends,
deliveries, bounces, unsubscribes and complaints fall in the bucket of their
own event; a unique open (click) is the message's first open (click), with
machine opens removed first when the setting says so. An earlier open arriving
later moves the unique open to its bucket, so the result does not depend on
arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import EmailEvent
from .buckets import DAY, starts
from .deltas import Deltas, add, dim, prune_zero
from .scoring import ScoringConfig, score_message
from .stage import StageOutput
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


class EmailPartition(ClockedPartition):
    def __init__(self, cfg: EmailConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.messages: dict[str, tuple[str, list[EV]]] = {}

    def process(self, items: list[tuple[str, EmailEvent]], wall_ms: int) -> StageOutput:
        out = StageOutput()
        old: dict[str, tuple[str, list[EV]]] = {}
        for topic, rec in items:
            entry = self.messages.get(rec.message_id)
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
            out.dirty.add(mid)
        out.deltas = prune_zero(out.deltas)
        return out

    def prune(self, keys: list[str] | None = None) -> set[str]:
        wm = self.low_watermark()
        if wm is None:
            return set()
        cutoff = wm - self.cfg.lateness_ms - self.cfg.message_ttl_ms
        gone = {mid for mid, (_, evs) in self.messages.items()
                if (keys is None or mid in keys) and evs and evs[-1][0] < cutoff}
        for mid in gone:
            del self.messages[mid]
        return gone

    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind (the changelog holds one record per entry)."""
        return {"message": len(self.messages)}

    def dump(self, key: str) -> Any:
        entry = self.messages.get(key)
        return None if entry is None else [entry[0], entry[1]]

    def load(self, key: str, value: Any) -> None:
        self.messages[key] = (value[0], [tuple(e) for e in value[1]])
