"""What a stage-1 or stage-2 processor hands back for one batch. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .deltas import AggKey, Deltas, merge_into


@dataclass
class StageOutput:
    """Everything one batch produced, before any of it is written anywhere."""

    deltas: Deltas = field(default_factory=dict)
    sketches: dict[AggKey, set[int]] = field(default_factory=dict)
    leads: list[dict[str, Any]] = field(default_factory=list)  # to stage 2, keyed by contact
    customers: list[dict[str, Any]] = field(default_factory=list)  # to the customer stage
    rejected_updates: list[Any] = field(default_factory=list)  # valid alone, not together
    late: list[tuple[Any, int | None]] = field(default_factory=list)  # (record, watermark)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (input, outcome)
    dirty: set[str] = field(default_factory=set)
    qualified: list[dict[str, Any]] = field(default_factory=list)  # lead-score MQLs

    def count(self, event_type: str, outcome: str, n: int = 1) -> None:
        ckey = (event_type, outcome)
        self.counts[ckey] = self.counts.get(ckey, 0) + n

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    def absorb(self, other: StageOutput) -> None:
        merge_into(self.deltas, other.deltas)
        for key, hashes in other.sketches.items():
            self.sketches.setdefault(key, set()).update(hashes)
        self.leads += other.leads
        self.customers += other.customers
        self.rejected_updates += other.rejected_updates
        self.late += other.late
        for ckey, n in other.counts.items():
            self.counts[ckey] = self.counts.get(ckey, 0) + n
        self.dirty |= other.dirty
