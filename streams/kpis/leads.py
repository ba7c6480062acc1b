"""Stage 2 for leads: one contact, one lead, with its channel credit. Pure.

Stage 1 sends a *candidate* for every lead-goal form submit (keyed by contact),
and sends it again whenever the visitor's sessions change its attribution. A
contact's lead is its earliest candidate (ties broken by event id). A candidate
arriving later but dated earlier takes the lead over, and the old lead's
contributions are retracted, so the result does not depend on arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .buckets import starts
from .deltas import MICRO, Deltas, add, dim, prune_zero
from .stage import StageOutput

FAMILY = "lead"


@dataclass(frozen=True)
class LeadConfig:
    attribution: str = "first_touch"


def lead_facts(cand: dict[str, Any], cfg: LeadConfig, sign: int, out: Deltas) -> None:
    t = cand["t"]
    credit = cand["credit"][cfg.attribution]
    for size, start in starts(t):
        add(out, (FAMILY, size, start, ""), "le", sign * MICRO)
        for channel, micro in credit:
            add(out, (FAMILY, size, start, dim("channel", channel)), "le", sign * micro)
        if cand.get("page_type"):
            add(out, (FAMILY, size, start, dim("page_type", cand["page_type"])), "le",
                sign * MICRO)


def first_candidate(cands: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not cands:
        return None
    return min(cands.values(), key=lambda c: (c["t"], c["event_id"]))


class LeadPartition:
    """Per-contact lead state of one partition of the leads topic."""

    def __init__(self, cfg: LeadConfig) -> None:
        self.cfg = cfg
        self.contacts: dict[str, dict[str, dict[str, Any]]] = {}

    def process(self, candidates: list[dict[str, Any]]) -> StageOutput:
        out = StageOutput()
        before: dict[str, dict[str, Any] | None] = {}
        for cand in candidates:
            contact = cand["contact_id"]
            cands = self.contacts.setdefault(contact, {})
            if contact not in before:
                before[contact] = first_candidate(cands)
            cands[cand["event_id"]] = cand
        for contact, old in before.items():
            out.dirty.add(contact)
            new = first_candidate(self.contacts[contact])
            if old == new:
                continue
            if old is not None:
                lead_facts(old, self.cfg, -1, out.deltas)
            if new is not None:
                lead_facts(new, self.cfg, 1, out.deltas)
        out.deltas = prune_zero(out.deltas)
        return out

    def lead_of(self, contact: str) -> dict[str, Any] | None:
        return first_candidate(self.contacts.get(contact, {}))

    def dump(self, key: str) -> Any:
        return self.contacts.get(key)

    def load(self, key: str, value: Any) -> None:
        self.contacts[key] = value
